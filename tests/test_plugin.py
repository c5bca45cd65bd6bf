"""Pillow integration: Image.open / Image.save on .aec once codec is imported."""

from __future__ import annotations

from PIL import Image

import codec


def test_save_and_open(tmp_path, photo_like):
    path = tmp_path / "p.aec"
    Image.fromarray(photo_like(37, 51)).save(path, quality=6)
    with Image.open(path) as im:
        assert im.format == "AEC"
        assert im.size == (51, 37) and im.mode == "RGB"
        assert im.info["quality"] == 6.0
        im.load()
        assert im.getpixel((0, 0)) == codec.decode(path.read_bytes()).getpixel((0, 0))


def test_open_rgba(tmp_path, photo_like):
    import numpy as np

    rgba = np.dstack([photo_like(10, 12), np.full((10, 12), 77, np.uint8)])
    path = tmp_path / "a.aec"
    Image.fromarray(rgba, "RGBA").save(path)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        assert im.getpixel((3, 3))[3] == 77
