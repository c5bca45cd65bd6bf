"""Round trips through the Python API on generated images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec.api import encode_array_to_size
from codec.core import engine
from codec.core.tensors import psnr, to_tensor, to_uint8
from codec.format import bitstream as bs
from codec.weights.store import load_codec


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (65, 33), (512, 768)])
def test_round_trip_keeps_size(photo_like, h, w):
    image = Image.fromarray(photo_like(h, w), "RGB")
    data = codec.encode(image, quality=3)
    out = codec.decode(data)
    assert out.size == (w, h)
    assert out.mode == "RGB"


def test_decode_close_to_float_network(photo_like):
    """The coded path (exact integer hyper-synthesis, real rANS) stays close to the float network's eval pass."""
    c = load_codec()
    rgb = photo_like(64, 128)
    out = np.asarray(codec.decode(codec.encode(rgb, quality=5.5, codec=c), codec=c)).astype(float)
    with torch.no_grad():
        ref = to_uint8(c.model(to_tensor(rgb, c.model.stride), torch.tensor([5.5]))["x_hat"], 64, 128).astype(float)
    assert np.abs(out - ref).mean() < 1.0


def test_encoding_is_deterministic(photo_like):
    rgb = photo_like(70, 90)
    assert codec.encode(rgb, quality=4.25) == codec.encode(rgb, quality=4.25)


def test_quality_changes_rate(photo_like):
    rgb = photo_like(128, 128)
    sizes = [len(codec.encode(rgb, quality=q)) for q in (1, 8)]
    assert sizes[0] < sizes[1]


def test_fractional_quality_is_stored(photo_like):
    data = codec.encode(photo_like(16, 16), quality=2.3456)
    assert bs.unpack(data).quality == 2.346


@pytest.mark.parametrize("q", [0.99, 10.01, float("nan")])
def test_quality_out_of_range(photo_like, q):
    with pytest.raises(ValueError):
        codec.encode(photo_like(8, 8), quality=q)


def test_grayscale_is_coded_as_grayscale(photo_like):
    gray = Image.fromarray(photo_like(40, 30)[:, :, 0], "L")
    data = codec.encode(gray)
    assert bs.unpack(data).layout == bs.LAYOUT_GRAY
    out = codec.decode(data)
    assert out.mode == "L" and out.size == (30, 40)


def test_alpha_is_lossless(photo_like):
    rgba = np.dstack([photo_like(33, 47), np.random.default_rng(1).integers(0, 256, (33, 47), dtype=np.uint8)])
    out = codec.decode(codec.encode(Image.fromarray(rgba, "RGBA")))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], rgba[:, :, 3])


def test_sixteen_bit_png(photo_like, tmp_path):
    arr16 = photo_like(20, 24)[:, :, 1].astype(np.uint16) * 257
    path = tmp_path / "deep.png"
    Image.fromarray(arr16).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        out = codec.decode(codec.encode(im))
    assert out.mode == "L" and out.size == (24, 20)


def test_palette_with_transparency(photo_like):
    im = Image.fromarray(photo_like(30, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    im.info["transparency"] = 0
    out = codec.decode(codec.encode(im))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], np.asarray(im.convert("RGBA"))[:, :, 3])


def test_icc_and_exif_travel(photo_like):
    im = Image.fromarray(photo_like(16, 16))
    exif = Image.Exif()
    exif[0x010F] = "aecodec-test-camera"
    buf = io.BytesIO()
    im.save(buf, format="PNG", icc_profile=b"fake-icc-profile-bytes", exif=exif)
    with Image.open(io.BytesIO(buf.getvalue())) as src:
        out = codec.decode(codec.encode(src))
    assert out.info["icc_profile"] == b"fake-icc-profile-bytes"
    assert out.getexif()[0x010F] == "aecodec-test-camera"


def test_exif_orientation_is_applied(photo_like):
    im = Image.fromarray(photo_like(20, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    with Image.open(io.BytesIO(buf.getvalue())) as src:
        out = codec.decode(codec.encode(src))
    assert out.size == (20, 50)
    assert out.getexif().get(0x0112, 1) == 1


def test_target_bpp_lands_within_ten_percent(photo_like):
    rgb = photo_like(192, 256)
    lo = len(codec.encode(rgb, quality=1)) * 8 / rgb[..., 0].size
    hi = len(codec.encode(rgb, quality=8)) * 8 / rgb[..., 0].size
    for target in (lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)):
        bpp = len(codec.encode(rgb, target_bpp=target)) * 8 / rgb[..., 0].size
        assert abs(bpp - target) <= 0.1 * target, (bpp, target)


def test_max_bytes_is_a_hard_limit(photo_like):
    rgb = photo_like(128, 128)
    smallest = len(codec.encode(rgb, quality=1))
    budget = smallest + 200
    data, fits = encode_array_to_size(rgb, budget, load_codec())
    assert fits and len(data) <= budget
    with pytest.raises(codec.AecError):
        codec.encode(rgb, max_bytes=smallest - 1)


def test_engine_batches_match_single(photo_like):
    c = load_codec()
    x = torch.cat([to_tensor(photo_like(64, 64, seed=s), c.model.stride) for s in range(3)])
    batch = c.model.encode_latent(c.model.analyze(x), 2.0)
    single = [c.model.encode_latent(c.model.analyze(x[i : i + 1]), 2.0)[0] for i in range(3)]
    assert batch == single


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_transforms_stay_close(photo_like, monkeypatch, dtype):
    """CUDA's fp16 and the fast CPUs' bf16 autocast of g_a/g_s, exercised on this CPU: same rate and
    quality as float32, and the files decode with the float32 path too (the symbols are exact)."""
    rgb = photo_like(64, 96)
    monkeypatch.setattr(engine, "half_dtype", lambda device: None)
    ref = codec.encode(rgb, quality=5)
    ref_psnr = psnr(rgb, np.asarray(codec.decode(ref)))
    monkeypatch.setattr(engine, "half_dtype", lambda device: dtype)
    half = codec.encode(rgb, quality=5)
    assert abs(len(half) - len(ref)) <= max(2, 0.02 * len(ref))
    assert abs(psnr(rgb, np.asarray(codec.decode(half))) - ref_psnr) < 0.1
    monkeypatch.setattr(engine, "half_dtype", lambda device: None)
    assert abs(psnr(rgb, np.asarray(codec.decode(half))) - ref_psnr) < 0.1


def test_cpu_fast_path_follows_the_cpu_and_the_switch(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("AECODEC_CPU_FAST", raising=False)
    assert engine.half_dtype(cpu) == torch.bfloat16 and engine.layout(cpu) == torch.channels_last
    monkeypatch.setenv("AECODEC_CPU_FAST", "0")
    assert engine.half_dtype(cpu) is None and engine.layout(cpu) == torch.contiguous_format
    monkeypatch.delenv("AECODEC_CPU_FAST")
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    assert engine.half_dtype(cpu) is None and engine.layout(cpu) == torch.contiguous_format
    assert engine.half_dtype(torch.device("cuda")) == torch.float16


def test_fp16_overflow_falls_back_to_float32(monkeypatch):
    monkeypatch.setattr(engine, "half_dtype", lambda device: torch.float16)
    big = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        big[0].weight.fill_(1e5)  # 1e5 overflows fp16 (max 65504)
        big[1].weight.fill_(1e-5)
    out = engine.transform(big, torch.ones(1, 1, 2, 2))
    assert torch.isfinite(out).all() and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))
