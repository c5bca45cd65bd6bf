"""``aecodec compare``: one image coded by aecodec and by each classical codec at the same file size.

Each classical codec gets the Pillow quality whose file is the largest at or under aecodec's bytes
(bisection over qualities 1..100; when even quality 1 is larger, that file is kept and marked over
budget). The results are measured as the page shows them: alpha is composited over a checkerboard
(a codec without alpha, JPEG, shows its colour planes as they are), grayscale as gray RGB; PSNR and
MS-SSIM compare those RGB pixels with the original's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import metrics
from .coders import PILLOW_CODECS, PillowCodec, pillow_encode

#: Pillow's quality scale, searched for the file closest to the byte budget.
PILLOW_Q_MIN, PILLOW_Q_MAX = 1, 100
#: Side of the checkerboard squares alpha is composited over, and their two greys.
CHECKER, CHECKER_GREYS = 8, (204, 153)


@dataclass
class Variant:
    """One picture on the page: the original or a decoded result, with its measurements."""

    name: str
    image: Image.Image  # as decoded, in its own mode
    bytes: int
    quality: float | None = None
    fits: bool = True
    psnr: float = float("nan")
    ms_ssim: float = float("nan")
    alpha: str | None = None  # how the alpha plane came through, for images that have one
    shown: np.ndarray = field(default=None, repr=False)  # RGB as the page shows it

    def row(self, width: int, height: int) -> dict:
        """The variant's table row (JSON-ready; NaN stays NaN for ``report.finite_or_none``)."""
        return {
            "codec": self.name,
            "quality": self.quality,
            "bytes": self.bytes,
            "bpp": metrics.bpp(self.bytes, height, width),
            "psnr": self.psnr,
            "ms_ssim": self.ms_ssim,
            "fits": self.fits,
            "alpha": self.alpha,
        }


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA")


def checkerboard(width: int, height: int) -> Image.Image:
    """The grey checkerboard transparent pixels are shown over, as image editors do."""
    yy, xx = np.indices((height, width))
    light, dark = CHECKER_GREYS
    return Image.fromarray(np.where((yy // CHECKER + xx // CHECKER) % 2 == 0, light, dark).astype(np.uint8), "L")


def shown_rgb(image: Image.Image) -> np.ndarray:
    """RGB pixels as the page shows them: alpha composited over the checkerboard, gray as gray RGB."""
    if has_alpha(image):
        back = checkerboard(*image.size).convert("RGBA")
        return np.asarray(Image.alpha_composite(back, image.convert("RGBA")).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def pillow_input(image: Image.Image, pc: PillowCodec) -> Image.Image:
    """The image in a mode ``pc`` takes: JPEG keeps gray but has no alpha (dropped); WebP and AVIF
    code colour (gray as RGB) and keep alpha."""
    if pc.format == "JPEG":
        return image.convert({"LA": "L", "RGBA": "RGB"}.get(image.mode, image.mode))
    return image.convert("RGBA" if has_alpha(image) else "RGB")


def fit_quality(encode, budget: int, lo: int = PILLOW_Q_MIN, hi: int = PILLOW_Q_MAX) -> tuple[int, bytes, bool]:
    """(quality, file, fits): the largest file at or under ``budget`` bytes among the qualities probed.

    Bisection for the highest quality that fits (sizes grow with quality, not strictly per step, so
    every probed file that fits is a candidate). When even ``lo`` is over budget: its file, fits False.
    """
    probed = {lo: encode(lo)}
    if len(probed[lo]) > budget:
        return lo, probed[lo], False
    probed[hi] = encode(hi)
    if len(probed[hi]) <= budget:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probed[mid] = encode(mid)
        lo, hi = (mid, hi) if len(probed[mid]) <= budget else (lo, mid)
    q = max((q for q, d in probed.items() if len(d) <= budget), key=lambda q: (len(probed[q]), q))
    return q, probed[q], True


def pillow_variant(image: Image.Image, pc: PillowCodec, budget: int) -> Variant:
    """``pc`` at the quality whose file is the largest at or under ``budget`` bytes, decoded."""
    src = pillow_input(image, pc)
    q, data, fits = fit_quality(lambda q: pillow_encode(src, pc.format, q, **dict(pc.options)), budget)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        decoded = im.copy()
    return Variant(pc.name, decoded, len(data), float(q), fits)


def alpha_note(original: Image.Image, decoded: Image.Image) -> str | None:
    """How the alpha plane came through: None when the original has none."""
    if not has_alpha(original):
        return None
    if not has_alpha(decoded):
        return "dropped"
    err = np.abs(np.asarray(original.getchannel("A"), np.int16) - np.asarray(decoded.getchannel("A"), np.int16))
    return "lossless" if not err.any() else f"lossy (max error {int(err.max())})"


def measure(original: Variant, v: Variant) -> None:
    """Fill in ``v``'s shown pixels and, against the original's, its PSNR, MS-SSIM and alpha note."""
    v.shown = shown_rgb(v.image)
    if v is original:
        return
    if v.shown.shape != original.shown.shape:
        raise RuntimeError(f"{v.name} decoded {v.shown.shape}, expected {original.shown.shape}")
    v.psnr = metrics.psnr(original.shown, v.shown)
    v.ms_ssim = metrics.ms_ssim(original.shown, v.shown)
    v.alpha = alpha_note(original.image, v.image)


def pillow_codec(name: str) -> PillowCodec:
    return next(pc for pc in PILLOW_CODECS if pc.name == name)


def compare(original: Image.Image, input_bytes: int, aec_data: bytes, aec_image: Image.Image, names, quality: float):
    """The page's variants: the original (``input_bytes``: its file's size), aecodec's result and each
    named Pillow codec at aecodec's file size, all measured."""
    variants = [Variant("original", original, input_bytes), Variant("aecodec", aec_image, len(aec_data), quality)]
    variants += [pillow_variant(original, pillow_codec(n), len(aec_data)) for n in names]
    for v in variants:
        measure(variants[0], v)
    return variants
