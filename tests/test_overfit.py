"""The overfit kind: per-image fitted decoder, exact coding tables, round trips through every entry point."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import codec
from codec.cli import main
from codec.core.errors import AecError
from codec.format import bitstream as bs
from codec.models.overfit import coding, laplace
from codec.models.overfit import fit as fit_module
from codec.models.overfit.coding import waves
from codec.models.overfit.fit import PRESETS, FitPhase, FitPreset, fit, kumaraswamy, phase_steps, planned_iterations
from codec.models.overfit.model import OverfitModel
from codec.models.overfit.network import Arch, FittedDecoder, causal_taps, grid_sizes, macs_per_pixel, wave_slope
from tests.conftest import one_error_line
from tests.support import OVERFIT_ID

ITERATIONS = 150  # latents leave zero and a hard-rounded iterate is kept; seconds on a tiny image


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> tuple[np.ndarray, bytes]:
    """A 40×48 photo-like image and its overfit file at q6 (fitted once for the module)."""
    from tests.conftest import make_photo_like

    rgb = make_photo_like(40, 48, seed=3)
    return rgb, codec.encode(rgb, 6, model=OVERFIT_ID, iterations=ITERATIONS)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / float(np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _streams(data: bytes) -> list[bytes]:
    (streams,) = bs.unpack(data).streams
    return streams


# -- the tables ------------------------------------------------------------------------------------
def test_tables_are_valid_cdfs():
    t = laplace.tables()
    assert len(t.cdf) == laplace.SCALE_COUNT * laplace.FRACTIONS
    for cdf, length in zip(t.cdf, t.cdf_len, strict=True):
        assert cdf[0] == 0 and cdf[-1] == 1 << laplace.PRECISION and len(cdf) == length
        assert all(b > a for a, b in zip(cdf, cdf[1:], strict=False))


def test_continuous_rate_matches_the_tables():
    """The training rate (``bits``) is what the coder's tables charge, within their quantization."""
    t, lengths = laplace.tables(), laplace.code_lengths()
    for k in (8, 30, 50):
        for f in range(laplace.FRACTIONS):
            i = k * laplace.FRACTIONS + f
            v = torch.arange(-3, 4, dtype=torch.float64)
            est = laplace.bits(
                v, torch.full_like(v, f / laplace.FRACTIONS), torch.full_like(v, math.log(laplace.SCALES[k]))
            )
            table = lengths[i][(v - t.offset[i]).long()]
            assert torch.allclose(est, table, atol=0.3), (k, f, est, table)


def test_table_index_is_integer_arithmetic():
    one = 1 << laplace.OUT_BITS
    mu = torch.tensor([0.0, 1.3 * one, -0.6 * one, 2.49 * one]).floor()
    log_b = torch.full_like(mu, float(laplace.LOG_B0_FIXED))
    index, m = laplace.table_index(mu, log_b)
    assert m.tolist() == [0, 1, -1, 2]  # centre rounded to quarters: 0, 1.25, -0.5, 2.5
    assert (index % laplace.FRACTIONS).tolist() == [0, 1, 2, 2]
    assert (index // laplace.FRACTIONS).tolist() == [0, 0, 0, 0]


# -- the network ---------------------------------------------------------------------------------
def test_shipped_manifest_entry_is_the_code_s():
    shipped = json.loads((Path(codec.__file__).resolve().parent.parent / "weights" / "manifest.json").read_text())
    assert shipped["models"][OVERFIT_ID] == OverfitModel.manifest_entry()


def test_waves_order_context_before_use():
    taps = causal_taps(Arch().context)
    slope = wave_slope(taps)
    h, w = 5, 9
    order, sizes = waves(h, w, slope)
    assert sum(sizes) == h * w and sorted(order.tolist()) == list(range(h * w))
    wave_of = {int(p): slope * (int(p) // w) + int(p) % w for p in order}
    for p in range(h * w):
        i, j = divmod(p, w)
        for dy, dx in taps:
            if 0 <= i + dy < h and 0 <= j + dx < w:
                assert wave_of[(i + dy) * w + j + dx] < wave_of[p]
    assert len(sizes) == slope * (h - 1) + w  # about slope·H + W steps, not H·W


def test_mac_count_matches_the_layers():
    """``macs_per_pixel`` against a count of every multiply in a real decode pass (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    arch = Arch()
    h, w = 96, 128
    dec = FittedDecoder(arch)
    grids = [torch.zeros(gh, gw) for gh, gw in grid_sizes(h, w, arch.grids)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        dec.arm(dec.contexts(grids))
        dec.synthesis(dec.upsample(grids))
    counted = counter.get_total_flops() / 2 / (h * w)
    assert counted == pytest.approx(macs_per_pixel(arch, h, w), rel=0.02)
    assert macs_per_pixel(arch, 512, 768) <= 3000


def test_exact_arm_ignores_threads():
    """The ARM's coding tables come from integers: the same with 1 or 2 threads."""
    dec = FittedDecoder(Arch(), seed=5)
    grid = torch.randint(-6, 7, (23, 31)).float()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = coding.grid_symbols(dec, dec.exact_arm(), grid)
        torch.set_num_threads(2)
        two = coding.grid_symbols(dec, dec.exact_arm(), grid)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


# -- the encoder -----------------------------------------------------------------------------------
def _photo(h: int, w: int, seed: int) -> torch.Tensor:
    from tests.conftest import make_photo_like

    return torch.from_numpy(make_photo_like(h, w, seed=seed)).permute(2, 0, 1)[None].float() / 255


def _preset(iterations: int) -> FitPreset:
    return dataclasses.replace(PRESETS[0], iterations=iterations)


@pytest.mark.slow
def test_fit_lowers_the_loss_and_rate_follows_quality():
    x = _photo(32, 32, seed=1)
    short = fit(x, 10.0, Arch(), _preset(12))
    low = fit(x, 2.0, Arch(), _preset(ITERATIONS))
    high = fit(x, 10.0, Arch(), _preset(ITERATIONS))
    assert high.loss < 0.8 * short.loss  # the coded loss, parameter bits included
    assert high.psnr > low.psnr
    assert high.bpp_latents > low.bpp_latents
    assert all(torch.equal(g, g.round()) for g in low.grids)


def test_a_preset_is_data():
    """A preset built here runs as written: its phases' iterations, its candidates, frozen latents last."""
    preset = FitPreset(
        iterations=40,
        phases=(
            FitPhase(0.25, candidates=2, quantizer="noise", noise=(0.3, 0.3)),
            FitPhase(0.5, cosine=True, temperature=(0.3, 0.1), noise=(0.2, 0.1)),
            FitPhase(0.25, lr=1e-3, quantizer="frozen", keep_best=True, score_every=2),
        ),
        latent_gain=8.0,
    )
    assert phase_steps(preset) == [5, 20, 10]
    ticks: list[int] = []
    result = fit(_photo(24, 24, seed=2), 6.0, Arch(), preset, ticks.append)
    assert len(ticks) == result.iterations == 2 * 5 + 20 + 10
    assert all(torch.equal(g, g.round()) for g in result.grids)


@pytest.mark.parametrize("a", [1.0, 2.0, 5.0])
def test_kumaraswamy_noise_is_bounded_with_the_distribution_s_mean(a):
    """Within (-1/2, 1/2), mean b·B(1 + 1/a, b) - 1/2; a = 1 is uniform, a larger a is narrower."""
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = kumaraswamy(u, a)
    b = (2**a * (a - 1) + 1) / a
    mean = b * math.exp(math.lgamma(1 + 1 / a) + math.lgamma(b) - math.lgamma(1 + 1 / a + b)) - 0.5
    assert -0.5 <= float(n.min()) and float(n.max()) < 0.5
    assert abs(float(n.mean()) - mean) < 0.003
    assert float(kumaraswamy(torch.tensor([0.0, 1.0 - 1e-12], dtype=torch.float64), a)[0]) == -0.5
    if a == 1.0:
        assert abs(float(n.std()) - 12**-0.5) < 0.002
    else:
        assert float(n.std()) < float(kumaraswamy(u, a / 2).std())


def test_the_noise_kind_reaches_the_fit(monkeypatch):
    """A phase's ``noise_kind`` picks the noise its quantizer draws, at the phase's scheduled shape."""
    shapes: list[float] = []
    real = fit_module.kumaraswamy
    monkeypatch.setattr(fit_module, "kumaraswamy", lambda u, a: shapes.append(a) or real(u, a))
    phase = FitPhase(1.0, noise=(2.0, 4.0), noise_kind="kumaraswamy")
    fit(_photo(16, 16, seed=5), 6.0, Arch(), FitPreset(iterations=3, phases=(phase,)))
    assert sorted(set(shapes)) == [2.0, 3.0, 4.0]  # per grid, at t = 0, 1/2, 1
    with pytest.raises(ValueError, match="noise kind"):
        fit(_photo(16, 16, seed=5), 6.0, Arch(), FitPreset(3, (dataclasses.replace(phase, noise_kind="laplace"),)))


@pytest.mark.slow
def test_rate_on_a_second_thread_changes_nothing():
    """``fit.Stepper``: the rate computed beside the image (two threads) or after it gives the same fit."""
    x = _photo(24, 32, seed=4)
    one, two = (fit(x, 4.0, Arch(), _preset(30), parallel=p) for p in (False, True))
    assert two.parallel and not one.parallel
    assert all(torch.equal(a, b) for a, b in zip(one.grids, two.grids, strict=True))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(one.decoder.tensors(), two.decoder.tensors(), strict=True))


@pytest.mark.slow
def test_one_cached_model_codes_each_call_with_its_own_settings(photo_like):
    """No call's settings stay on the cached model: a call after another equals the same call made first,
    and the bytes are the same whatever the thread count."""
    rgb = photo_like(24, 24, seed=6)
    first = codec.encode(rgb, 6, model=OVERFIT_ID, iterations=20)
    fits: list = []
    other = codec.encode(rgb, 6, model=OVERFIT_ID, iterations=30, on_fit=fits.append)
    again = codec.encode(rgb, 6, model=OVERFIT_ID, iterations=20)
    assert first == again != other
    assert [f.iterations for f in fits] == [planned_iterations(_preset(30))]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert codec.encode(rgb, 6, model=OVERFIT_ID, iterations=20) == first
    finally:
        torch.set_num_threads(before)


# -- round trips -----------------------------------------------------------------------------------
def test_api_round_trip(coded):
    rgb, data = coded
    f = bs.unpack(data)
    assert f.model_id == OVERFIT_ID and len(f.streams[0]) == 2
    out = np.asarray(codec.decode(data))
    assert out.shape == rgb.shape
    assert _psnr(out, rgb) > 20


def test_decoded_symbols_and_pixels_ignore_threads_and_float_width(coded):
    """Symbols: identical with 1 and 2 threads and with the decoder's floats in float64; pixels: identical
    with 1 and 2 threads, within a level in float64."""
    _, data = coded
    arch = OverfitModel(Arch()).arch
    streams = _streams(data)
    before = torch.get_num_threads()
    runs = []
    try:
        for n, dtype in ((1, torch.float32), (2, torch.float32), (2, torch.float64)):
            torch.set_num_threads(n)
            dec = coding.decode_params(streams[0], arch).to(dtype)
            grids = coding.decode_grids(dec, dec.exact_arm(), streams[1], grid_sizes(40, 48, arch.grids))
            with torch.no_grad():
                x = dec.image([g.to(dtype) for g in grids]).clamp(0, 1).mul(255).round()
            runs.append((grids, x.float()))
    finally:
        torch.set_num_threads(before)
    (g1, p1), (g2, p2), (g3, p3) = runs
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(g1, g2, g3, strict=True))
    assert torch.equal(p1, p2)
    assert float((p1 - p3).abs().max()) <= 1


def test_cli_round_trip_and_verbose(tmp_path, photo_like):
    src = tmp_path / "in.png"
    Image.fromarray(photo_like(24, 40, seed=2)).save(src)
    enc = run("encode", src, "-o", tmp_path / "x.aec", "--model", OVERFIT_ID, "-q", 4, "--iterations", ITERATIONS, "-v")
    assert enc.exit_code == 0, enc.output
    assert f"overfit: {planned_iterations(_preset(ITERATIONS))} iterations" in enc.stderr
    assert all(part in enc.stderr for part in ("fit ", "parameter steps ", "coding "))  # -v: where the time went
    dec = run("decode", tmp_path / "x.aec", "-o", tmp_path / "out.png")
    assert dec.exit_code == 0, dec.output
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (40, 24)
    info = run("info", tmp_path / "x.aec", "--json")
    assert json.loads(info.stdout)[0]["model"] == OVERFIT_ID


def test_cli_refusals(png):
    for args in (
        ["--model", OVERFIT_ID, "--target-bpp", "0.5"],
        ["--model", OVERFIT_ID, "--max-bytes", "900"],
        ["--iterations", "10"],  # the default kind has no fitting iterations
    ):
        line = one_error_line(run("encode", png, "-o", png.with_suffix(".x.aec"), *args))
    from codec.core.quality import MAX_EFFORT

    assert line == (  # in the user's words: which model takes it, what this one takes instead
        "aecodec: --iterations applies only to --model overfit (a fit per image); "
        f"this model takes --effort 0..{MAX_EFFORT}"
    )


def test_the_fit_progress_bar_is_labelled_fit(monkeypatch, photo_like):
    """The bar over a fit's iterations says ``fit`` (an ``effort`` bar would suggest the latent search)."""
    from codec.core import progress

    labels = []
    real = progress.bar

    def recording(total, desc, unit, hidden=False):
        labels.append(desc)
        return real(total, desc, unit, hidden)

    monkeypatch.setattr(progress, "bar", recording)
    codec.encode(photo_like(8, 8, seed=2), 4, model=OVERFIT_ID, iterations=3)
    assert "fit" in labels and "effort" not in labels


def test_pillow_plugin_round_trip(tmp_path, photo_like):
    path = tmp_path / "p.aec"
    Image.fromarray(photo_like(20, 28, seed=4)).save(path, model=OVERFIT_ID, aec_quality=5, iterations=ITERATIONS)
    with Image.open(path) as im:
        im.load()
        assert im.size == (28, 20) and im.mode == "RGB"
    assert bs.unpack(path.read_bytes()).model_id == OVERFIT_ID


@pytest.mark.slow
def test_tiled_and_one_pixel_images(photo_like):
    rgb = photo_like(40, 70, seed=6)
    data = codec.encode(rgb, 6, model=OVERFIT_ID, iterations=ITERATIONS, tile=32)
    f = bs.unpack(data)
    assert f.tile == 32 and len(f.streams) == 6
    assert np.asarray(codec.decode(data)).shape == rgb.shape
    one = np.full((1, 1, 3), (7, 200, 90), np.uint8)  # stored exactly (flat), never crashes the coder
    assert np.array_equal(np.asarray(codec.decode(codec.encode(one, 3, model=OVERFIT_ID, iterations=5))), one)


# -- hostile files -----------------------------------------------------------------------------------
def _with_streams(data: bytes, streams: list[bytes]) -> bytes:
    f = bs.unpack(data)
    f.streams = [streams]
    return bs.pack(f)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: [s[0]],  # a stream missing
        lambda s: [s[0], s[1], b""],  # one too many
        lambda s: [s[0][:5], s[1]],  # parameter header cut
        lambda s: [bytes([99]) + s[0][1:], s[1]],  # step exponent out of range
        lambda s: [s[0][:1] + bytes([250]) + s[0][2:], s[1]],  # scale step out of range
        lambda s: [s[0], b"\xff" * 4000],  # a latent stream longer than any coding of its symbols
        lambda s: [s[0][:40] + b"\xff" * (len(s[0]) - 40), s[1]],  # parameters that explode the exact ARM
    ],
)
def test_damaged_streams_are_one_clear_error(coded, damage, tmp_path):
    _, data = coded
    bad = _with_streams(data, damage(_streams(data)))
    path = tmp_path / "bad.aec"
    path.write_bytes(bad)
    try:
        out = np.asarray(codec.decode(bad))  # damage the format cannot detect still decodes to an image
        assert out.shape == (40, 48, 3)
    except (AecError, bs.FormatError):
        one_error_line(run("decode", path, "-o", tmp_path / "bad.png"))


def test_structural_damage_is_refused(coded):
    _, data = coded
    for streams in ([_streams(data)[0]], [*_streams(data), b""], [_streams(data)[0][:5], _streams(data)[1]]):
        with pytest.raises(bs.FormatError):
            codec.decode(_with_streams(data, streams))


def test_readme_states_the_code_s_figures():
    """The README's decoder cost and effort presets are the code's."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    macs = round(macs_per_pixel(Arch(), 512, 768), -2)
    assert f"about {macs:,.0f} multiply-accumulates per pixel" in readme
    assert " / ".join(f"{p.iterations:,}" for p in PRESETS) in readme
