"""Decoding must not depend on the machine: the latents a file decodes to are identical under every
configuration of the float parts (threads, batch size, float64, tiny perturbations)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from compressai.layers import CheckerboardMaskedConv2d

from codec.core.exact import ACT_BITS, EXACT_LIMIT, ExactNetwork
from codec.core.tensors import to_tensor
from codec.models.hyperprior import ExactHyperSynthesis
from codec.weights.store import load_codec

QUALITIES = (1.0, 3.7, 8.0)


def perturb_hooks(model: torch.nn.Module, rel: float, seed: int) -> list:
    """Multiply every float layer's output by (1 + rel·N(0,1)), h_s included: if anything on the
    index path used float layers, some index would flip."""
    gen = torch.Generator().manual_seed(seed)

    def hook(_module, _inp, out):
        noise = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
        return out * (1 + rel * noise)

    return [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]


@contextlib.contextmanager
def configuration(name: str, codec):
    """Yield the model, prepared for coding, in one evaluation configuration of the same weights."""
    model = codec.model
    threads = torch.get_num_threads()
    hooks = []
    try:
        if name == "threads2":
            torch.set_num_threads(2)
        if name == "float64":
            model = copy.deepcopy(model).double().prepare()
        if name == "perturbed":
            model = copy.deepcopy(model)
            hooks = perturb_hooks(model, 1e-5, seed=7)
        yield model
    finally:
        torch.set_num_threads(threads)
        for h in hooks:
            h.remove()


CONFIGS = ["threads1", "threads2", "float64", "perturbed"]


@pytest.fixture(scope="module")
def images():
    from tests.conftest import make_photo_like

    return torch.cat([to_tensor(make_photo_like(128, 192, seed=s), 64) for s in range(4)])


@pytest.mark.slow
@pytest.mark.parametrize("quality", QUALITIES)
def test_files_decode_to_identical_latents_in_every_configuration(images, quality):
    codec = load_codec()
    for enc_name in CONFIGS + ["batch4"]:
        with configuration("threads1" if enc_name == "batch4" else enc_name, codec) as model:
            y = (
                model.analyze(images)
                if enc_name == "batch4"
                else torch.cat([model.analyze(images[i : i + 1]) for i in range(4)])
            )
            sent = model.quantize(y, quality)
            streams = model.coder.code(sent)
        shape = tuple(y.shape[2:])
        for dec_name in CONFIGS + ["batch4"]:
            with configuration("threads1" if dec_name == "batch4" else dec_name, codec) as model:
                if dec_name == "batch4":
                    got = [model.decode_symbols(streams, shape, quality)]
                else:
                    got = [model.decode_symbols([s], shape, quality) for s in streams]
            y_sym = torch.cat([g.y_sym for g in got])
            idx = torch.cat([g.indexes for g in got])
            assert torch.equal(y_sym, sent.y_sym), (enc_name, dec_name)
            assert torch.equal(idx, sent.indexes), (enc_name, dec_name)
            assert torch.equal(torch.cat([g.means for g in got]), sent.means), (enc_name, dec_name)


def test_exact_path_is_integer_valued_and_bounded():
    codec = load_codec()
    hyper = codec.model.coder.hyper
    for layer in hyper.net.convs:
        assert torch.equal(layer.weight, torch.round(layer.weight))
        assert torch.equal(layer.bias, torch.round(layer.bias))
        assert layer.worst_sum(2.0**24) < EXACT_LIMIT
    z_sym = torch.randint(-40, 40, (2, codec.model.arch.N, 3, 5), dtype=torch.int32)
    gy, gz = codec.model.inference_gains(2.5)
    S, Mu = hyper.integer_outputs(z_sym, gz)
    assert torch.equal(S, torch.round(S)) and torch.equal(Mu, torch.round(Mu))


def test_hostile_symbols_do_not_break_the_bound():
    """Garbage streams decode to huge symbols: the path clamps them and stays exact (no inf/NaN)."""
    codec = load_codec()
    z_sym = torch.full((1, codec.model.arch.N, 2, 2), 2**30, dtype=torch.int32)
    gy, gz = codec.model.inference_gains(8.0)
    idx, means = codec.model.coder.hyper(z_sym, gz, gy)
    assert torch.isfinite(means).all() and idx.min() >= 0 and idx.max() < 64


def test_exact_path_tracks_the_float_network():
    """Index agreement with the float hyper-synthesis: the integer path approximates, not replaces."""
    codec = load_codec()
    model = codec.model
    z_sym = torch.randint(-3, 4, (1, model.arch.N, 4, 6), dtype=torch.int32)
    for q in QUALITIES:
        gy, gz = model.inference_gains(q)
        idx, means = model.coder.hyper(z_sym, gz, gy)
        medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
        with torch.no_grad():
            scales, fmeans = model.hyper_params(
                z_sym + medians, gz.float().view(1, -1, 1, 1), gy.float().view(1, -1, 1, 1)
            )
        agree = (model.scale_indexes(scales) == idx).float().mean().item()
        assert agree > 0.97, (q, agree)
        assert (fmeans.double() - means).abs().max() < 0.05


@pytest.mark.parametrize("act", [torch.nn.Sigmoid(), torch.nn.LeakyReLU(0.3)], ids=["sigmoid", "slope-0.3"])
def test_rejects_unsupported_hyper_synthesis(act):
    h_s = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), act, torch.nn.Conv2d(4, 8, 3, padding=1))
    with pytest.raises(ValueError):
        ExactHyperSynthesis(h_s, torch.zeros(4), torch.ones(64))


def test_exact_network_is_generic_and_order_independent():
    """Any stack of convolutions and (leaky) ReLUs: integer outputs close to the float network, and
    the same integers whatever the batch composition or thread count."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(6, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(16, 12, 5, stride=2, padding=2, output_padding=1),
        torch.nn.LeakyReLU(0.25),
        torch.nn.Conv2d(12, 12, 1),
        torch.nn.Conv2d(12, 4, 3, stride=2, padding=1),
    )
    exact = ExactNetwork(net)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    out = exact(ExactNetwork.fixed_point(x))
    assert torch.equal(out, torch.round(out))
    with torch.no_grad():
        ref = net.double()(x)
    assert (out * 2.0**-exact.out_frac - ref).abs().max() < 1e-2 * ref.abs().max()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        single = torch.cat([exact(ExactNetwork.fixed_point(x[i : i + 1])) for i in range(3)])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, out)


def test_outputs_at_positions_equal_the_whole_convolution():
    """``at`` (im2col of the non-zero taps at some positions) and ``columns`` (1×1 layers as matrix
    products) give exactly the integers of conv2d over the whole image, there."""
    torch.manual_seed(2)
    masked = CheckerboardMaskedConv2d(6, 5, 5, padding=2)
    x = ExactNetwork.fixed_point(torch.randn(2, 6, 7, 9, dtype=torch.float64))
    pos = torch.tensor([1, 3, 10, 30, 62])  # corners, edges and the middle
    nets = [
        torch.nn.Sequential(masked),
        torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.LeakyReLU(0.5), torch.nn.Conv2d(8, 3, 1)),
    ]
    for net in nets:
        exact = ExactNetwork(net)
        assert torch.equal(exact.at(x, pos, ACT_BITS), exact(x, ACT_BITS).flatten(2)[:, :, pos])
    assert len(ExactNetwork(nets[0]).convs[0].taps) == 12  # only the mask's taps are gathered
    pointwise = ExactNetwork(torch.nn.Sequential(torch.nn.Conv2d(6, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)))
    cols = x.flatten(2)
    assert torch.equal(pointwise.columns(cols), pointwise(cols[..., None])[..., 0])
    with pytest.raises(ValueError, match="1×1"):
        ExactNetwork(nets[1]).columns(cols)
    with pytest.raises(ValueError, match="1×1"):
        ExactNetwork(torch.nn.Sequential(masked, masked)).at(x, pos)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("quality", QUALITIES)
def test_cuda_and_cpu_agree(images, quality):
    cpu = load_codec(device="cpu")
    gpu = load_codec(device="cuda")
    for enc, dec in ((cpu, gpu), (gpu, cpu)):
        y = enc.model.analyze(images.to(enc.device))
        sent = enc.model.quantize(y, quality)
        streams = enc.model.coder.code(sent)
        got = dec.model.decode_symbols(streams, tuple(y.shape[2:]), quality)
        assert torch.equal(got.y_sym, sent.y_sym) and torch.equal(got.indexes, sent.indexes)
