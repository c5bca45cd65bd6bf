"""Per-image quality and rate measures, computed the way CompressAI's published Kodak curves were."""

from __future__ import annotations

import math

import numpy as np

from ..core.tensors import psnr

__all__ = ["MS_SSIM_MIN_SIDE", "bpp", "ms_ssim", "ms_ssim_db", "psnr"]

#: pytorch-msssim's defaults (11-px window, 5 scales) need a short side above (11 - 1) * 2**4 = 160.
MS_SSIM_MIN_SIDE = 161


def bpp(n_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a whole encoded file (headers included), as the anchors count them."""
    return n_bytes * 8.0 / (height * width)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two (H, W, 3) uint8 images, data_range 255; NaN when the image is too small."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan

    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]  # a copy: x may be read-only

    with torch.inference_mode():
        return float(_ms_ssim(t(a), t(b), data_range=255.0))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, −10·log10(1 − v), which spreads out the high-quality end."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)
