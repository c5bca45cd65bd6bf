"""The codecs under test, each reduced to ``encode(rgb) -> bytes`` and ``decode(bytes) -> rgb``.

Classical codecs go through Pillow so every number comes from the same library a user of this
project already has; the aecodec adapter goes through ``codec.api`` so the byte count is the
whole ``.aec`` file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

#: Quality sweep of CompressAI's JPEG/WebP anchors (Pillow q 5..95).
PILLOW_QUALITIES: tuple[int, ...] = tuple(range(5, 100, 5))
#: The coarser sweep of ``aecodec bench`` (and of the README's Kodak figures): enough points for BD-rate
#: at about half the encodes.
BENCH_QUALITIES: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


@dataclass(frozen=True)
class Coder:
    """One codec at one setting."""

    codec: str
    quality: float
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


@dataclass(frozen=True)
class PillowCodec:
    """A Pillow format with fixed save options; the sweep varies ``quality`` only."""

    name: str
    format: str
    options: tuple[tuple[str, object], ...]
    description: str


PILLOW_CODECS: tuple[PillowCodec, ...] = (
    PillowCodec("jpeg", "JPEG", (), "Pillow JPEG, default settings (4:2:0, standard Huffman tables)"),
    PillowCodec("jpeg-optimize", "JPEG", (("optimize", True),), "Pillow JPEG, optimize=True (4:2:0)"),
    PillowCodec("jpeg-444", "JPEG", (("subsampling", 0),), "Pillow JPEG, subsampling=0 (4:4:4)"),
    PillowCodec("webp", "WEBP", (("method", 6),), "Pillow WebP (libwebp), method=6"),
    PillowCodec("avif", "AVIF", (), "Pillow AVIF (libavif), default speed and 4:2:0"),
    PillowCodec("jxl", "JXL", (), "JPEG XL through pillow-jxl-plugin, default effort"),
)


def unavailable_reason(pc: PillowCodec) -> str | None:
    """Why this Pillow build cannot run ``pc`` (None when it can)."""
    if pc.format == "JXL":
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)
        except ImportError:
            return "JPEG XL skipped: pillow_jxl is not installed (pip install pillow-jxl-plugin)"
        return None
    feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}[pc.format]
    if not features.check(feature):
        return f"{pc.name} skipped: this Pillow build has no {pc.format} support"
    return None


def pillow_encode(image: Image.Image | np.ndarray, fmt: str, quality: float, **options) -> bytes:
    """The whole file Pillow writes for ``image`` (a PIL image, or an RGB uint8 array)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image, "RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=int(quality), **options)
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def pillow_coders(pc: PillowCodec, qualities: Iterable[float]) -> list[Coder]:
    options = dict(pc.options)
    return [
        Coder(pc.name, float(q), lambda rgb, q=q: pillow_encode(rgb, pc.format, q, **options), pillow_decode)
        for q in qualities
    ]


def aecodec_name(effort: int = 0) -> str:
    """The results name of aecodec at an encoder effort: plain ``aecodec`` for the default 0."""
    return "aecodec" if effort == 0 else f"aecodec-effort{effort}"


def aecodec_coders(codec, qualities: Iterable[float], effort: int = 0) -> list[Coder]:
    """aecodec through the public API, one loaded ``codec.api.Codec`` shared by every setting."""
    from codec import api

    def decode(data: bytes) -> np.ndarray:
        return np.asarray(api.decode(data, codec=codec).convert("RGB"))

    return [
        Coder(aecodec_name(effort), float(q), lambda rgb, q=q: api.encode(rgb, q, codec=codec, effort=effort), decode)
        for q in qualities
    ]
