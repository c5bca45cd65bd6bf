"""Training data: every photo of a folder held in memory as uint8, sampled as random crops.

The training set is small (677 photos, ~0.5 GB decoded), so decoding once and cropping from RAM
keeps the CPU on the network instead of on JPEG decoding, with no loader workers to manage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def image_files(folder: str | Path, skipped: list[str] | None = None) -> list[Path]:
    """Image files of a folder, sorted; other files (READMEs, checksums) are skipped.

    Only regular files (or links to them) count: a FIFO named ``x.png`` would block its reader forever, and a
    folder named ``d.png`` or a symlink loop cannot be read. Each such name is added to ``skipped`` with why.
    """
    named = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = [p for p in named if p.is_file()]  # is_file: False for a symlink loop too, never raises
    if skipped is not None:
        skipped += [f"{p}: skipped, not a regular file" for p in named if not p.is_file()]
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    return paths


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class CropSampler:
    """Random crops with horizontal/vertical flips from a list of in-memory images."""

    def __init__(self, folder: str | Path, crop: int, seed: int = 0, shard: tuple[int, int] = (0, 1)):
        rank, world = shard
        self.images = [load_rgb(p) for p in image_files(folder)[rank::world]]
        self.images = [im for im in self.images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no image in {folder} is at least {crop}x{crop}")
        self.crop = crop
        self.rng = np.random.default_rng(seed + 1000 * rank)
        # Sample images in proportion to their area so every pixel is equally likely.
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()

    def batch(self, size: int) -> torch.Tensor:
        out = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for i, k in enumerate(self.rng.choice(len(self.images), size=size, p=self.p)):
            im = self.images[k]
            top = self.rng.integers(0, im.shape[0] - self.crop + 1)
            left = self.rng.integers(0, im.shape[1] - self.crop + 1)
            c = im[top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            if self.rng.random() < 0.5:
                c = c[::-1]
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)
