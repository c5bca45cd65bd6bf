"""Python API: ``encode(image) -> bytes`` and ``decode(bytes) -> PIL.Image``; the CLI calls these."""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .coding import decoding, tiling
from .coding import effort as effort_mod
from .coding.decoding import (  # noqa: F401  (re-exported: the API's names for them)
    alpha_plane,
    check_fits_model,
    check_work_area,
    image_from_planes,
    stored_image,
)
from .core import quality as Q
from .core.errors import AecError
from .core.tensors import psnr
from .format import bitstream as bs
from .format import stored
from .models.base import DEFAULT_SETTINGS, EncodeSettings
from .weights.handle import Codec
from .weights.store import load_codec


def resolve_codec(codec: Codec | None, device: str | torch.device | None = None, model: str | None = None) -> Codec:
    """``codec``, or the installed one named ``model`` (default: the shipped default)."""
    return codec if codec is not None else load_codec(model, device=device)


def checked_tile(tile: int, codec: Codec, shape: tuple[int, int] | None = None) -> int:
    """``tile`` if the codec's model can cut images (of ``shape``, when given) into tiles of that side and
    the default decoder accepts that many tiles (``tiling.max_tiles``), else AecError."""
    try:
        tiling.check_tile_size(tile, codec.model.stride)
    except ValueError as e:
        raise AecError(str(e)) from None
    if shape is not None:
        try:
            tiling.check_tile_count(*shape, tile, codec.model.stride)
        except ValueError as e:
            raise AecError(f"{e}: use a larger tile") from None
    return tile


def checked_quality(quality: float, codec: Codec) -> float:
    """``quality`` as float if the codec's model codes it (``quality.check_quality``), else ValueError."""
    return Q.check_quality(quality, codec.model.levels, codec.model_id, codec.model.qualities)


def effort_steps(effort: int) -> int:
    """Iterations of an effort level (``quality.effort_iterations``), as AecError when the level does not exist."""
    try:
        return Q.effort_iterations(effort)
    except ValueError as e:
        raise AecError(str(e)) from None


def encoder_steps(codec: Codec, effort: int, iterations: int | None = None) -> int:
    """The model's latent-optimization steps for ``effort`` (``Model.encoder_steps``; a kind that fits
    per image takes ``iterations`` or its effort preset here), as AecError when it refuses them."""
    try:
        return codec.model.encoder_steps(effort, iterations)
    except ValueError as e:
        raise AecError(str(e)) from None


def check_searchable(codec: Codec) -> None:
    """AecError for a size search (``target_bpp`` / ``max_bytes``) with a kind that fits per image."""
    if codec.model.fits_per_image:
        raise AecError(
            f"model {codec.model_id} fits each image as it codes it, so it cannot search a size: "
            "give a quality (-q) instead of a target size"
        )


# -- arrays: the core path ----------------------------------------------------------------------
def encode_array(
    rgb: np.ndarray,
    quality: float,
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
    codec = resolve_codec(codec)
    steps = encoder_steps(codec, effort, iterations)
    quality = checked_quality(quality, codec)
    y = tiling.analyze(codec.model.at(quality), rgb, checked_tile(tile, codec, rgb.shape[:2]), codec.device)
    sides = None
    if steps:
        y, sides = _optimize(codec, rgb, y, tile, quality, steps)
    settings = EncodeSettings(effort, iterations, on_fit)
    data = pack_latent(codec, y, rgb.shape[0], rgb.shape[1], tile, quality, extra, sides, settings)
    return smallest(data, rgb, codec)


#: Images thinner than this on a side are also tried as stored planes (``smallest``): the network codes
#: at least its stride (64 px) on each side, and measured on a 1x500 column of a validation photo at
#: quality 6 it spent 4.4 kB for 25.4 dB where the PNG of the column takes 1.5 kB.
THIN = 8


def is_flat(rgb: np.ndarray) -> bool:
    """One colour: the network reproduces flat saturated colours up to 50-60 levels off at the corners
    (measured on 64x64 and 256x256 red with the v4 weights; no padding involved), a PNG of it is exact
    and small."""
    return bool((rgb.min(axis=(0, 1)) == rgb.max(axis=(0, 1))).all())


def smallest(data: bytes, rgb: np.ndarray, codec: Codec) -> bytes:
    """``data``, or a file of the planes ``rgb`` stored as an image (``PIXL``, ``codec.format.stored``).

    A flat image is always stored exactly. A thin one keeps the smallest of ``data``, its planes stored
    exactly, and its planes simplified to at least ``data``'s PSNR (decoded with ``codec``, which wrote
    it). Other images are not tried: a lossless image of a photo is several times its coded size, and
    compressing it costs time. A stored file names no model: its decoder needs none.
    """
    flat = is_flat(rgb)
    if not flat and min(rgb.shape[:2]) >= THIN:
        return data
    f = bs.unpack(data, bs.NO_LIMIT)
    planes = rgb[..., 0] if f.layout == bs.LAYOUT_GRAY else rgb
    payloads = [stored.lossless_bytes(planes)]
    if not flat:
        coded = decode_planes(f, codec, bs.NO_LIMIT)
        simpler = stored.simplified_bytes(planes, psnr(planes, coded[..., 0] if planes.ndim == 2 else coded))
        payloads += [simpler] if simpler is not None else []
    files = [
        bs.pack(dataclasses.replace(f, streams=[], tile=0, pixels=p, model_id="", weights_hash=bytes(8)))
        for p in payloads
    ]
    return min(files if flat else [data, *files], key=len)


def _optimize(
    codec: Codec, rgb: np.ndarray, y: torch.Tensor, tile: int, quality: float, steps: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``tiling.optimize``, its gain reported (``effort.report``)."""
    y, sides, gain = tiling.optimize(codec.model.at(quality), rgb, y, tile, quality, steps)
    effort_mod.report(gain)
    return y, sides


def pack_latent(
    codec: Codec,
    y: torch.Tensor,
    h: int,
    w: int,
    tile: int,
    quality: float,
    extra: dict,
    sides: list[torch.Tensor] | None = None,
    settings: EncodeSettings = DEFAULT_SETTINGS,
) -> bytes:
    """The ``.aec`` bytes of an (h, w) image's latent ``y`` coded at ``quality`` in tiles of ``tile``.

    ``sides`` holds each tile's side latent where the encoder effort chose them; ``settings``: the call's.
    """
    q = bs.quantize_quality(quality)
    tiles = tiling.grid(h, w, tile, codec.model.stride)
    streams = tiling.code(codec.model.at(q), y, tiles, q, sides, settings)
    many = len(tiles) > 1
    return bs.pack(
        bs.AecFile(
            w,
            h,
            q,
            model_id=codec.model_id,
            weights_hash=codec.hash_at(q),
            streams=streams,
            tile=tile if many else 0,
            **extra,
        )
    )


def encode_array_to_size(
    rgb: np.ndarray, max_bytes: int, codec: Codec | None = None, tile: int = tiling.TILE, effort: int = 0, **extra
) -> tuple[bytes, bool]:
    """Highest quality of the model's range whose whole file fits in ``max_bytes`` (bisection on real encoded sizes).

    Returns (data, fits); when even the lowest quality is too big, that encode with ``fits=False``.
    A flat or thin image may come back lossless (``smallest``). The analysis transform runs once: only
    the latent is re-coded per probe. With ``effort`` the search runs on the plain latents (the
    optimization depends on λ: one per probe would multiply its cost by the ~10 probes) and the
    latents are then optimized once at the quality found; that file is kept when it fits (it usually
    is smaller), else the plain one.
    """
    codec = resolve_codec(codec)
    check_searchable(codec)
    data = smallest(_search_size(rgb, max_bytes, codec, tile, effort, extra), rgb, codec)
    return data, len(data) <= max_bytes


def _search_size(rgb: np.ndarray, max_bytes: int, codec: Codec, tile: int, effort: int, extra: dict) -> bytes:
    """``encode_array_to_size``'s coded file, before the lossless alternative."""
    steps = effort_steps(effort)
    h, w = rgb.shape[:2]
    checked_tile(tile, codec, rgb.shape[:2])
    latents: dict[int, torch.Tensor] = {}  # one analysis per network (one per quality for an imported model)

    def latent(quality: float) -> torch.Tensor:
        model = codec.model.at(quality)
        if id(model) not in latents:
            latents[id(model)] = tiling.analyze(model, rgb, tile, codec.device)
        return latents[id(model)]

    def at(i: int) -> bytes:
        quality = grid[i] / Q.QUALITY_SCALE
        return pack_latent(codec, latent(quality), h, w, tile, quality, extra)

    grid = Q.search_steps(codec.model.levels, codec.model.qualities)
    lo, hi = 0, len(grid) - 1
    best = at(lo)
    if len(best) > max_bytes:
        return best
    top = at(hi)
    if len(top) <= max_bytes:
        lo, best = hi, top
    # Invariant: size(lo) <= budget < size(hi). Sizes grow with quality (not strictly per step,
    # so the answer is the highest probed quality that fits).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = at(mid)
        if len(data) <= max_bytes:
            lo, best = mid, data
        else:
            hi = mid
    if steps:
        quality = grid[lo] / Q.QUALITY_SCALE
        y_opt, sides = _optimize(codec, rgb, latent(quality), tile, quality, steps)
        data = pack_latent(codec, y_opt, h, w, tile, quality, extra, sides)
        if len(data) <= max_bytes:
            best = data
    return best


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


# -- PIL images ------------------------------------------------------------------------------
def _normalized(image: Image.Image | np.ndarray) -> tuple[Image.Image, bytes | None, bytes | None]:
    """(image oriented and in a coded mode, its ICC profile, its EXIF)."""
    image = _as_image(image)
    icc = image.info.get("icc_profile")
    image = _apply_orientation(image)
    exif = image.info.get("exif")
    image, icc = _to_coded_mode(image, icc)
    return image, icc, exif


def coded_image(image: Image.Image | np.ndarray) -> Image.Image:
    """The image as the codec codes it: EXIF orientation applied, mode RGB, RGBA, L or LA (8 bits).

    What a decoded file is compared with (``codec.bench.compare``).
    """
    return _normalized(image)[0]


def to_planes(image: Image.Image | np.ndarray) -> tuple[np.ndarray, dict]:
    """Normalize any input image to RGB uint8 planes plus the fields that travel beside them."""
    image, icc, exif = _normalized(image)
    for name, data in (("ICC profile", icc), ("EXIF", exif)):
        if data and len(data) > bs.MAX_METADATA:
            raise AecError(
                f"the image's {name} of {len(data)} bytes is over the {bs.MAX_METADATA} bytes a file carries"
            )
    extra: dict = {}
    if exif:
        extra["exif"] = bytes(exif)
    if icc:
        extra["icc"] = bytes(icc)
    if image.mode in ("RGBA", "LA"):
        buf = io.BytesIO()
        image.getchannel("A").save(buf, format="PNG", optimize=True)
        extra["alpha"] = buf.getvalue()
    if image.mode in ("L", "LA"):
        extra["layout"] = bs.LAYOUT_GRAY
        return np.asarray(image.convert("L").convert("RGB")), extra
    return np.asarray(image.convert("RGB")), extra


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = _array_to_image(image)
    if not isinstance(image, Image.Image):
        raise AecError(f"cannot encode object of type {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise AecError(f"cannot encode an empty image ({image.width}x{image.height})")
    return image


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate the pixels as EXIF says (the tag is dropped); unreadable EXIF leaves them as they are.

    Pillow re-writes the EXIF without the tag, and fails on tags of an unexpected type (a ``Make`` typed
    RATIONAL: AttributeError); then the tag is set to 1 in the EXIF bytes as they are (``exif_upright``).
    """
    try:
        return ImageOps.exif_transpose(image) or image
    except stored.PIL_DECODE_ERRORS:
        return image
    except (AttributeError, TypeError, KeyError):
        pass
    try:
        method = _TRANSPOSE.get(image.getexif().get(_ORIENTATION, 1))
    except stored.PIL_DECODE_ERRORS:
        return image
    upright = exif_upright(image.info.get("exif") or b"")
    if method is None or upright is None:
        return image  # the EXIF still says how to turn the pixels, so nothing is lost
    turned = image.transpose(method)
    turned.info["exif"] = upright
    return turned


_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_upright(raw: bytes) -> bytes | None:
    """``raw`` EXIF (TIFF layout, with or without the ``Exif\\0\\0`` prefix) with its first IFD's Orientation
    set to 1, every other byte kept; None when it has no such SHORT entry or cannot be walked."""
    start = 6 if raw.startswith(b"Exif\0\0") else 0
    order = {b"II": "<", b"MM": ">"}.get(bytes(raw[start : start + 2]))
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", raw, start + 4)
        (count,) = struct.unpack_from(order + "H", raw, start + ifd)
        for i in range(count):
            at = start + ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", raw, at)
            if tag == _ORIENTATION and kind == 3 and n == 1:  # SHORT, one value, stored in place
                out = bytearray(raw)
                struct.pack_into(order + "H", out, at + 8, 1)
                return bytes(out)
    except struct.error:
        return None
    return None


_DEEP_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _to_coded_mode(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Bring any Pillow mode to one the codec carries: RGB, RGBA, L or LA (8 bits).

    CMYK and LAB become RGB; their ICC profile describes the old colour space, so it is used for the
    conversion where possible and then dropped. Premultiplied alpha is unpremultiplied; a colour-key
    transparency (palette, grey or RGB PNG with tRNS) becomes an alpha plane.
    """
    mode = image.mode
    if mode in ("RGB", "L") and "transparency" in image.info:  # a PNG colour key (tRNS): real alpha
        return image.convert(mode + "A" if mode == "L" else "RGBA"), icc
    if mode in ("RGB", "RGBA", "L", "LA"):
        return image, icc
    if mode in _DEEP_GRAY:
        return Image.fromarray(_deep_to_8bit(np.asarray(image)), "L"), icc
    if mode == "F":
        return Image.fromarray(_float_to_8bit(np.asarray(image)), "L"), icc
    if mode == "CMYK":
        return _cmyk_to_rgb(image, icc), None
    target = {"1": "L", "La": "LA", "RGBa": "RGBA", "PA": "RGBA"}.get(mode, "RGB")
    if mode == "P" and "transparency" in image.info:
        target = "RGBA"
    try:
        return image.convert(target), (None if mode == "LAB" else icc)
    except ValueError:
        raise AecError(f"cannot encode images of mode {mode}") from None


def _deep_to_8bit(arr: np.ndarray) -> np.ndarray:
    """Integer grey scaled to 8 bits, never clipped: samples within 16 bits (PNG and TIFF ``I;16``, 16-bit PNG
    opened as ``I``) keep their top 8 bits; wider ones (32-bit ``I`` TIFF) are scaled from the 32-bit range,
    the signed one when any sample is negative."""
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        return ((arr + (1 << 31)) >> 24).astype(np.uint8)
    return (arr >> (8 if arr.max() <= 0xFFFF else 23)).astype(np.uint8)


def _float_to_8bit(arr: np.ndarray) -> np.ndarray:
    """Float grey (``F``) to 8 bits: data within [0, 1] is scaled by 255 (the usual float convention), data
    beyond 1 is taken on Pillow's 0-255 scale; NaN becomes 0, the rest is clipped to the range."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
    return np.rint(arr * scale).clip(0, 255).astype(np.uint8)


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """CMYK → RGB through the embedded profile (to sRGB) when it is usable, else Pillow's formula."""
    if icc:
        from PIL import ImageCms

        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a damaged or non-CMYK profile: the plain conversion below is still an image
    return image.convert("RGB")


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise AecError(f"arrays must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(arr, "RGB" if arr.shape[2] == 3 else "RGBA")
    raise AecError(f"arrays must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")


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
    or ``target_bpp`` / ``max_bytes`` to search the model's range on real file sizes. ``model`` names an
    installed model (``aecodec models``) when ``codec`` is not given. ``max_bytes``
    that no quality meets raises AecError; a ``target_bpp`` below the lowest quality's rate gives that
    lowest quality. Images larger than ``tile`` pixels on a side are coded in independently decodable
    tiles (bounded memory).
    ``effort`` 0..``quality.MAX_EFFORT`` trades encoding time for size (``codec.coding.effort``); with a kind
    that fits per image (``model="overfit"``) it picks a preset of fitting iterations, and ``iterations``
    sets them (such kinds code a quality only: no ``target_bpp`` / ``max_bytes``); ``on_fit`` is given each
    tile's fit result (``codec.models.overfit.fit.FitResult``).
    """
    effort_steps(effort)
    if target_bpp is not None and max_bytes is not None:
        raise AecError("give either target_bpp or max_bytes, not both")
    codec = resolve_codec(codec, device, model)
    checked_tile(tile, codec)
    quality = Q.default_quality(codec.model.qualities) if quality is None else quality
    rgb, extra = to_planes(image)
    if target_bpp is None and max_bytes is None:
        return encode_array(rgb, quality, codec, tile, effort, iterations, on_fit, **extra)
    if iterations is not None:
        raise AecError("iterations are for a quality (-q), not a target size")
    if target_bpp is not None:
        if not 0 < target_bpp < math.inf:
            raise AecError(f"target bpp must be positive and finite, got {target_bpp}")
        budget = int(target_bpp * rgb.shape[0] * rgb.shape[1] / 8)
    else:
        budget = int(max_bytes)
    data, fits = encode_array_to_size(rgb, budget, codec, tile, effort, **extra)
    if not fits and max_bytes is not None:
        raise AecError(f"cannot fit the image in {max_bytes} bytes: the lowest quality needs {len(data)} bytes")
    return data


def decode(data: bytes, *, codec: Codec | None = None, max_pixels: int = bs.MAX_PIXELS) -> Image.Image:
    """Decompress ``.aec`` bytes to a PIL image (RGB, L, RGBA or LA as it was coded).

    Files larger than ``max_pixels`` (width × height, and the padded area the network works on) are
    refused with FormatError before anything is allocated for them; raise it for very large images.
    The one decode path (``codec.coding.decoding``), as a batch of one.
    """
    return decoding.decode_images([data], codec, 1, max_pixels)[0]
