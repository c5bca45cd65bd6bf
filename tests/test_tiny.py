"""Tiny, thin and flat images (issue 15, item 10): flat colours come back exact, thin images cost no
more than WebP's, both through the lossless ``PIXL`` chunk where the network is poor."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import codec
from codec import api
from codec.cli import main
from codec.coding import encoding, tiling
from codec.coding.batch import decode_images, encode_arrays
from codec.core.tensors import psnr
from codec.format import bitstream as bs
from codec.format import stored
from scripts.thin_images import smallest_webp

FLAT_SHAPES = [(1, 1), (2, 3), (64, 64), (1, 500), (500, 1)]
COLOURS = [(200, 10, 10), (255, 0, 0), (0, 0, 255), (30, 200, 90)]
WEBP_WORSE = 1.5  # the bound: at most this many times WebP's bytes at equal or better PSNR


def flat(shape: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (*shape, 3)).copy()


def textured_column(height: int = 500, seed: int = 0) -> np.ndarray:
    """A 1-px column of a smooth signal with edges and noise, as a column cut from a photo looks."""
    rng = np.random.default_rng(seed)
    t = np.arange(height, dtype=np.float64)[:, None]
    base = 120 + 70 * np.sin(t / 23 + np.arange(3)) + 30 * ((t // 60) % 2) + rng.normal(0, 5, (height, 3))
    return base.clip(0, 255).astype(np.uint8)[:, None, :]


@pytest.mark.parametrize("shape", FLAT_SHAPES)
@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("quality", [1, 10])
def test_flat_images_come_back_within_two_levels(shape, colour, quality):
    rgb = flat(shape, colour)
    out = api.decode_array(api.encode_array(rgb, quality))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).max() <= 2


def test_flat_grey_image_stays_grey_and_exact():
    image = Image.new("L", (5, 70), 37)
    data = codec.encode(image, quality=2)
    assert bs.unpack(data).layout == bs.LAYOUT_GRAY
    out = codec.decode(data)
    assert out.mode == "L" and np.array_equal(np.asarray(out), np.asarray(image))


def test_photo_like_image_keeps_the_network(photo_like):
    f = bs.unpack(api.encode_array(photo_like(64, 64), 6))
    assert f.pixels is None and f.streams


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("quality", [1, 2, 4, 6])
def test_thin_image_costs_at_most_webp_bytes_times_one_and_a_half(transpose, quality):
    rgb = textured_column()
    rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2)) if transpose else rgb
    data = api.encode_array(rgb, quality)
    ours = psnr(rgb, api.decode_array(data))
    assert len(data) <= WEBP_WORSE * smallest_webp(rgb, ours)


def test_thin_image_keeps_the_smallest_file_at_the_coded_quality():
    """Thin images keep the smallest of the coded file and the stored planes (exact or simplified), never
    below the coded file's PSNR; a stored file names no model."""
    c = api.resolve_codec(None)
    rgb = textured_column()
    y = tiling.analyze(c.model, rgb, tiling.TILE, c.device)
    for quality in (2, 6):
        f = encoding.latent_file(c, y, 500, 1, tiling.TILE, quality, {})
        coded = bs.pack(f)
        data = encoding.smallest(f, coded, rgb, c)
        assert len(data) < len(coded)
        f = bs.unpack(data)
        assert f.pixels is not None and f.model_id == "" and f.weights_hash == bytes(8)
        assert psnr(rgb, api.decode_array(data)) >= psnr(rgb, api.decode_array(coded))


@pytest.mark.parametrize("step, hold", [(1, 0), (8, 0), (4, 12), (32, 16), (64, 64)])
def test_simplified_planes_stay_within_their_bound(step, hold):
    """Each value is held within ``hold`` or rounded to a multiple of ``step``: error ≤ max(hold, step/2)."""
    lines = textured_column(300, seed=4).astype(np.float64)
    (v,) = stored.held(lines, np.array([step]), np.array([hold]))[:, 0]
    assert v.shape == lines.shape and v.dtype == np.uint8
    assert np.abs(v - lines).max() <= max(hold, step / 2) + 1e-9
    if step == 1 and hold == 0:
        assert np.array_equal(v, lines.astype(np.uint8))
    runs = (np.diff(v.astype(int), axis=0) == 0).mean()
    assert hold < 16 or runs > 0.8  # a large hold repeats most lines


def test_batch_and_size_search_take_the_lossless_file_too():
    images = [flat((1, 1), (9, 99, 199)), flat((64, 64), (255, 0, 0)), flat((3, 70), (0, 0, 255))]
    datas = encode_arrays(images, 3)
    assert datas == [api.encode_array(rgb, 3) for rgb in images]
    for rgb, out in zip(images, decode_images(datas), strict=True):
        assert np.array_equal(np.asarray(out), rgb)
    data = codec.encode(images[1], max_bytes=1000)
    assert bs.unpack(data).pixels is not None


def lossless_file(png: bytes, width: int, height: int, **fields) -> bytes:
    return bs.pack(bs.AecFile(width, height, 3.0, model_id="m", streams=[], pixels=png, **fields))


def png_of(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_pixl_round_trips_and_needs_no_network():
    rgb = flat((3, 4), (1, 2, 3))
    data = lossless_file(png_of(rgb), 4, 3)
    f = bs.unpack(data)
    assert f.pixels == png_of(rgb) and f.streams == [] and f.tile == 0
    assert bs.pack(f) == data
    assert np.array_equal(np.asarray(codec.decode(data)), rgb)  # model "m" exists nowhere


def test_cli_decodes_a_lossless_file_without_its_model(tmp_path):
    rgb = flat((3, 4), (1, 2, 3))
    src, dest = tmp_path / "f.aec", tmp_path / "f.png"
    src.write_bytes(lossless_file(png_of(rgb), 4, 3))
    result = CliRunner().invoke(main, ["decode", str(src), "-o", str(dest)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(dest)), rgb)


@pytest.mark.parametrize(
    "png, match",
    [
        (b"not a png", "not a PNG or WEBP image"),
        (None, "is 4x4, the image 4x3"),
        (png_of(flat((3, 4), (1, 2, 3)))[:40], "corrupt stored pixels"),
    ],
)
def test_damaged_pixl_is_one_line_format_error(png, match):
    png = png_of(flat((4, 4), (1, 2, 3))) if png is None else png
    with pytest.raises(bs.FormatError, match=match) as e:
        codec.decode(lossless_file(png, 4, 3))
    assert "\n" not in str(e.value)


def test_pixl_with_streams_or_tiles_is_refused():
    body = bs.pack(bs.AecFile(4, 3, 3.0, model_id="m"))[:-4]
    extra = bs.PIXELS + struct.pack("<I", 3) + b"abc"
    with pytest.raises(bs.FormatError, match="lossless pixels and entropy-coded streams"):
        bs.unpack(body + extra + struct.pack("<I", zlib.crc32(body + extra)))
    with pytest.raises(ValueError):
        bs.pack(bs.AecFile(4, 3, 3.0, streams=[], pixels=b"x", tile=64))


def test_info_says_lossless(tmp_path):
    path = tmp_path / "f.aec"
    path.write_bytes(api.encode_array(flat((2, 3), (5, 6, 7)), 5))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0 and "stored losslessly" in result.output


def webp_of(rgb: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", **({"lossless": True, "exact": True} | params))
    return buf.getvalue()


def test_pixl_holds_a_lossless_webp_read_exactly():
    rgb = np.random.default_rng(1).integers(0, 256, (7, 40, 3), dtype=np.uint8)
    webp = webp_of(rgb)
    assert stored.webp_size(webp) == (40, 7)
    assert np.array_equal(np.asarray(codec.decode(lossless_file(webp, 40, 7))), rgb)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda rgb: webp_of(rgb, lossless=False, quality=80), "not a PNG or WEBP image"),  # lossy VP8: refused
        (lambda rgb: webp_of(rgb[:, :5]), "is 5x7, the image 6x7"),
        (lambda rgb: webp_of(rgb)[:30], "corrupt stored pixels"),
    ],
)
def test_pixl_refuses_other_webps_before_decoding(make, match):
    rgb = np.random.default_rng(2).integers(0, 256, (7, 6, 3), dtype=np.uint8)
    with pytest.raises(bs.FormatError, match=match):
        codec.decode(lossless_file(make(rgb), 6, 7))


def test_alpha_plane_stays_png_only():
    webp = webp_of(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(bs.FormatError, match="not a PNG image"):
        api.alpha_plane(webp, (4, 3))


def test_thin_image_with_a_codec_outside_the_weights_folder():
    """The coded file's PSNR comes from the codec that wrote it, not from the weights its header names."""
    from codec.weights.handle import Codec

    c = api.resolve_codec(None)
    untracked = Codec(c.model, device=c.device)  # model id "untracked": in no manifest
    rgb = textured_column()
    data = api.encode_array(rgb, 4, untracked)
    assert bs.unpack(data).pixels is not None  # stored: no network needed to decode it
    assert encode_arrays([rgb], 4, untracked) == [data]
