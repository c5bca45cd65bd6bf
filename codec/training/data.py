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
        return np.array(im.convert("RGB"))  # writable: crops become torch tensors without a copy


class CropSampler:
    """Random crops with horizontal/vertical flips from a list of in-memory images.

    The images are uint8 (H, W, 3) tensors on any device (``from_images``): the GPU sprint keeps its whole
    pack in GPU memory, so a batch is cut there with no loader in the way. Batches are float (B, 3, crop,
    crop) in [0, 1] on the images' device.
    """

    def __init__(self, folder: str | Path, crop: int, seed: int = 0, shard: tuple[int, int] = (0, 1)):
        rank, world = shard
        self._setup([load_rgb(p) for p in image_files(folder)[rank::world]], crop, seed + 1000 * rank, str(folder))

    @classmethod
    def from_images(cls, images: list, crop: int, seed: int = 0, device: str | torch.device = "cpu") -> CropSampler:
        """A sampler over decoded images (uint8 (H, W, 3) arrays), moved to ``device``."""
        sampler = cls.__new__(cls)
        sampler._setup([torch.as_tensor(np.asarray(im)).to(device) for im in images], crop, seed, "the pack")
        return sampler

    def _setup(self, images: list, crop: int, seed: int, where: str) -> None:
        self.images = [torch.as_tensor(im) for im in images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no image in {where} is at least {crop}x{crop}")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        # Sample images in proportion to their area so every pixel is equally likely.
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()

    def batch(self, size: int) -> torch.Tensor:
        crops = []
        for k in self.rng.choice(len(self.images), size=size, p=self.p):
            im = self.images[k]
            top = self.rng.integers(0, im.shape[0] - self.crop + 1)
            left = self.rng.integers(0, im.shape[1] - self.crop + 1)
            c = im[top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(1)
            if self.rng.random() < 0.5:
                c = c.flip(0)
            crops.append(c)
        return torch.stack(crops).permute(0, 3, 1, 2).float().div_(255)
