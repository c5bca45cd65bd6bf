"""The one decode path: ``api.decode``, ``batch.decode_images`` and the command (``jobs.Decoder``) all run it.

A file is parsed, its model loaded and checked once (``open_file``: one ``bitstream.unpack``, one
``load_decoder_for``, one ``check_fits_model``), then decoded with the others of its batch (``decode_planes``)
and made the image it describes (``image_from_planes``)::

    bytes ──open_file──► Opened(file, codec, tiles) ──decode_planes──► (H, W, 3) uint8 ──image_from_planes──► PIL

The one-image API is a batch of one. Same-size one-tile files of one network share a synthesis pass when the
batch allows (a GPU's), which moves a pixel by one level at most (float rounding of the batched transform).

Torch is imported only where a model that needs it is loaded: a fitted file (``--model overfit``) decodes
through its compiled decoder (``codec.models.light``), and nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..core import quality as Q
from ..core.tensors import padded_size
from ..format import bitstream as bs
from ..format import stored
from ..weights.handle import Codec
from ..weights.store import load_decoder_for
from . import tiling

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Opened:
    """A parsed file with what decodes it: its codec and checked tile grid (None and [] for stored pixels)."""

    file: bs.AecFile
    codec: Codec | None
    tiles: list[tiling.Tile]


def open_file(
    data: bytes, max_pixels: int = bs.MAX_PIXELS, codec: Codec | None = None, device: str | torch.device | None = None
) -> Opened:
    """Parse ``data``, load the model it names (``codec`` when given) and check the file against it, before any
    decoding: FormatError / AecError name what is wrong."""
    return opened(bs.unpack(data, max_pixels), codec, max_pixels, device)


def opened(
    f: bs.AecFile, codec: Codec | None, max_pixels: int = bs.MAX_PIXELS, device: str | torch.device | None = None
) -> Opened:
    """``open_file`` of a parsed file; a lossless one (``PIXL``) needs no model, nor its weights."""
    if f.pixels is not None:
        return Opened(f, None, [])
    if codec is None:
        codec = load_decoder_for(f.model_id, f.weights_hash, device, f.quality)
    return Opened(f, codec, checked_tiles(f, codec, max_pixels))


def check_work_area(f: bs.AecFile, codec: Codec, max_pixels: int = bs.MAX_PIXELS) -> None:
    """Refuse a file whose padded working area exceeds ``max_pixels``, before anything is allocated.

    ``unpack`` limits width × height; the network works on both sides rounded up to its stride,
    so a 1 × 2^27 header would otherwise cost 64 times the limit.
    """
    hp, wp = padded_size(f.height, f.width, codec.model.stride)
    if hp * wp > max_pixels:
        raise bs.FormatError(
            f"image of {f.width}x{f.height} needs a working area of {wp}x{hp}, over the limit of {max_pixels} pixels"
        )


def check_fits_model(f: bs.AecFile, codec: Codec, max_pixels: int = bs.MAX_PIXELS) -> None:
    """The checks of a parsed file against its model that come before any work: the quality within the
    model's levels (the header allows the longest ladder's) and the working area (``check_work_area``)."""
    if f.quality > codec.model.levels:
        raise bs.FormatError(
            f"quality {f.quality:g} is above the range of model {codec.model_id} (1 to {codec.model.levels})"
        )
    only = codec.model.qualities
    if only is not None and f.quality not in only:
        raise bs.FormatError(f"quality {f.quality:g} is none of model {codec.model_id}'s ({Q.describe(only)})")
    check_work_area(f, codec, max_pixels)


def checked_tiles(f: bs.AecFile, codec: Codec, max_pixels: int = bs.MAX_PIXELS) -> list[tiling.Tile]:
    """The tile grid of a parsed file, after every check that needs the model (``check_fits_model``, tile side)."""
    check_fits_model(f, codec, max_pixels)
    stride = codec.model.stride
    hp, wp = padded_size(f.height, f.width, stride)
    side = f.tile or max(hp, wp)
    if side % stride or side > tiling.MAX_TILE:
        raise bs.FormatError(
            f"tile side {side} must be a multiple of the model's stride {stride} within the limit of {tiling.MAX_TILE}"
        )
    try:
        tiling.check_tile_count(f.height, f.width, side, stride)
    except ValueError as e:
        raise bs.FormatError(str(e)) from None
    tiles = tiling.grid(f.height, f.width, side, stride)
    if len(tiles) != f.tile_count():
        raise bs.FormatError("tile grid does not match the header")
    return tiles


@contextlib.contextmanager
def stream_errors() -> Iterator[None]:
    """rANS and shape errors on damaged streams → FormatError."""
    try:
        yield
    except (RuntimeError, ValueError) as e:
        raise bs.FormatError(f"corrupt entropy-coded data ({e})") from None


def decode_latent(o: Opened) -> Any:
    """ŷ of a whole opened file (``decode_one`` holds less: a band of tiles at a time)."""
    with stream_errors():
        return tiling.decode_latent(o.codec.model.at(o.file.quality), o.file.streams, o.tiles, o.file.quality)


def decode_one(o: Opened) -> np.ndarray | Image.Image:
    """The planes of one opened file: (H, W, 3) uint8 decoded tile by tile, or a stored file's image."""
    f = o.file
    if f.pixels is not None:
        return stored_image(f)
    with stream_errors():
        return tiling.decode(o.codec.model.at(f.quality), f.streams, o.tiles, f.quality, f.height, f.width)


def one_tile_size(
    height: int, width: int, stride: int, tiled: bool = False, tile: int = tiling.TILE
) -> tuple[int, int] | None:
    """The padded size an image shares a batch by; None when it is coded in tiles (never batched)."""
    hp, wp = padded_size(height, width, stride)
    return None if tiled or max(hp, wp) > tile else (hp, wp)


def groups(keys: Sequence[tuple[int, int] | None], batch: int) -> tuple[list[list[int]], list[int]]:
    """Indexes of equal keys in chunks of ``batch``, and the indexes whose key is None."""
    by_key: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            by_key.setdefault(key, []).append(i)
    chunks = [idx[k : k + batch] for idx in by_key.values() for k in range(0, len(idx), batch)]
    return chunks, [i for i, key in enumerate(keys) if key is None]


def _batch_key(o: Opened) -> tuple[int, ...] | None:
    """What files share a synthesis pass by: one network (by identity) and one padded size, one tile; None for
    a file decoded on its own (stored, tiled, or of a model whose files share nothing: ``batches`` False)."""
    model = None if o.codec is None else o.codec.model.at(o.file.quality)
    if model is None or not model.batches:
        return None
    size = one_tile_size(o.file.height, o.file.width, model.stride, o.file.tile != 0)
    return None if size is None else (id(model), *size)


def decode_planes(items: Sequence[Opened], batch: int = 1) -> list[np.ndarray | Image.Image]:
    """Each opened file's planes (``decode_one``), in order; with ``batch`` > 1 same-size one-tile files of one
    network share each synthesis pass, ``batch`` at a time."""
    out: list[np.ndarray | Image.Image | None] = [None] * len(items)
    chunks, alone = groups([_batch_key(o) if batch > 1 else None for o in items], max(1, batch))
    for chunk in chunks:
        if len(chunk) == 1:
            alone.append(chunk[0])
            continue
        for i, planes in zip(chunk, _together([items[i] for i in chunk]), strict=True):
            out[i] = planes
    for i in alone:
        out[i] = decode_one(items[i])
    return out  # type: ignore[return-value]


def _together(items: list[Opened]) -> list[np.ndarray]:
    """The planes of same-size one-tile files of one torch network, synthesized in one pass."""
    import torch

    from ..core.tensors import to_uint8

    model = items[0].codec.model.at(items[0].file.quality)
    x = model.synthesize(torch.cat([decode_latent(o) for o in items]))
    return [to_uint8(x[j : j + 1], o.file.height, o.file.width) for j, o in enumerate(items)]


def stored_image(f: bs.AecFile) -> Image.Image:
    """The planes of a lossless file (``PIXL``) as the image they are, in the file's base mode (RGB or L):
    no array copy, so a stored plane at the pixel limit costs one image's memory."""
    mode = bs.LAYOUTS[f.layout]
    return stored.read_plane(f.pixels, (f.width, f.height), mode, "stored pixels", stored.PIXL_FORMATS)


def as_rgb(planes: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of ``decode_planes``' output (a stored file's image converted)."""
    return planes if isinstance(planes, np.ndarray) else np.asarray(planes.convert("RGB"))


def image_from_planes(f: bs.AecFile, rgb: np.ndarray | Image.Image) -> Image.Image:
    """The PIL image a file describes from its decoded RGB planes (or its stored image, ``stored_image``):
    mode, alpha, ICC and EXIF applied."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb, "RGB")
    if f.layout == bs.LAYOUT_GRAY and image.mode != "L":
        image = image.convert("L")
    if f.alpha is not None:
        image.putalpha(alpha_plane(f.alpha, image.size))
    if f.icc:
        image.info["icc_profile"] = f.icc
    if f.exif:
        image.info["exif"] = f.exif
    return image


def alpha_plane(png: bytes, size: tuple[int, int]) -> Image.Image:
    """The lossless alpha plane of an ``aLPH`` chunk as mode L."""
    return stored.read_plane(png, size, "L", "alpha plane")


def decode_images(
    datas: Sequence[bytes],
    codec: Codec | None = None,
    batch: int = 1,
    max_pixels: int = bs.MAX_PIXELS,
    device: str | torch.device | None = None,
) -> list[Image.Image]:
    """The image of each ``.aec`` file (mode, alpha, ICC, EXIF), in order: every file opened before any decodes."""
    items = [open_file(d, max_pixels, codec, device) for d in datas]
    return [image_from_planes(o.file, p) for o, p in zip(items, decode_planes(items, batch), strict=True)]
