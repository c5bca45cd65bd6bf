"""Batched coding: many images through the network together, the way a GPU is kept busy.

The batch API over the one encode path (``codec.coding.encoding``) and the one decode path
(``codec.coding.decoding``): images whose padded size is the same and that fit in one tile share each pass of
the analysis (encode) or synthesis (decode) transform, ``batch`` at a time; entropy coding stays per image on
the CPU, or with ``workers`` > 0 in worker processes while the next batch runs. The files are the same format
and decode with the one-image path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..core.devices import BATCH
from ..format import bitstream as bs
from ..weights.handle import Codec
from . import decoding, encoding, tiling
from .options import EncodeOptions


def encode_arrays(
    rgbs: Sequence[np.ndarray],
    quality: float | None,
    codec: Codec | None = None,
    batch: int = BATCH,
    workers: int = 0,
    tile: int = tiling.TILE,
    extras: Sequence[dict] | None = None,
    effort: int = 0,
    iterations: int | None = None,
) -> list[bytes]:
    """``.aec`` bytes of each (H, W, 3) uint8 array at ``quality``, in order.

    ``extras[i]`` fills image i's AecFile fields (layout, alpha, icc, exif), as ``encode_array``'s
    keywords do. ``workers`` > 0 entropy-codes in that many processes (spawned, one torch thread
    each), which load the same shipped weights by model id; the bytes are the same as without them.
    ``effort`` > 0 optimizes the latents of a batch together (``codec.coding.effort``), as the network runs;
    a kind that fits per image takes ``iterations`` (or its preset for ``effort``) instead.
    """
    s = encoding.setup(EncodeOptions(quality=quality, tile=tile, effort=effort, iterations=iterations), codec)
    return [e.data for e in encoding.encode_arrays(s, rgbs, extras, batch, workers)]


def encode_images(
    images: Sequence[Image.Image | np.ndarray],
    quality: float | None,
    codec: Codec | None = None,
    batch: int = BATCH,
    workers: int = 0,
    tile: int = tiling.TILE,
    effort: int = 0,
    iterations: int | None = None,
) -> list[bytes]:
    """``api.encode`` of each image (any mode, ICC, EXIF, alpha), the network run ``batch`` at a time."""
    s = encoding.setup(EncodeOptions(quality=quality, tile=tile, effort=effort, iterations=iterations), codec)
    return [e.data for e in encoding.encode_images(s, images, batch, workers)]


def decode_arrays(
    datas: Sequence[bytes],
    codec: Codec | None = None,
    batch: int = BATCH,
    max_pixels: int = bs.MAX_PIXELS,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB planes of each ``.aec`` file, in order (alpha, ICC and EXIF are not applied)."""
    items = [decoding.open_file(d, max_pixels, codec, device) for d in datas]
    return [decoding.as_rgb(p) for p in decoding.decode_planes(items, batch)]


def decode_images(
    datas: Sequence[bytes],
    codec: Codec | None = None,
    batch: int = BATCH,
    max_pixels: int = bs.MAX_PIXELS,
    device: str | torch.device | None = None,
) -> list[Image.Image]:
    """``api.decode`` of each ``.aec`` file (mode, alpha, ICC, EXIF), the network run ``batch`` at a time
    (``codec.coding.decoding``, the one decode path)."""
    return decoding.decode_images(datas, codec, batch, max_pixels, device)
