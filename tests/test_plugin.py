"""Pillow integration: Image.open / Image.save on .aec once codec is imported."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import codec
from codec.format import bitstream as bs
from codec.plugin import pillow_quality


def test_save_and_open(tmp_path, photo_like):
    path = tmp_path / "p.aec"
    Image.fromarray(photo_like(37, 51)).save(path, aec_quality=6)
    with Image.open(path) as im:
        assert im.format == "AEC"
        assert im.size == (51, 37) and im.mode == "RGB"
        assert im.info["quality"] == 6.0
        im.load()
        assert im.getpixel((0, 0)) == codec.decode(path.read_bytes()).getpixel((0, 0))


def test_open_rgba(tmp_path, photo_like):
    rgba = np.dstack([photo_like(10, 12), np.full((10, 12), 77, np.uint8)])
    path = tmp_path / "a.aec"
    Image.fromarray(rgba, "RGBA").save(path)
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        assert im.getpixel((3, 3))[3] == 77


@pytest.mark.parametrize("pillow_q", [0, 40, 90, 100])
def test_pillow_quality_scale(tmp_path, photo_like, pillow_q):
    """``quality`` is Pillow's 0-100, mapped linearly onto the model's range (the test model's: 1-10)."""
    path = tmp_path / "q.aec"
    Image.fromarray(photo_like(20, 24)).save(path, quality=pillow_q)
    with Image.open(path) as im:
        assert im.info["quality"] == pytest.approx(1 + 9 * pillow_q / 100, abs=1 / bs.QUALITY_SCALE)
    assert pillow_quality(75, 10) == pytest.approx(7.75)
    assert pillow_quality(75, 12) == pytest.approx(9.25) and pillow_quality(100, 12) == 12


@pytest.mark.parametrize("bad", [{"quality": 101}, {"quality": -1}, {"quality": 50, "max_bytes": 999}])
def test_bad_save_options_refused(tmp_path, photo_like, bad):
    with pytest.raises((ValueError, codec.AecError)):
        Image.fromarray(photo_like(8, 8)).save(tmp_path / "x.aec", **bad)


def test_max_bytes_and_target_bpp_honoured(tmp_path, photo_like):
    image = Image.fromarray(photo_like(64, 96))
    top = tmp_path / "top.aec"
    image.save(top, aec_quality=10)
    budget = top.stat().st_size * 2 // 3
    capped = tmp_path / "capped.aec"
    image.save(capped, max_bytes=budget)
    assert capped.stat().st_size <= budget < top.stat().st_size
    target = budget * 8 / (64 * 96)
    aimed = tmp_path / "aimed.aec"
    image.save(aimed, target_bpp=target)
    assert aimed.stat().st_size * 8 / (64 * 96) <= target
    with pytest.raises(codec.AecError, match="cannot fit"):
        image.save(tmp_path / "tiny.aec", max_bytes=10)
