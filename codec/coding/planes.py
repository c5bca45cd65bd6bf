"""An image as the codec codes it: any Pillow image or uint8 array made the RGB planes a file codes and the
fields that travel beside them (``to_planes``: layout, alpha, ICC, EXIF), EXIF orientation applied.

The inverse is ``codec.coding.decoding.image_from_planes``. Torch-free.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageOps

from ..core.errors import AecError
from ..format import bitstream as bs
from ..format import stored


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
