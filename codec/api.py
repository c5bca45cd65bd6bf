"""Python API: ``encode(image) -> bytes`` and ``decode(bytes) -> PIL.Image``; the CLI runs the same paths.

Both are a batch of one through the coding layer's one path each: ``codec.coding.encoding`` (options checked
once, the model loaded once, each file packed once) and ``codec.coding.decoding`` (each file parsed, loaded
and checked once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from .coding import decoding, encoding, tiling
from .coding.decoding import (  # noqa: F401  (re-exported: the API's names for them)
    alpha_plane,
    check_fits_model,
    check_work_area,
    image_from_planes,
    stored_image,
)
from .coding.options import EncodeOptions
from .coding.planes import coded_image, exif_upright, to_planes  # noqa: F401  (re-exported)
from .core.errors import AecError
from .format import bitstream as bs
from .weights.handle import Codec
from .weights.store import load_codec


def resolve_codec(codec: Codec | None, device: str | torch.device | None = None, model: str | None = None) -> Codec:
    """``codec``, or the installed one named ``model`` (default: the shipped default)."""
    return codec if codec is not None else load_codec(model, device=device)


# -- arrays: the core path ----------------------------------------------------------------------
def encode_array(
    rgb: np.ndarray,
    quality: float | None,
    codec: Codec | None = None,
    tile: int = tiling.TILE,
    effort: int = 0,
    iterations: int | None = None,
    on_fit: Callable[[Any], None] | None = None,
    **extra,
) -> bytes:
    """Code an (H, W, 3) uint8 array; ``extra`` fills AecFile fields (layout, alpha, icc, exif).

    ``effort`` > 0 optimizes the latents for this image before coding (``codec.coding.effort``): slower
    encoding, fewer bits for the same quality, the same decoder. A kind that fits per image
    (``--model overfit``) fits ``iterations`` steps, or its preset for ``effort``, and gives each tile's
    fit result to ``on_fit``.
    """
    options = EncodeOptions(quality=quality, tile=tile, effort=effort, iterations=iterations)
    return encoding.encode_arrays(encoding.setup(options, codec, on_fit), [rgb], [extra])[0].data


def encode_array_to_size(
    rgb: np.ndarray, max_bytes: int, codec: Codec | None = None, tile: int = tiling.TILE, effort: int = 0, **extra
) -> tuple[bytes, bool]:
    """Highest quality of the model's range whose whole file fits in ``max_bytes`` (bisection on real encoded
    sizes, ``codec.coding.encoding``): (data, fits); when even the lowest quality is too big, that encode with
    ``fits=False``. A flat or thin image may come back lossless."""
    options = EncodeOptions(max_bytes=max_bytes, tile=tile, effort=effort)
    done = encoding.encode_arrays(encoding.setup(options, codec), [rgb], [extra])[0]
    return done.data, done.fits


def decode_planes(f: bs.AecFile, codec: Codec | None, max_pixels: int = bs.MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 planes of a parsed file (``codec.coding.decoding``): a lossless one (``PIXL``) needs no
    network, nor its weights."""
    return decoding.as_rgb(decoding.decode_one(decoding.opened(f, codec, max_pixels)))


def decode_array(data: bytes, codec: Codec | None = None, max_pixels: int = bs.MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB planes of an ``.aec`` file (alpha, ICC and EXIF not applied): a batch of one."""
    return decoding.as_rgb(decoding.decode_planes([decoding.open_file(data, max_pixels, codec)])[0])


def decode_latent(f: bs.AecFile, codec: Codec, max_pixels: int = bs.MAX_PIXELS) -> torch.Tensor:
    """ŷ of a whole parsed file, all checks first."""
    return decoding.decode_latent(decoding.opened(f, codec, max_pixels))


def encode(
    image: Image.Image | np.ndarray,
    quality: float | None = None,
    *,
    target_bpp: float | None = None,
    max_bytes: int | None = None,
    codec: Codec | None = None,
    device: str | None = None,
    tile: int = tiling.TILE,
    effort: int = 0,
    iterations: int | None = None,
    model: str | None = None,
    on_fit: Callable[[Any], None] | None = None,
) -> bytes:
    """Compress a PIL image or uint8 array to ``.aec`` bytes.

    ``quality`` in [1, L] with L the model's quality levels (``aecodec models``; fractions allowed), None for
    the model's default (``quality.default_quality``: 6, or the nearest a model with one network per quality has);
    or ``target_bpp`` / ``max_bytes`` to search the model's range on real file sizes (they take the place of
    ``quality``). ``model`` names an installed model (``aecodec models``) when ``codec`` is not given. ``max_bytes``
    that no quality meets raises AecError; a ``target_bpp`` below the lowest quality's rate gives that
    lowest quality. Images larger than ``tile`` pixels on a side are coded in independently decodable
    tiles (bounded memory).
    ``effort`` 0..``quality.MAX_EFFORT`` trades encoding time for size (``codec.coding.effort``); with a kind
    that fits per image (``model="overfit"``) it picks a preset of fitting iterations, and ``iterations``
    sets them (such kinds code a quality only: no ``target_bpp`` / ``max_bytes``); ``on_fit`` is given each
    tile's fit result (``codec.models.overfit.fit.FitResult``).
    The one encode path (``codec.coding.encoding``), as a batch of one.
    """
    options = EncodeOptions(
        device=device or "auto",
        quality=quality,
        target_bpp=target_bpp,
        max_bytes=max_bytes,
        model_id=model,
        tile=tile,
        effort=effort,
        iterations=iterations,
    )
    done = encoding.encode_images(encoding.setup(options, codec, on_fit), [image])[0]
    if not done.fits and max_bytes is not None:
        raise AecError(f"cannot fit the image in {max_bytes} bytes: the lowest quality needs {len(done.data)} bytes")
    return done.data


def decode(data: bytes, *, codec: Codec | None = None, max_pixels: int = bs.MAX_PIXELS) -> Image.Image:
    """Decompress ``.aec`` bytes to a PIL image (RGB, L, RGBA or LA as it was coded).

    Files larger than ``max_pixels`` (width × height, and the padded area the network works on) are
    refused with FormatError before anything is allocated for them; raise it for very large images.
    The one decode path (``codec.coding.decoding``), as a batch of one.
    """
    return decoding.decode_images([data], codec, 1, max_pixels)[0]
