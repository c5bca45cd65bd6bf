"""Planes stored as an image inside a chunk (``PIXL``, ``aLPH``), and the thin-image encoder behind ``PIXL``.

Reading: a chunk holds a PNG (``aLPH``, ``PIXL``) or a lossless WebP in its simple ``VP8L`` form
(``PIXL`` only). Its size is read from the header and checked against the image before Pillow
allocates anything, and only the named decoders are allowed to see the bytes.

Writing, for images the network codes poorly (``codec.coding.encoding.smallest``): a flat colour is stored exactly;
an image under ``codec.coding.encoding.THIN`` px on a side is padded to the network's stride (64 px), so a 1-px
column costs as much as a 64-px strip. For those the encoder also tries the planes *simplified* along
their long axis — smoothed (``SIGMAS``), then each line held from the previous one while no value moves
by more than a threshold (``HOLDS``), otherwise rounded to a multiple of a step (``STEPS``) — and keeps
the smallest file whose PSNR is at least the network file's. Held lines cost almost nothing in a
lossless WebP; the error is bounded by the threshold. The decoder needs nothing of this: it reads the
stored planes exactly.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from ..core.errors import FormatError
from ..core.tensors import psnr
from .files import MAX_SIDES

#: What Pillow raises on damaged image data (it has no common base class for them).
PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)

PNG = "PNG"
WEBP = "WEBP"
#: What a ``PIXL`` chunk may hold (``aLPH``: PNG only).
PIXL_FORMATS = (PNG, WEBP)
#: libwebp's largest side.
WEBP_MAX_SIDE = MAX_SIDES[WEBP]
#: Lossless WebP is tried only up to this many pixels (its search is slow on large images; those are
#: flat colours here, whose PNG is small anyway).
WEBP_MAX_PIXELS = 1 << 20
#: Simplification grid (see the module docstring): smoothing sigmas in lines, rounding steps and hold
#: thresholds in levels. On 1x500 columns of ten validation photos at qualities 1-8 (``scripts/thin_images.py``)
#: the file took a median 0.95x and at most 1.47x the bytes of the smallest WebP of equal or better PSNR
#: (hold-quantized planes in a PNG: up to 1.7x; the network alone: up to 3.4x).
SIGMAS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
HOLDS = (0, 2, 4, 8, 12, 16, 24, 32, 48, 64)
#: Longest line count simplified (one vectorized pass per sigma over the lines).
MAX_LINES = WEBP_MAX_SIDE


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, read without Pillow; None when it is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a simple lossless WebP (RIFF, ``VP8L``), read without Pillow; None otherwise."""
    if len(data) < 25 or data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8L" or data[20] != 0x2F:
        return None
    (bits,) = struct.unpack("<I", data[21:25])
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


_SIZE_READERS = {PNG: png_size, WEBP: webp_size}
#: Most pixels a stored plane of each format may have: the encoder writes a WebP only up to
#: ``WEBP_MAX_PIXELS`` (larger flat images are PNGs), so a larger one is refused before libwebp decodes it
#: (it would hold the image three times over: a 79-byte file of 11584² peaked at 2.6 GB).
MAX_PLANE_PIXELS = {WEBP: WEBP_MAX_PIXELS}
#: Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHUNK = struct.Struct(">I4s")


def png_raw_size(width: int, height: int, depth: int, color: int, interlaced: bool) -> int | None:
    """Bytes a PNG's image data inflates to (rows of filter byte + samples); None for an unknown colour type."""
    channels = _PNG_CHANNELS.get(color)
    if channels is None:
        return None
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
        if w and h:
            total += h * (1 + -(-(w * channels * depth) // 8))
    return total


def png_is_complete(data: bytes | memoryview) -> bool:
    """True when a PNG's IDAT chunks inflate to at least the bytes its header promises: Pillow accepts a valid
    zlib stream that ends early and leaves the missing rows black. Inflated in pieces: memory stays small."""
    data = memoryview(data)
    size = png_size(bytes(data[:24]))
    if size is None or len(data) < 29:
        return False
    depth, color, interlace = data[24], data[25], data[28]
    want = png_raw_size(*size, depth, color, bool(interlace))
    if want is None:
        return False
    inflate, got, pos = zlib.decompressobj(), 0, 8
    try:
        while pos + _PNG_CHUNK.size <= len(data) and got < want:
            length, tag = _PNG_CHUNK.unpack_from(data, pos)
            pos += _PNG_CHUNK.size
            if tag == b"IDAT":
                piece = data[pos : pos + length]
                while piece and got < want:
                    got += len(inflate.decompress(piece, 1 << 20))
                    piece = inflate.unconsumed_tail
            pos += length + 4  # payload and CRC
    except zlib.error:
        return False
    return got >= want


def read_plane(
    data: bytes, size: tuple[int, int], mode: str, what: str, formats: tuple[str, ...] = (PNG,)
) -> Image.Image:
    """The image a chunk stores, in ``mode``; FormatError unless it is one of ``formats`` of exactly ``size``."""
    found, fmt = None, None
    for fmt in formats:
        found = _SIZE_READERS[fmt](data)
        if found is not None:
            break
    if found is None:
        raise FormatError(f"corrupt {what} (not a {' or '.join(formats)} image)")
    if found != size:
        raise FormatError(f"{what} is {found[0]}x{found[1]}, the image {size[0]}x{size[1]}")
    most = MAX_PLANE_PIXELS.get(fmt)
    if most is not None and size[0] * size[1] > most:
        raise FormatError(f"{what}: a {fmt} plane holds at most {most} pixels, this one {size[0]}x{size[1]}")
    if fmt == PNG and not png_is_complete(data):
        raise FormatError(f"corrupt {what} (the PNG holds fewer rows than its header says)")
    try:
        with warnings.catch_warnings():
            # The size was checked against the decoder's own pixel limit above.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as a:
                if a.size != size:
                    raise FormatError(f"{what} size does not match the image")
                a.load()
                return a if a.mode == mode else a.convert(mode)  # no second copy of a large plane
    except UnidentifiedImageError:
        raise FormatError(f"corrupt {what} (not a readable {fmt} image)") from None
    except PIL_DECODE_ERRORS as e:
        raise FormatError(f"corrupt {what} ({type(e).__name__}: {e})") from None


def png_bytes(planes: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(planes)).save(buf, format=PNG, optimize=True)
    return buf.getvalue()


def webp_bytes(planes: np.ndarray) -> bytes | None:
    """A lossless WebP of ``planes`` (grey is stored as RGB), or None where WebP cannot or should not."""
    h, w = planes.shape[:2]
    if max(h, w) > WEBP_MAX_SIDE or h * w > WEBP_MAX_PIXELS or not features.check("webp"):
        return None
    image = Image.fromarray(np.ascontiguousarray(planes)).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=WEBP, lossless=True, quality=100, method=4, exact=True)
    data = buf.getvalue()
    return data if webp_size(data) == (w, h) else None  # only the simple format is accepted back


def lossless_bytes(planes: np.ndarray, formats: tuple[str, ...] = (PNG, WEBP)) -> bytes:
    """The smallest of ``formats`` holding ``planes`` exactly."""
    out = [png_bytes(planes)] if PNG in formats else []
    if WEBP in formats and (webp := webp_bytes(planes)) is not None:
        out.append(webp)
    return min(out, key=len)


def _smoothed(lines: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian of ``sigma`` lines along axis 0 (mirrored at the ends)."""
    if sigma == 0 or len(lines) < 2:
        return lines
    r = min(int(3 * sigma), len(lines) - 1)
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(lines, [(r, r)] + [(0, 0)] * (lines.ndim - 1), mode="reflect")
    return sum(k * padded[i : i + len(lines)] for i, k in enumerate(kernel))


def held(lines: np.ndarray, steps: np.ndarray, holds: np.ndarray) -> np.ndarray:
    """Every (step, hold) simplification of ``lines`` (L, ...) at once: (S, H, L, ...) uint8.

    Each value repeats the previous line's while it is within ``hold`` of it, else is rounded to a
    multiple of ``step``: its error is at most max(hold, step / 2).
    """
    rest = (1,) * (lines.ndim - 1)
    step = steps.astype(np.float64).reshape((len(steps), 1, *rest))
    hold = holds.astype(np.float64).reshape((1, len(holds), *rest))
    out = np.empty((len(steps), len(holds), *lines.shape), np.uint8)
    prev = np.broadcast_to(
        np.clip(np.round(lines[0] / step) * step, 0, 255), (len(steps), len(holds), *lines.shape[1:])
    )
    for i, line in enumerate(lines):
        new = np.clip(np.round(line / step) * step, 0, 255)
        prev = np.where(np.abs(line - prev) <= hold, prev, new)
        out[:, :, i] = prev
    return out


def simplified_bytes(planes: np.ndarray, at_least: float) -> bytes | None:
    """The smallest lossless WebP of a simplification of thin ``planes`` (H, W[, C]) whose PSNR against
    them is at least ``at_least``; None when none reaches it, WebP is missing, or the long side is over
    ``MAX_LINES``."""
    if not np.isfinite(at_least) or not features.check("webp"):
        return None
    lines = planes if planes.shape[0] >= planes.shape[1] else np.swapaxes(planes, 0, 1)  # long axis first
    if len(lines) > MAX_LINES:
        return None
    steps, holds = np.array(STEPS), np.array(HOLDS)
    best: bytes | None = None
    for sigma in SIGMAS:
        variants = held(_smoothed(lines.astype(np.float64), sigma), steps, holds)
        for per_step in variants:
            ok = [v for v in per_step if psnr(lines, v) >= at_least]
            if not ok:
                continue
            v = ok[-1]  # the largest hold that keeps the PSNR: the longest runs
            data = webp_bytes(v if lines is planes else np.swapaxes(v, 0, 1))
            if data is not None and (best is None or len(data) < len(best)):
                best = data
    return best
