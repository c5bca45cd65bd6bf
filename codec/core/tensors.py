"""Pure conversions between uint8 images and padded network tensors, and small tensor helpers.

Torch is imported by the functions that take or give tensors: ``padded_size`` and ``psnr`` serve the decode of
a fitted file, which runs without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Both sides rounded up to ``multiple`` (a model's ``stride``)."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def to_tensor(rgb: np.ndarray, multiple: int) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, Hp, Wp) float in [0, 1], edges replicated up to ``multiple``."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255)
    h, w = rgb.shape[:2]
    hp, wp = padded_size(h, w, multiple)
    if (hp, wp) != (h, w):
        # Replicate padding needs the pad smaller than the input on some torch versions: pad in steps.
        while x.shape[2] < hp or x.shape[3] < wp:
            ph, pw = min(hp - x.shape[2], x.shape[2]), min(wp - x.shape[3], x.shape[3])
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def to_uint8(x: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, 3, Hp, Wp) float → (height, width, 3) uint8, cropping the padding away.

    Damaged streams can drive the network to NaN/inf; those map to 0/255 so a decode still yields an image.
    """
    import torch

    x = torch.nan_to_num(x[0, :, :height, :width], nan=0.0, posinf=1.0, neginf=0.0)
    x = x.clamp(0, 1).mul(255).round_().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    import torch

    return x + (torch.round(x) - x).detach()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
