"""Tiled coding: grid geometry, independent tiles, and seams no worse than the untiled coding."""

from __future__ import annotations

import numpy as np
import pytest

import codec
from codec.coding import decoding, tiling
from codec.core.tensors import psnr
from codec.format import bitstream as bs
from codec.weights.store import load_codec


def test_grid_covers_padded_image_once():
    tiles = tiling.grid(300, 200, 128, 64)
    assert len(tiles) == 3 * 2  # padded 320 x 256
    cover = np.zeros((320, 256), int)
    for t in tiles:
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert (t.y1 - t.y0) % 64 == 0 and (t.x1 - t.x0) % 64 == 0
    assert (cover == 1).all()


@pytest.mark.parametrize("bad", [0, 32, 100, -64])
def test_tile_size_must_be_multiple_of_64(bad, photo_like):
    with pytest.raises(codec.AecError):
        codec.encode(photo_like(8, 8), tile=bad)


def test_small_images_are_one_tile(photo_like):
    f = bs.unpack(codec.encode(photo_like(100, 120), tile=128))
    assert f.tile == 0 and len(f.streams) == 1


def test_tiled_round_trip_and_header(photo_like):
    rgb = photo_like(200, 330)
    data = codec.encode(rgb, quality=5, tile=128)
    f = bs.unpack(data)
    assert f.tile == 128 and f.tile_count() == 2 * 3 and len(f.streams) == 6  # padded 256 x 384
    out = np.asarray(codec.decode(data))
    assert out.shape == rgb.shape
    untiled = np.asarray(codec.decode(codec.encode(rgb, quality=5)))
    # Context margins keep tiles seamless: close to the one-piece coding of the same image.
    assert psnr(untiled, out) > 35


def test_tiles_decode_independently(photo_like):
    """Each tile's streams decode on their own, to the latents the encoder quantized."""
    c = load_codec()
    rgb = photo_like(192, 192)
    y = tiling.analyze(c.model, rgb, 64, c.device)
    tiles = tiling.grid(192, 192, 64, c.model.stride)
    streams = tiling.code(c.model, y, tiles, 3.0)
    for t, st in zip(tiles[::-1], streams[::-1], strict=True):  # any order, one at a time
        rows, cols = t.latent(c.model.latent_stride)
        sent = c.model.quantize(y[:, :, rows, cols], 3.0)
        got = c.model.decode_symbols([st], t.latent_size(c.model.latent_stride), 3.0)
        assert np.array_equal(got.y_sym.numpy(), sent.y_sym.numpy())


def test_row_by_row_decode_matches_the_whole_latent(photo_like):
    """The decoder holds three rows of tiles' latents at a time; its pixels are those of the whole latent."""
    c = load_codec()
    rgb = photo_like(200, 330)
    f = bs.unpack(codec.encode(rgb, quality=4, tile=64))
    tiles = tiling.grid(200, 330, 64, c.model.stride)
    whole = tiling.synthesize(c.model, tiling.decode_latent(c.model, f.streams, tiles, f.quality), tiles, 200, 330)
    assert np.array_equal(tiling.decode(c.model, f.streams, tiles, f.quality, 200, 330), whole)


@pytest.mark.parametrize("tile", [0, 2048])
def test_tiles_over_the_limit_are_refused_before_decoding(tile):
    """A header claiming one 16384×8192 tile (or 2048² tiles) of empty streams: refused at once, not decoded."""
    c = load_codec()
    n = bs.AecFile(16384, 8192, 4.0, tile=tile).tile_count()
    f = bs.AecFile(16384, 8192, 4.0, model_id=c.model_id, tile=tile, streams=[[b"", b""]] * n)
    with pytest.raises(codec.FormatError, match="limit of 1024"):
        codec.decode(bs.pack(f), codec=c)
    with pytest.raises(codec.AecError, match="up to 1024"):
        codec.encode(np.zeros((8, 8, 3), np.uint8), tile=2048)


def test_tile_count_is_bounded_by_the_image_area(monkeypatch):
    """8192² in 64-px tiles (16384 tiles, 9x their pixels in synthesis windows each): refused before any
    decoding, which allows one tile per 65536 of the image's padded pixels, whatever the pixel limit."""
    c = load_codec()
    f = bs.AecFile(8192, 8192, 4.0, model_id=c.model_id, weights_hash=c.weights_hash, tile=64)
    f.streams = [[b"", b""]] * f.tile_count()
    data = bs.pack(f)
    monkeypatch.setattr(tiling, "decode", lambda *a: pytest.fail("decoded a file over the tile limit"))
    limit = tiling.max_tiles(8192, 8192, 64)
    assert limit == 8192**2 // tiling.PIXELS_PER_TILE < f.tile_count()
    for max_pixels in (bs.MAX_PIXELS, 1 << 30):
        with pytest.raises(codec.FormatError, match=f"16384 tiles of 64 px, over the limit of {limit}"):
            codec.decode(data, codec=c, max_pixels=max_pixels)
    with pytest.raises(codec.AecError, match="use a larger tile"):
        codec.encode(np.zeros((3000, 3000, 3), np.uint8), tile=64)  # 47² tiles: a file the decoder would refuse


@pytest.mark.parametrize("tile, refused", [(64, True), (128, True), (256, False), (1024, False)])
def test_thin_image_in_tiny_tiles_is_refused(tile, refused, monkeypatch):
    """16384x1 pads to 16384x64: 16 tiles' worth of area, so ``MIN_TILES`` (64) holds. In 256 tiles of 64 px it
    decoded 4.4x slower than in 16 of 1024 px (``python -m benchmarks.huge --hostile 16384 --height 1 --tile
    64``); now refused."""
    c = load_codec()
    f = bs.AecFile(16384, 1, 4.0, model_id=c.model_id, weights_hash=c.weights_hash, tile=tile)
    f.streams = [[b"", b""]] * f.tile_count()
    monkeypatch.setattr(tiling, "decode", lambda *a: "decoded")
    monkeypatch.setattr(decoding, "image_from_planes", lambda f, rgb: rgb)
    if refused:
        with pytest.raises(codec.FormatError, match="over the limit of 64 for 16384x1"):
            codec.decode(bs.pack(f), codec=c)
    else:
        assert codec.decode(bs.pack(f), codec=c) == "decoded"


@pytest.mark.parametrize("width", [1, 64, 1000, 1025, 17 * 1024 + 64, 131072])
def test_every_image_in_1024_px_tiles_passes_the_bound(width):
    for height in (1, 64, 65, 1088):
        tiling.check_tile_count(height, width, 1024, 64)


def test_small_images_still_take_small_tiled_files():
    assert tiling.max_tiles(1, 1, 64) == tiling.MIN_TILES


def test_decoder_holds_one_row_of_tile_latents_plus_margins(monkeypatch, photo_like):
    """Whatever the image's height, each synthesis sees a band of latent rows no taller than a tile row and
    the margins above and below it: the whole latent is never held."""
    c = load_codec()
    rgb = photo_like(640, 130)
    f = bs.unpack(codec.encode(rgb, quality=4, tile=64))
    tiles = tiling.grid(640, 130, 64, c.model.stride)
    bands = []
    real = tiling._synthesize_tile

    def synthesize_tile(model, band, *args):
        bands.append(band.shape[2])
        return real(model, band, *args)

    monkeypatch.setattr(tiling, "_synthesize_tile", synthesize_tile)
    tiling.decode(c.model, f.streams, tiles, f.quality, 640, 130)
    s = c.model.latent_stride
    assert len(bands) == len(tiles) and max(bands) <= (64 + 2 * tiling._margin(c.model)) // s < 640 // s


def test_damaged_tile_table_is_rejected(photo_like):
    f = bs.unpack(codec.encode(photo_like(130, 70), tile=64))
    f.streams = f.streams[:-1]
    with pytest.raises(ValueError):
        bs.pack(f)
