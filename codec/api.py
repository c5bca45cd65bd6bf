"""Python API: ``encode(image) -> bytes`` and ``decode(bytes) -> PIL.Image``; the CLI calls these."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from . import bitstream as bs
from . import engine
from . import quality as Q
from .errors import AecError
from .model import AECModel
from .tensors import to_tensor, to_uint8


@dataclass
class Codec:
    """A loaded network with its entropy tables and the identity written into files."""

    model: AECModel
    tables: engine.EntropyTables
    model_id: str = "untracked"
    weights_hash: bytes = b"\0" * 8
    device: torch.device = torch.device("cpu")


def _resolve(codec: Codec | None, device: str | torch.device | None = None) -> Codec:
    if codec is not None:
        return codec
    from .weights import load_codec

    return load_codec(device=device)


# -- arrays: the core path ----------------------------------------------------------------------
def encode_array(rgb: np.ndarray, quality: float, codec: Codec | None = None, **extra) -> bytes:
    """Code an (H, W, 3) uint8 array; ``extra`` fills AecFile fields (layout, alpha, icc, exif)."""
    codec = _resolve(codec)
    y = engine.analyze(codec.model, to_tensor(rgb).to(codec.device))
    return _pack_at(codec, y, rgb.shape[0], rgb.shape[1], Q.check_quality(quality), extra)


def _pack_at(codec: Codec, y: torch.Tensor, h: int, w: int, quality: float, extra: dict) -> bytes:
    q = bs.quantize_quality(quality)
    (streams,) = engine.code(codec.model, codec.tables, y, q)
    return bs.pack(
        bs.AecFile(
            w,
            h,
            q,
            model_id=codec.model_id,
            weights_hash=codec.weights_hash,
            z_stream=streams.z,
            y_stream=streams.y,
            **extra,
        )
    )


def encode_array_to_size(rgb: np.ndarray, max_bytes: int, codec: Codec | None = None, **extra) -> tuple[bytes, bool]:
    """Highest quality whose whole file fits in ``max_bytes`` (bisection on real encoded sizes).

    Returns (data, fits); when even the lowest quality is too big, that encode with ``fits=False``.
    The analysis transform runs once: only the latent is re-coded per probe.
    """
    codec = _resolve(codec)
    h, w = rgb.shape[:2]
    y = engine.analyze(codec.model, to_tensor(rgb).to(codec.device))

    def at(k: int) -> bytes:
        return _pack_at(codec, y, h, w, k / bs.QUALITY_SCALE, extra)

    lo, hi = int(Q.Q_MIN * bs.QUALITY_SCALE), int(Q.Q_MAX * bs.QUALITY_SCALE)
    best = at(lo)
    if len(best) > max_bytes:
        return best, False
    top = at(hi)
    if len(top) <= max_bytes:
        return top, True
    # Invariant: size(lo) <= budget < size(hi). Sizes grow with quality (not strictly per step,
    # so the answer is the highest probed quality that fits).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = at(mid)
        if len(data) <= max_bytes:
            lo, best = mid, data
        else:
            hi = mid
    return best, True


def decode_file(f: bs.AecFile, codec: Codec) -> np.ndarray:
    """Decode the RGB planes of a parsed file to an (H, W, 3) uint8 array."""
    from .model import PAD_MULTIPLE

    hp, wp = (-(-f.height // PAD_MULTIPLE)) * PAD_MULTIPLE, (-(-f.width // PAD_MULTIPLE)) * PAD_MULTIPLE
    streams = engine.Streams(f.z_stream, f.y_stream, (hp // PAD_MULTIPLE, wp // PAD_MULTIPLE))
    try:
        x = engine.decompress(codec.model, codec.tables, [streams], f.quality)
    except (RuntimeError, ValueError) as e:  # rANS / shape errors on damaged streams
        raise bs.FormatError(f"corrupt entropy-coded data ({e})") from None
    return to_uint8(x, f.height, f.width)


def decode_array(data: bytes, codec: Codec | None = None) -> np.ndarray:
    f = bs.unpack(data)
    return decode_file(f, _codec_for(f, codec))


def _codec_for(f: bs.AecFile, codec: Codec | None) -> Codec:
    if codec is not None:
        return codec
    from .weights import load_codec_for

    return load_codec_for(f.model_id, f.weights_hash)


# -- PIL images ------------------------------------------------------------------------------
def _to_planes(image: Image.Image | np.ndarray) -> tuple[np.ndarray, dict]:
    """Normalize any input image to RGB uint8 planes plus the fields that travel beside them."""
    if isinstance(image, np.ndarray):
        image = _array_to_image(image)
    if not isinstance(image, Image.Image):
        raise AecError(f"cannot encode object of type {type(image).__name__}")
    extra: dict = {}
    icc = image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image) or image  # orientation applied, tag dropped from the EXIF
    exif = image.info.get("exif")
    if exif:
        extra["exif"] = bytes(exif)
    if icc:
        extra["icc"] = bytes(icc)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        # 16-bit grey: keep the top 8 bits (the codec is 8-bit).
        arr = np.asarray(image, dtype=np.uint32 if image.mode == "I" else np.uint16)
        image = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.asarray(image).clip(0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    gray = image.mode in ("L", "LA", "1")
    if image.mode == "P":
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode == "CMYK" or image.mode == "YCbCr" or image.mode == "LAB" or image.mode == "HSV":
        image = image.convert("RGB")
    if has_alpha:
        alpha = image.getchannel("A")
        buf = io.BytesIO()
        alpha.save(buf, format="PNG", optimize=True)
        extra["alpha"] = buf.getvalue()
    rgb = np.asarray(image.convert("L").convert("RGB") if gray else image.convert("RGB"))
    if gray:
        extra["layout"] = bs.LAYOUT_GRAY
    return rgb, extra


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
    quality: float = 4.0,
    *,
    target_bpp: float | None = None,
    max_bytes: int | None = None,
    codec: Codec | None = None,
    device: str | None = None,
) -> bytes:
    """Compress a PIL image or uint8 array to ``.aec`` bytes.

    ``quality`` in [1, 8] (fractions allowed); or ``target_bpp`` / ``max_bytes`` to search the
    quality on real file sizes. ``max_bytes`` that no quality meets raises AecError; a
    ``target_bpp`` below the lowest quality's rate gives that lowest quality.
    """
    if target_bpp is not None and max_bytes is not None:
        raise AecError("give either target_bpp or max_bytes, not both")
    rgb, extra = _to_planes(image)
    codec = _resolve(codec, device)
    if target_bpp is None and max_bytes is None:
        return encode_array(rgb, quality, codec, **extra)
    if target_bpp is not None:
        if not target_bpp > 0:
            raise AecError(f"target bpp must be positive, got {target_bpp}")
        budget = int(target_bpp * rgb.shape[0] * rgb.shape[1] / 8)
    else:
        budget = int(max_bytes)
    data, fits = encode_array_to_size(rgb, budget, codec, **extra)
    if not fits and max_bytes is not None:
        raise AecError(f"cannot fit the image in {max_bytes} bytes: the lowest quality needs {len(data)}")
    return data


def decode(data: bytes, *, codec: Codec | None = None) -> Image.Image:
    """Decompress ``.aec`` bytes to a PIL image (RGB, L, RGBA or LA as it was coded)."""
    f = bs.unpack(data)
    rgb = decode_file(f, _codec_for(f, codec))
    image = Image.fromarray(rgb, "RGB")
    if f.layout == bs.LAYOUT_GRAY:
        image = image.convert("L")
    if f.alpha is not None:
        try:
            with Image.open(io.BytesIO(f.alpha)) as a:
                alpha = a.convert("L")
                alpha.load()
        except Exception:
            raise bs.FormatError("corrupt alpha plane") from None
        if alpha.size != image.size:
            raise bs.FormatError("alpha plane size does not match the image")
        image.putalpha(alpha)
    if f.icc:
        image.info["icc_profile"] = f.icc
    if f.exif:
        image.info["exif"] = f.exif
    return image
