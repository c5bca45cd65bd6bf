"""The context model (kind gain-ctx): starts as the hyperprior, codes losslessly in its latent, and
decodes to the same latents under every configuration of the float parts (threads, float64, batch
size, perturbed floats); end to end through ``codec.api`` and the CLI like any registered kind."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import codec
from codec.cli import main
from codec.core.tensors import to_tensor
from codec.models import model_class
from codec.models.context import ContextCoder, ContextModel, anchor_mask
from codec.models.hyperprior import GainHyperprior, HyperpriorCoder, Latents
from codec.weights.store import _load, load_codec
from tests.conftest import make_photo_like
from tests.support import make_test_weights, seeded_model
from tests.test_exact import perturb_hooks

QUALITIES = (1.0, 4.5, 9.0)
FIELDS = ("y_sym", "indexes", "means")


@pytest.fixture(scope="module")
def zero_init() -> ContextModel:
    model = seeded_model(ContextModel).eval()
    model.build_tables()
    return model


@pytest.fixture(scope="module")
def trained_like(zero_init) -> ContextModel:
    """Random non-zero corrections, so that the contexts change the coding tables."""
    model = copy.deepcopy(zero_init)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for net in model.context:
            for p in net.fuse[-1].parameters():
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model.prepare()  # the entropy tables do not depend on the context nets


@pytest.fixture(scope="module")
def latents(zero_init) -> torch.Tensor:
    images = torch.cat([to_tensor(make_photo_like(128, 192, seed=s), ContextModel.stride) for s in range(2)])
    return zero_init.analyze(images)


def _hw(y: torch.Tensor) -> tuple[int, int]:
    return tuple(y.shape[2:])


def _hyperprior_quantize(model: ContextModel, y: torch.Tensor, quality: float) -> Latents:
    """What the plain hyperprior codes with the same tables (its coder, not the context one)."""
    y_gain, z_gain = model.inference_gains(quality)
    with torch.inference_mode():
        return HyperpriorCoder.quantize(model.coder, y, model.side_analysis(y), y_gain, z_gain)


def test_registered_kind():
    assert model_class("gain-ctx") is ContextModel and issubclass(ContextModel, GainHyperprior)


def test_zero_init_forward_equals_the_hyperprior():
    model = seeded_model(ContextModel)
    base = GainHyperprior(model.arch)
    missing, unexpected = base.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("context.") for k in unexpected)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    q = torch.tensor([1.5, 8.0])
    outs = []
    for net in (model, base):
        net.train()
        torch.manual_seed(5)
        outs.append(net(x, q))
    got, want = outs
    assert torch.equal(got["x_hat"], want["x_hat"])
    for k in ("y", "z"):
        assert torch.equal(got["likelihoods"][k], want["likelihoods"][k])
    # ... and the corrections are trainable: the zero last layer gets a gradient.
    (-torch.log2(got["likelihoods"]["y"]).sum()).backward()
    assert all(float(net.fuse[-1].weight.grad.abs().sum()) > 0 for net in model.context)


@pytest.mark.parametrize("quality", QUALITIES)
def test_zero_init_codes_the_hyperprior_symbols(zero_init, latents, quality):
    sent = _hyperprior_quantize(zero_init, latents, quality)
    coded = zero_init.quantize(latents, quality)
    for field in FIELDS + ("z_sym",):
        assert torch.equal(getattr(coded, field), getattr(sent, field)), field


@pytest.mark.parametrize("quality", QUALITIES)
def test_roundtrip_gives_back_the_encoder_symbols(trained_like, latents, quality):
    model = trained_like
    coded = model.quantize(latents, quality)
    hyper_only = _hyperprior_quantize(model, latents, quality)
    assert not torch.equal(coded.indexes, hyper_only.indexes)  # the contexts matter here
    streams = model.encode_latent(latents, quality)
    assert [len(s) for s in streams] == [2, 2]
    y_hat = model.decode_latent(streams, _hw(latents), quality)
    assert y_hat.dtype == torch.float32 and y_hat.device.type == "cpu"
    assert torch.equal(y_hat, coded.y_hat().float())
    want = (latents.double() * coded.y_gain.view(1, -1, 1, 1) - coded.means).round()
    assert torch.equal(coded.y_sym.double(), want)


def test_side_hook(trained_like, latents):
    """``side`` replaces the hyper-analysis; the decoder rebuilds what was quantized against it."""
    model = trained_like
    with torch.inference_mode():
        z = model.side_analysis(latents)
    assert model.encode_latent(latents, 4.5, side=z) == model.encode_latent(latents, 4.5)
    moved = model.encode_latent(latents, 4.5, side=z + 3.0)
    assert torch.equal(
        model.decode_latent(moved, _hw(latents), 4.5), model.quantize(latents, 4.5, side=z + 3.0).y_hat().float()
    )


def _configured(name: str, model: ContextModel) -> tuple[ContextModel, list]:
    if name == "float64":
        return copy.deepcopy(model).double().prepare(), []
    if name == "perturbed":
        model = copy.deepcopy(model)
        return model, perturb_hooks(model, 1e-5, seed=7)
    return model, []


@pytest.mark.parametrize("quality", QUALITIES)
def test_decoding_is_identical_in_every_configuration(trained_like, latents, quality):
    model = trained_like
    sent = model.quantize(latents, quality)
    streams = model.encode_latent(latents, quality)
    threads = torch.get_num_threads()
    for name in ("threads1", "threads2", "float64", "perturbed", "batch1"):
        m, hooks = _configured(name, model)
        torch.set_num_threads(2 if name == "threads2" else 1)
        try:
            again = m.encode_latent(latents.to(m.log_y_gain.dtype), quality)
            if name == "batch1":
                got = [m.decode_symbols([s], _hw(latents), quality) for s in streams]
            else:
                got = [m.decode_symbols(streams, _hw(latents), quality)]
            y_hat = m.decode_latent(streams, _hw(latents), quality)
        finally:
            torch.set_num_threads(threads)
            for h in hooks:
                h.remove()
        if name != "float64":  # same y in: same bytes out
            assert again == streams, name
        for field in FIELDS:
            assert torch.equal(torch.cat([getattr(g, field) for g in got]), getattr(sent, field)), (name, field)
        assert torch.equal(y_hat, sent.y_hat().float()), name


def test_walk_runs_on_one_thread_and_restores_the_callers_count(trained_like, latents):
    """The walk's many small steps run on one thread (see ``ContextCoder.walk``); the caller's
    thread count comes back afterwards, also when a step fails (a damaged stream)."""
    coder, threads = trained_like.coder, torch.get_num_threads()
    y_gain, z_gain = trained_like.inference_gains(4.5)
    with torch.inference_mode():
        S, Mu = coder.hyper.integer_outputs(coder.z_symbols(trained_like.side_analysis(latents), z_gain), z_gain)
    seen = []

    def step(sl, part, i_k, m_k):
        seen.append(torch.get_num_threads())
        return torch.zeros_like(i_k)

    def failing(*_):
        raise ValueError("damaged")

    try:
        torch.set_num_threads(2)
        sym, _, _ = coder.walk(S, Mu, y_gain, step)
        assert sym.shape == latents.shape and seen == [1] * 10 and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="damaged"):
            coder.walk(S, Mu, y_gain, failing)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_exact_context_is_integer_valued_and_bounded(trained_like):
    for group in trained_like.coder.groups:
        nets = [group.spatial, group.fuse] + ([group.channel] if group.channel else [])
        for net in nets:
            for conv in net.convs:
                assert torch.equal(conv.weight, torch.round(conv.weight))
                assert torch.equal(conv.bias, torch.round(conv.bias))
    # the checkerboard mask is in the exact weights: no tap on an anchor's own position or its parity
    spatial = trained_like.coder.groups[0].spatial.convs[0].weight
    assert not spatial[:, :, anchor_mask(5, 5)].any() and spatial[:, :, ~anchor_mask(5, 5)].any()
    broken = copy.deepcopy(trained_like)
    with torch.no_grad():  # tiny weights, big bias: the bias alone needs more than 53 bits
        broken.context[1].fuse[0].weight.fill_(1e-12)
        broken.context[1].fuse[0].bias.fill_(1.0)
    with pytest.raises(ValueError, match="2\\^53"):
        ContextCoder(broken)


def test_damaged_streams_end_in_an_error_or_garbage(trained_like, latents):
    model = trained_like
    hw = _hw(latents)
    ((z, y),) = model.encode_latent(latents[:1], 4.5)
    damaged = [
        y[: len(y) // 2],
        b"",
        bytes(len(y)),
        b"\xff" * len(y),
        y[:10] + bytes(b ^ 0x5A for b in y[10:20]) + y[20:],
    ]
    for data in damaged:
        got = model.decode_symbols([[z, data]], hw, 4.5)
        assert got.y_sym.shape == latents[:1].shape and not torch.isnan(got.y_hat()).any()
        assert got.indexes.min() >= 0 and got.indexes.max() < 64
    with pytest.raises(ValueError, match="longer than any coding"):
        model.decode_latent([[z, b"\xff" * (8 * latents[0].numel() + 65)]], hw, 4.5)
    with pytest.raises(ValueError, match="1 streams in a tile"):
        model.decode_latent([[z]], hw, 4.5)


@pytest.mark.parametrize("quality", QUALITIES)
def test_exact_path_tracks_the_float_context_networks(trained_like, latents, quality):
    """The integer path must compute what training optimizes: float nets on the decoded ŷ agree."""
    model = trained_like
    coded = model.quantize(latents, quality)
    gy, gz = model.inference_gains(quality)
    medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    g = gy.float().view(1, -1, 1, 1)
    y_hat = coded.y_hat().float() * g  # the context networks work in quantization steps
    anchors = anchor_mask(*y_hat.shape[2:])
    with torch.no_grad():
        scales_h, means_h = model.h_s((coded.z_sym + medians) / gz.float().view(1, -1, 1, 1)).chunk(2, 1)
        scales, means = [], []
        for net, sl in zip(model.context, model.group_slices(), strict=True):
            g_k = g[:, sl]
            hyper = torch.cat([scales_h[:, sl] * g_k, means_h[:, sl] * g_k], 1)
            channel = net.channel(y_hat[:, : sl.start]) if net.channel is not None else None
            anchor_ctx = net.correction(hyper, torch.zeros_like(y_hat[:, sl]), channel)
            spatial = net.spatial(torch.where(anchors, y_hat[:, sl], 0.0))
            other_ctx = net.correction(hyper, spatial, channel)
            scales.append(scales_h[:, sl] + torch.where(anchors, anchor_ctx[0], other_ctx[0]) / g_k)
            means.append(means_h[:, sl] + torch.where(anchors, anchor_ctx[1], other_ctx[1]) / g_k)
    float_idx = model.scale_indexes(torch.cat(scales, 1) * g)
    agree = (float_idx == coded.indexes).float().mean().item()
    assert agree > 0.97, agree
    assert (torch.cat(means, 1).double() * gy.view(1, -1, 1, 1) - coded.means).abs().max() < 0.05


@pytest.mark.slow
def test_end_to_end_through_the_api(tmp_path, monkeypatch):
    """An exported context model is a weights entry like any other: encode, decode, tiles, info. Fresh
    from hyperprior weights it decodes to the hyperprior's pixels, from streams of its own order."""
    folder = tmp_path / "weights"
    folder.mkdir()
    make_test_weights(folder, model_id="test-msh")
    make_test_weights(folder, cls=ContextModel, model_id="test-ctx")
    monkeypatch.setenv("AECODEC_WEIGHTS", str(folder))
    _load.cache_clear()
    try:
        ctx, msh = load_codec("test-ctx"), load_codec("test-msh")
        assert isinstance(ctx.model, ContextModel) and type(msh.model) is GainHyperprior
        rgb = make_photo_like(96, 160, seed=4)
        for tile in (1024, 64):
            data = codec.encode(rgb, quality=6, codec=ctx, tile=tile)
            f = codec.format.bitstream.unpack(data)
            assert f.model_id == "test-ctx" and f.tile_count() == (1 if tile == 1024 else 6)
            assert all(len(s) == 2 for s in f.streams)
            plain = codec.encode(rgb, quality=6, codec=msh, tile=tile)
            assert [s[0] for s in f.streams] == [s[0] for s in codec.format.bitstream.unpack(plain).streams]  # same z
            got = np.asarray(codec.decode(data, codec=ctx))
            assert np.array_equal(got, np.asarray(codec.decode(plain, codec=msh)))
        path = tmp_path / "x.aec"
        path.write_bytes(data)
        shown = CliRunner().invoke(main, ["info", str(path)], catch_exceptions=False)
        assert shown.exit_code == 0 and "gain-ctx" in shown.output, shown.output
    finally:
        _load.cache_clear()


def test_encoder_effort_optimizes_what_the_context_model_codes(trained_like):
    """``--effort`` scores latents on the context model's own lattice (its corrected means), so the exact
    coder writes the symbols that were scored and the real R-D cost falls; the hyperprior's lattice would not."""
    from codec.coding import effort
    from codec.core import quality as Q

    model, quality = trained_like, 6.0
    x = to_tensor(make_photo_like(64, 96, seed=7), model.stride)
    y = model.analyze(x).float()
    y_opt, z_opt, _ = effort.optimize(model, y, effort.Target(x, torch.ones(1, 1, *x.shape[2:])), quality, 8)
    y_gain, _ = model.gains(quality)
    lat = model.quantize(y_opt, quality, z_opt)
    assert ((lat.y_hat().float() - y_opt) * y_gain).abs().max() < 0.1  # the scored symbols, a step being 1

    def real_cost(y: torch.Tensor, z: torch.Tensor | None) -> float:
        streams = model.encode_latent(y, quality, side=z)
        x_hat = model.synthesize(model.quantize(y, quality, z).y_hat().float())
        sse = ((x_hat - x) * 255).square().sum().item() / 3
        return 8 * sum(map(len, streams[0])) + Q.lmbda(quality) * sse

    assert real_cost(y_opt, z_opt) < real_cost(y, None)
