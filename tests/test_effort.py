"""Encoder effort: optimized latents cost less and still decode with the unchanged decoder."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import codec  # noqa: F401  (registers the Pillow plugin)
from codec import api
from codec.cli import main
from codec.coding import batch, effort
from codec.core import quality as Q
from codec.core.errors import AecError
from codec.core.tensors import psnr, to_tensor
from codec.format import bitstream as bs
from codec.models.base import Effortful, Model
from codec.models.hyperprior import GainHyperprior
from codec.weights.store import load_codec

QUALITY = 4.0


def rd_cost(rgb: np.ndarray, data: bytes) -> float:
    """The real cost the effort minimizes: file bits + λ·255²·MSE·pixels, from the decoded image."""
    out = api.decode_array(data)
    mse = 255.0**2 / 10 ** (psnr(rgb, out) / 10)
    return 8 * len(data) + Q.lmbda(bs.unpack(data).quality) * mse * rgb.shape[0] * rgb.shape[1]


@pytest.fixture
def image(photo_like) -> np.ndarray:
    return photo_like(80, 112, seed=3)  # padded to 128x128: the padding must not count


def test_effort_lowers_the_real_rd_cost(image):
    plain = api.encode(image, QUALITY)
    searched = api.encode(image, QUALITY, effort=1)
    assert searched != plain
    assert rd_cost(image, searched) < rd_cost(image, plain)


def test_effort_zero_is_the_plain_encoder(image):
    """Effort 0 takes no new step: the same bytes as coding the analysis's latent with its side latent spelled out."""
    model = load_codec().model
    y = model.analyze(to_tensor(image, model.stride))
    q = bs.quantize_quality(QUALITY)
    with torch.inference_mode():
        explicit = model.encode_latent(y, q, side=model.side_analysis(y))
    assert model.encode_latent(y, q) == explicit
    data = api.encode(image, QUALITY, effort=0)
    assert data == api.encode(image, QUALITY)
    assert bs.unpack(data).streams == explicit


def test_effort_files_decode_exactly_in_every_configuration(image):
    """The coded symbols are what the decoder rebuilds, in float64 and with 2 threads too."""
    data = api.encode(image, QUALITY, effort=1)
    model, f = load_codec().model, bs.unpack(data)
    shape = (128 // model.latent_stride, 128 // model.latent_stride)
    ref = model.decode_symbols(f.streams, shape, f.quality)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        other = copy.deepcopy(model).double().prepare().decode_symbols(f.streams, shape, f.quality)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(ref.y_sym, other.y_sym) and torch.equal(ref.indexes, other.indexes)
    assert api.decode_array(data).shape == image.shape


def test_optimized_latents_are_coded_as_scored(image):
    """The returned latents sit on their quantization lattice: the exact coder writes those symbols."""
    model = load_codec().model
    x = to_tensor(image, model.stride)
    y = model.analyze(x).float()
    target = effort.Target(x, torch.ones(1, 1, *x.shape[2:]))
    y_opt, z_opt, gain = effort.optimize(model, y, target, QUALITY, 6)
    assert gain.iterations == 6
    lat = model.quantize(y_opt, QUALITY, z_opt)
    assert torch.allclose(lat.y_hat().float(), y_opt, atol=1e-4)


def test_tiled_effort_decodes_and_gains(photo_like):
    rgb = photo_like(96, 160, seed=5)
    plain = api.encode(rgb, QUALITY, tile=64)
    searched = api.encode(rgb, QUALITY, tile=64, effort=1)
    assert bs.unpack(searched).tile == 64
    assert rd_cost(rgb, searched) < rd_cost(rgb, plain)


def test_batched_effort_matches_its_own_gain(photo_like):
    rgbs = [photo_like(64, 64, seed=s) for s in range(2)] + [photo_like(50, 60, seed=9)]
    plain = batch.encode_arrays(rgbs, QUALITY)
    searched = batch.encode_arrays(rgbs, QUALITY, effort=1)
    for rgb, p, s in zip(rgbs, plain, searched, strict=True):
        assert rd_cost(rgb, s) < rd_cost(rgb, p)


def test_size_search_with_effort_keeps_the_budget(image):
    budget = len(api.encode(image, 5.0))
    data = api.encode(image, max_bytes=budget, effort=1)
    assert len(data) <= budget
    assert api.decode_array(data).shape == image.shape


def test_pillow_keyword(image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="AEC", aec_quality=QUALITY, effort=1)
    assert buf.getvalue() == api.encode(image, QUALITY, effort=1)


@pytest.mark.parametrize("bad", [-1, Q.MAX_EFFORT + 1, 1.5, True])
def test_bad_effort_is_refused(image, bad):
    with pytest.raises(AecError, match="effort"):
        api.encode(image, QUALITY, effort=bad)


def _delegated(name: str):
    return lambda self, *args, **kwargs: getattr(self.inner, name)(*args, **kwargs)


class WithoutEffort(Model):
    """A kind that codes as the test model does, but is not ``Effortful`` (no effort methods at all)."""

    kind = "test-without-effort"
    stride, latent_stride, tile_margin = GainHyperprior.stride, GainHyperprior.latent_stride, GainHyperprior.tile_margin

    def __init__(self, inner: GainHyperprior):
        super().__init__()
        self.inner = inner

    @classmethod
    def from_arch(cls, arch: dict) -> WithoutEffort:
        return cls(GainHyperprior.from_arch(arch))

    def arch_dict(self) -> dict:
        return self.inner.arch_dict()

    @property
    def levels(self) -> int:
        return self.inner.levels

    def prepare(self) -> WithoutEffort:
        self.inner.prepare()
        return self

    build_tables, analyze, side_analysis = (_delegated(n) for n in ("build_tables", "analyze", "side_analysis"))
    encode_latent, decode_latent, synthesize = (_delegated(n) for n in ("encode_latent", "decode_latent", "synthesize"))


def test_a_model_without_effort_refuses_it_cleanly(image):
    """Effort is its own part of the interface: a kind without it codes at effort 0 (the same bytes), and effort 1
    or ``iterations`` is an AecError, before any optimization starts."""
    loaded = load_codec()
    plain = dataclasses.replace(loaded, model=WithoutEffort(loaded.model))
    assert not isinstance(plain.model, Effortful) and isinstance(loaded.model, Effortful)
    assert api.encode(image, QUALITY, effort=0, codec=plain) == api.encode(image, QUALITY, codec=loaded)
    with pytest.raises(AecError, match="no encoder effort"):
        api.encode(image, QUALITY, effort=1, codec=plain)
    with pytest.raises(AecError, match="no encoder effort"):
        batch.encode_arrays([image, image], QUALITY, codec=plain, effort=1)
    with pytest.raises(AecError, match="--iterations applies only to --model overfit"):
        api.encode(image, QUALITY, iterations=3, codec=plain)
    with pytest.raises(AecError, match="no encoder effort"):  # a direct caller of the optimizer is told too
        effort.optimize(plain.model, torch.zeros(1, 192, 4, 4), None, QUALITY, 1)


def test_cli_effort(tmp_path, image):
    src = tmp_path / "a.png"
    Image.fromarray(image).save(src)
    ok = CliRunner().invoke(main, ["encode", str(src), "--effort", "1", "-q", str(QUALITY)], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "a.aec").read_bytes() == api.encode(image, QUALITY, effort=1)
    bad = CliRunner().invoke(main, ["encode", str(src), "--effort", "9", "-f"], catch_exceptions=False)
    assert bad.exit_code == 2 and bad.stderr.strip().count("\n") == 0 and "effort" in bad.stderr


def test_cli_verbose_prints_the_gain(tmp_path, image):
    src = tmp_path / "a.png"
    Image.fromarray(image).save(src)
    plain = CliRunner().invoke(main, ["encode", str(src), "-v", "-q", str(QUALITY)], catch_exceptions=False)
    assert plain.exit_code == 0 and "effort" not in plain.stderr
    out = CliRunner().invoke(main, ["encode", str(src), "-f", "-v", "--effort", "1"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = out.stderr.strip().splitlines()
    assert (
        len(lines) == 2 and lines[0].startswith(f"effort: {Q.EFFORT_ITERATIONS[1]} iterations") and "rate" in lines[0]
    ), lines
    assert "a.aec" in lines[1]
