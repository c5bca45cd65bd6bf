"""The fitted kind's compiled decoder (``codec.models.overfit.fast``) against the torch reference.

Symbols (the latent grids) must be identical on every file: the fixtures (files earlier versions wrote,
``scripts/make_fixtures.py --overfit``), fitted files, and streams coded from random decoders and random grids
(escapes, huge parameters, thin and one-pixel grids), which reach what a fit rarely does. Pixels within one
level of the reference, identical whatever the thread count; damage one clear error; no torch needed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import codec
from codec.core.exact import ExactNetwork
from codec.core.fixed import pointwise_layers
from codec.format import bitstream as bs
from codec.models.overfit import coding, fast
from codec.models.overfit.arch import param_layout
from codec.models.overfit.network import Arch, FittedDecoder, grid_sizes
from tests.support import OVERFIT_ID, fitted_grid_digest

pytestmark = pytest.mark.skipif(not fast.available(), reason="the compiled decoder was not built")

ARCH = Arch()
FIXTURES = Path(__file__).parent / "fixtures" / "overfit"
DIGESTS = json.loads((FIXTURES / "digests.json").read_text())


def _tiles(data: bytes) -> list[tuple[list[bytes], int, int]]:
    """(streams, height, width) of each tile of a fitted file."""
    from codec.coding import tiling

    f = bs.unpack(data)
    tiles = tiling.grid(f.height, f.width, f.tile or max(f.height, f.width), 1)
    return [(st, t.y1 - t.y0, t.x1 - t.x0) for t, st in zip(tiles, f.streams, strict=True)]


def _same_as_reference(streams: list[bytes], h: int, w: int, arch: Arch = ARCH) -> None:
    """Parameters and grids identical to the reference's, pixels within one level."""
    ref = coding.decode_params(streams[0], arch)
    params = fast.decode_params(streams[0], arch)
    for name, p in ref.tensors():
        assert np.array_equal(p.detach().numpy(), params[name]), name
    sizes = grid_sizes(h, w, arch.grids)
    want = coding.decode_grids(ref, ref.exact_arm(), streams[1], sizes)
    got = fast.split(fast.decode_grids(params, arch, streams[1], sizes), sizes)
    for a, b in zip(want, got, strict=True):
        assert np.array_equal(a.numpy(), b)
    x_ref = coding.decode_image(streams, h, w, arch)[0].nan_to_num(0, 1, 0).clamp(0, 1).mul(255).round().numpy()
    x = fast.to_uint8(fast.decode_tile(streams, h, w, arch)).transpose(2, 0, 1)
    assert np.abs(x_ref - x).max() <= 1


def _random_streams(seed: int, h: int, w: int, spread: float, weights: float, arch: Arch = ARCH) -> list[bytes]:
    """The two streams of a random decoder (parameters scaled by ``weights``) and random Laplace grids of
    scale ``spread`` (±1000 at most, as a fit keeps them), coded by the reference encoder."""
    rng = np.random.default_rng(seed)
    dec = FittedDecoder(arch, seed=seed)
    with torch.no_grad():
        for _, p in dec.tensors():
            p.add_(torch.from_numpy(rng.normal(0, weights, tuple(p.shape))).float())
    exps = [int(e) for e in rng.integers(0, 17, len(dec.tensors()))]
    q = coding.dequantized(dec, exps)
    sizes = grid_sizes(h, w, arch.grids)
    grids = [torch.from_numpy(np.round(rng.laplace(0, spread, s)).clip(-1000, 1000)) for s in sizes]
    return [coding.encode_params(dec, exps), coding.encode_grids(q, q.exact_arm(), grids)]


# -- identical symbols ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_fixtures_decode_as_recorded(name):
    data = (FIXTURES / name).read_bytes()
    for streams, h, w in _tiles(data):
        _same_as_reference(streams, h, w)
    assert fitted_grid_digest(data) == DIGESTS[name]["grids_sha256"]
    image = codec.decode(data)
    assert list(image.size) == DIGESTS[name]["size"]
    assert hashlib.sha256(image.tobytes()).hexdigest() == DIGESTS[name]["pixels_sha256"]  # the compiled pixels


@pytest.mark.parametrize(
    "seed, h, w, spread, weights",
    [
        (0, 17, 23, 1.0, 0.1),
        (1, 31, 9, 5.0, 1.0),
        (2, 1, 64, 1.0, 0.5),  # thin: one row
        (3, 64, 1, 2.0, 0.5),  # one column
        (4, 1, 1, 1.0, 0.1),
        (5, 12, 40, 300.0, 1.0),  # most values escape their tables (the bypass code)
        (6, 20, 20, 0.5, 10.0),  # large parameters: wide tables, parameter escapes
    ],
)
def test_random_streams_decode_as_the_reference(seed, h, w, spread, weights):
    _same_as_reference(_random_streams(seed, h, w, spread, weights), h, w)


@pytest.mark.parametrize(
    "arch",
    [
        Arch(grids=1, context=5, arm_hidden=8, syn_hidden=4),
        pytest.param(Arch(grids=8, context=24, arm_hidden=64), marks=pytest.mark.slow),  # the reference takes long
    ],
)
def test_other_archs_decode_as_the_reference(arch):
    """The sizes the manifest's ``arch`` may give (``Arch.from_dict``'s ranges), at their ends."""
    for h, w in ((13, 29), (1, 5), (40, 3)):
        _same_as_reference(_random_streams(10 + h, h, w, 3.0, 0.5, arch), h, w, arch)


@pytest.mark.slow  # two fits
def test_fitted_files_decode_as_the_reference(photo_like):
    for (h, w), tile in (((20, 28), 1024), ((14, 40), 16)):
        data = codec.encode(photo_like(h, w, seed=h), 5, model=OVERFIT_ID, iterations=30, tile=tile)
        for streams, th, tw in _tiles(data):
            _same_as_reference(streams, th, tw)


def test_integer_layers_are_the_exact_network_s():
    """``fixed.pointwise_layers`` quantizes as ``ExactNetwork`` does, and refuses what it refuses."""
    for seed, scale in ((0, 1.0), (1, 1e-4), (2, 300.0)):
        dec = FittedDecoder(ARCH, seed=seed)
        with torch.no_grad():
            for _, p in dec.tensors():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * scale)
        tensors = {name: p.detach().numpy() for name, p in dec.tensors()}
        pairs = [(tensors[f"arm_w{i}"], tensors[f"arm_b{i}"]) for i in (1, 2, 3)]
        try:
            exact = ExactNetwork(dec.arm_sequential())
        except ValueError as e:
            with pytest.raises(ValueError, match="can exceed 2"):
                pointwise_layers(pairs)
            assert "can exceed 2^53" in str(e)
            continue
        for ours, theirs in zip(pointwise_layers(pairs), exact.convs, strict=True):
            assert ours.frac == theirs.frac
            assert np.array_equal(ours.weight, theirs.weight.reshape(ours.weight.shape).numpy())
            assert np.array_equal(ours.bias, theirs.bias.numpy())


def test_parameter_layout_is_the_decoder_s():
    for arch in (ARCH, Arch(grids=1, context=5, arm_hidden=8, syn_hidden=4)):
        assert [(n, tuple(p.shape)) for n, p in FittedDecoder(arch).tensors()] == param_layout(arch)


# -- threads, torch, damage ------------------------------------------------------------------------------------
def test_pixels_ignore_threads():
    """One tile decoded with 1, 2 and 4 torch threads, and four at once on Python threads: identical."""
    streams = _random_streams(7, 33, 45, 2.0, 0.5)
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            outs.append(fast.decode_tile(streams, 33, 45, ARCH))
    finally:
        torch.set_num_threads(before)
    with ThreadPoolExecutor(4) as pool:
        outs += list(pool.map(lambda _: fast.decode_tile(streams, 33, 45, ARCH), range(4)))
    assert all(np.array_equal(outs[0], x) for x in outs[1:])


def test_decodes_without_torch():
    """The fixture decodes to its pixels in a process that never imports torch."""
    name = "fitted-48x40.aec"
    script = f"""
import sys, hashlib
from codec.format import bitstream as bs
from codec.models.overfit import fast
from codec.models.overfit.arch import Arch
f = bs.unpack(open({str(FIXTURES / name)!r}, "rb").read())
x = fast.to_uint8(fast.decode_tile(f.streams[0], f.height, f.width, Arch()))
assert "torch" not in sys.modules, "torch was imported"
print(hashlib.sha256(x.tobytes()).hexdigest())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == DIGESTS[name]["pixels_sha256"]


def test_an_escape_longer_than_any_value_is_refused():
    """A first bypass nibble over 8 (no int32 needs more nibbles) is damage: ValueError, not a shift past 32
    bits. A stream whose state reads 0xF…F gives the escape symbol of every table and then such a count."""
    params = _random_streams(8, 4, 4, 1.0, 0.1)[0]
    with pytest.raises(ValueError, match="escape longer than any value"):
        fast.decode_grids(fast.decode_params(params, ARCH), ARCH, b"\xff" * 16, grid_sizes(4, 4, 7))


def test_random_bytes_decode_or_fail_cleanly():
    """Garbage in either stream: an image or a ValueError, never a crash (the process would die)."""
    rng = np.random.default_rng(9)
    good = _random_streams(9, 8, 8, 1.0, 0.1)
    for i in range(60):
        streams = list(good)
        streams[i % 2] = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        try:
            x = fast.decode_tile(streams, 8, 8, ARCH)
        except ValueError:
            continue
        assert x.shape == (3, 8, 8)
