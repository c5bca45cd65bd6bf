"""Thin images against WebP: 1x500 columns and 500x1 rows cut from photos (issue 15, item 10).

For each photo (the first ``--limit`` of a folder) and quality, the bytes of our file against the smallest WebP
(method 6, any quality or lossless) whose PSNR is at least ours; prints each case and the median and worst ratio.

    python scripts/thin_images.py ../shared/data/val
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from codec import api
from codec.core.tensors import psnr
from codec.format import bitstream as bs

QUALITIES = (1, 2, 3, 4, 6, 8)


def smallest_webp(rgb: np.ndarray, at_least: float) -> int:
    """Bytes of the smallest WebP (a quality or lossless) whose PSNR is at least ``at_least``."""
    sizes = []
    for params in [{"lossless": True}] + [{"quality": q} for q in range(0, 101, 5)]:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "WEBP", method=6, **params)
        if psnr(rgb, np.asarray(Image.open(buf).convert("RGB"))) >= at_least:
            sizes.append(len(buf.getvalue()))
    return min(sizes)


def cuts(path: Path, length: int = 500) -> dict[str, np.ndarray]:
    """The middle column and row of a photo, ``length`` px long."""
    im = np.asarray(Image.open(path).convert("RGB"))
    h, w = im.shape[:2]
    return {
        "column": np.ascontiguousarray(im[:length, w // 2 : w // 2 + 1]),
        "row": np.ascontiguousarray(im[h // 2 : h // 2 + 1, :length]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--limit", type=int, default=10)
    args = p.parse_args()
    photos = sorted(f for f in args.folder.iterdir() if f.suffix.lower() in {".png", ".jpg", ".jpeg"})[: args.limit]
    ratios: dict[str, list[float]] = {"column": [], "row": []}
    for path in photos:
        for kind, rgb in cuts(path).items():
            for q in QUALITIES:
                data = api.encode_array(rgb, q)
                ours = psnr(rgb, api.decode_array(data))
                webp = smallest_webp(rgb, ours)
                how = "stored" if bs.unpack(data).pixels is not None else "coded"
                ratio = len(data) / webp
                ratios[kind].append(ratio)
                print(f"{path.name} {kind} q{q}: {len(data)} B ({how}), {ours:.2f} dB; WebP {webp} B: {ratio:.2f}x")
    for kind, r in ratios.items():
        over = sum(x > 1.5 for x in r)
        print(f"{kind}s: {len(r)} cases, median {np.median(r):.2f}x, worst {max(r):.2f}x, over 1.5x: {over}")


if __name__ == "__main__":
    main()
