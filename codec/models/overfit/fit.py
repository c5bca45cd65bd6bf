"""The per-image encoder: fit latent grids and a decoder to one image, then quantize and code both.

Loss: MSE + bits per pixel / (λ·255²) (``codec.quality.lmbda``: ``-q`` means the same λ as in every kind; the
scale is Cool-chic's, so that the gradient clip means the same at every quality).

A fit runs a ``FitPreset``: a warm-up that trains several seeds and keeps the best, then phases, each a
share of the iterations with its own learning rate schedule, quantizer and what it trains::

    warm-up   candidates 4 ─► best 2 ─► best 1      soft rounding + noise, constant learning rate
    main      softround(softround(y, t) + n, t) for rate and image alike, t 0.3 → 0.1, noise 0.25 → 0.1,
              cosine learning rate, gradient norm clipped
    final     latents frozen at round(y); networks only, low learning rate; the best iterate is kept

Then each parameter tensor gets the quantization step (2^-e) that minimizes rate + λ·distortion
with the parameters' own bits counted, and the grids are coded with the exact ARM (``coding``).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ...core import quality as Q
from . import coding, laplace
from .network import Arch, FittedDecoder, grid_sizes

log = logging.getLogger("codec.overfit")

#: Latent values are kept within ± this (the exact ARM's input clamp is ±1024).
LATENT_BOUND = 1000.0
#: Parameter step exponents tried per tensor (steps 1 … 1/4096). Steps coarser than 1/32 halved the parameter
#: bits at q1 (val wikiphoto_004, 192²: 0.111 → 0.053 bpp, loss −22 %; at q4 −0.6 %, at q8 −0.1 %).
STEP_EXPS = tuple(range(0, 13))


@dataclass(frozen=True)
class FitPhase:
    """One stretch of a fit: ``share`` of the iterations trained one way.

    ``quantizer``: "softround" (C3's softround(softround(y, t) + noise, t), the same values for the rate and
    the image), "noise" (y + uniform noise) or "frozen" (the latents rounded and fixed: networks only).
    ``temperature`` and ``noise`` go linearly from their first value to their second over the phase.
    ``noise_kind`` says what ``noise`` means: "gaussian", its standard deviation; "kumaraswamy", the shape
    ``a`` of a Kumaraswamy noise on (-1/2, 1/2) with its mode at 0 (C3, Cool-chic 3+: 1 is uniform, larger is
    narrower; bounded, so never a whole step). ``lr`` is the peak learning rate; ``cosine`` decays it to
    ``lr · floor`` by the phase's end. ``candidates`` > 1: the phase trains that many fits (new seeds for the
    first phase, else the best of the previous phase's) and keeps the best one. ``keep_best``: score the
    hard-rounded loss every ``score_every`` iterations and end on the best iterate.
    """

    share: float
    lr: float = 0.01
    cosine: bool = False
    floor: float = 1e-3
    quantizer: str = "softround"
    temperature: tuple[float, float] = (0.3, 0.3)
    noise: tuple[float, float] = (0.25, 0.25)
    noise_kind: str = "gaussian"
    candidates: int = 1
    keep_best: bool = False
    score_every: int = 25


@dataclass(frozen=True)
class FitPreset:
    """A fit: its iterations (``--iterations`` overrides them), its phases and what holds across them."""

    iterations: int
    phases: tuple[FitPhase, ...]
    #: Latents are stored divided by this: Adam's step on a latent is ``lr · latent_gain`` (C3/Cool-chic).
    latent_gain: float = 16.0
    #: Gain factor per coarser grid (grid k, 2^k times coarser: latent_gain · grid_gain^k). Below 1 the coarse
    #: grids, few and far-reaching, move slower (Cool-chic: one gain, 16, for all grids).
    grid_gain: float = 1.0
    #: Gradient norm clip (over all parameters, loss at Cool-chic's scale); 0: none.
    clip: float = 0.1
    #: Initial ARM log-scale bias: the rate starts near zero for the all-zero latents, as in Cool-chic.
    arm_log_scale: float = -3.0


#: The recipe (Cool-chic 4/5 and C3, scaled to a few thousand iterations; the A/B figures of each part on
#: validation crops are in benchmarks/results/overfit.md).
PHASES = (
    FitPhase(0.04, candidates=4, noise=(0.5, 0.5)),
    FitPhase(0.04, candidates=2, noise=(0.5, 0.5)),
    FitPhase(0.80, cosine=True, temperature=(0.3, 0.1), noise=(0.25, 0.1), keep_best=True),
    FitPhase(0.12, lr=1e-4, cosine=True, quantizer="frozen", keep_best=True),
)
#: One preset per ``--effort`` level: the same recipe, longer. Iterations chosen for about 1, 3, 10 and
#: 30 minutes on a 768×512 photo on two idle cores (README, "A codec fitted to each image").
#: Grid k stored ÷ 16 · 0.7^k (16 … 1.9): better than one gain for all grids on validation crops
#: (benchmarks/results/overfit-recipe.md, "ggain0.7").
PRESETS: tuple[FitPreset, ...] = tuple(FitPreset(n, PHASES, grid_gain=0.7) for n in (160, 500, 1600, 5000))
#: Most iterations an encoder accepts (``--iterations``).
MAX_ITERATIONS = 100_000


def preset_for(effort: int, iterations: int | None = None) -> FitPreset:
    """The preset of an ``--effort`` level, with ``iterations`` instead of its own when given (ValueError
    for a level or a count out of range)."""
    if not 0 <= effort < len(PRESETS):
        raise ValueError(f"effort must be from 0 to {len(PRESETS) - 1}, got {effort}")
    if iterations is None:
        return PRESETS[effort]
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be from 1 to {MAX_ITERATIONS}, got {iterations}")
    return replace(PRESETS[effort], iterations=iterations)


@dataclass
class FitResult:
    decoder: FittedDecoder  # quantized parameters, as the decoder rebuilds them
    exps: list[int]
    grids: list[Tensor]  # integer-valued latents
    loss: float  # of the coded result: estimated bpp + λ·255²·MSE
    bpp_latents: float
    bpp_params: float
    psnr: float
    iterations: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "fit", "steps" (parameter steps)
    parallel: bool = False  # whether the rate ran on a second thread (``Stepper``)


def soft_round(y: Tensor, t: float) -> Tensor:
    """Soft rounding at temperature ``t``: → round(y) as t → 0, → y as t grows (Agustsson & Theis)."""
    m = torch.floor(y) + 0.5
    return m + 0.5 * torch.tanh((y - m) / t) / math.tanh(0.5 / t)


class _Fit:
    """One candidate: a decoder, its latents (stored ÷ gain) and its optimizer state."""

    def __init__(self, x: Tensor, arch: Arch, preset: FitPreset, seed: int):
        h, w = x.shape[-2:]
        self.decoder = FittedDecoder(arch, seed).to(x.device)
        with torch.no_grad():
            self.decoder.arm_b3[1] = preset.arm_log_scale
        self.gains = [preset.latent_gain * preset.grid_gain**k for k in range(arch.grids)]
        sizes = grid_sizes(h, w, arch.grids)
        self.latents = [torch.zeros(gh, gw, device=x.device, requires_grad=True) for gh, gw in sizes]
        self.gen = torch.Generator(device=x.device).manual_seed(seed)
        self.best: tuple[float, dict, list[Tensor]] | None = None

    def grids(self) -> list[Tensor]:
        return [p * g for p, g in zip(self.latents, self.gains, strict=True)]

    def hard(self) -> list[Tensor]:
        with torch.no_grad():
            return [torch.round(y) for y in self.grids()]

    def snapshot(self, score: float) -> None:
        if self.best is None or score < self.best[0]:
            self.best = (score, copy.deepcopy(self.decoder.state_dict()), [p.detach().clone() for p in self.latents])

    def restore(self) -> None:
        if self.best is not None:
            self.decoder.load_state_dict(self.best[1])
            with torch.no_grad():
                for p, b in zip(self.latents, self.best[2], strict=True):
                    p.copy_(b)
            self.best = None


def _loss(decoder: FittedDecoder, grids: list[Tensor], x: Tensor, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """(MSE + bpp / scale, bpp, mse) of the latents ``grids`` (``scale``: λ·255²)."""
    bpp, mse = _rate(decoder, grids, x.shape[-2] * x.shape[-1]), _mse(decoder, grids, x)
    return mse + bpp / scale, bpp, mse


def _rate(decoder: FittedDecoder, grids: list[Tensor], pixels: int) -> Tensor:
    flat = torch.cat([g.reshape(-1) for g in grids])
    return laplace.bits(flat, *decoder.arm(decoder.contexts(grids))).sum() / pixels


def _mse(decoder: FittedDecoder, grids: list[Tensor], x: Tensor) -> Tensor:
    return torch.mean((decoder.image(grids) - x) ** 2)


class Stepper:
    """The gradients of one iteration, the rate and the image computed side by side where that pays.

    The rate (ARM) and the image (upsampling, synthesis) are separate graphs from the same latents: each
    runs forward and backward on its own detached copy of them, and the two latent gradients are added
    in a fixed order. So the result is the same whether the rate runs on a second thread or not, and a
    thread that waits sleeps (unlike intra-op workers, which spin and, on a busy machine, made a 2-thread
    fit 9x slower than one thread). The first ``TRIALS`` iterations time both ways; the faster stays.
    """

    TRIALS = 6

    def __init__(self, x: Tensor, scale: float, parallel: bool | None = None):
        self.x, self.scale, self.parallel = x, scale, parallel
        self.pixels = x.shape[-2] * x.shape[-1]
        self.times: dict[bool, list[float]] = {False: [], True: []}
        self._pool: ThreadPoolExecutor | None = None

    def backward(self, decoder: FittedDecoder, grids: list[Tensor]) -> None:
        """Gradients of MSE + bpp / scale into the decoder's parameters and, through ``grids``, the latents."""
        latents = grids[0].requires_grad
        r_in = [g.detach().requires_grad_(latents) for g in grids]
        d_in = [g.detach().requires_grad_(latents) for g in grids]

        def rate() -> None:
            (_rate(decoder, r_in, self.pixels) / self.scale).backward()

        parallel = self._choice()
        start = time.perf_counter()
        if parallel:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="fit-rate")
            pending = self._pool.submit(rate)
            _mse(decoder, d_in, self.x).backward()
            pending.result()
        else:
            rate()
            _mse(decoder, d_in, self.x).backward()
        self.times[parallel].append(time.perf_counter() - start)
        if latents:
            torch.autograd.backward(grids, [a.grad + b.grad for a, b in zip(d_in, r_in, strict=True)])

    def _choice(self) -> bool:
        if self.parallel is not None:
            return self.parallel
        n = len(self.times[False]) + len(self.times[True])
        if n < self.TRIALS:
            return n % 2 == 1 and (os.cpu_count() or 1) > 1
        if not self.times[True]:
            self.parallel = False
        else:
            self.parallel = statistics.median(self.times[True]) < statistics.median(self.times[False])
        return self.parallel

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def kumaraswamy(u: Tensor, a: float) -> Tensor:
    """Kumaraswamy(a, b) noise from uniform ``u`` in [0, 1) by the inverse CDF, shifted to (-1/2, 1/2];
    b = (2^a (a - 1) + 1) / a puts the mode at the centre (a = 1: uniform; larger a: narrower)."""
    b = (2**a * (a - 1) + 1) / a
    return (1 - (1 - u) ** (1 / b)) ** (1 / a) - 0.5


def _noise(shape: torch.Size, gen: torch.Generator, kind: str, value: float) -> Tensor:
    """Noise of a phase's ``noise_kind`` at ``value`` (a standard deviation or a Kumaraswamy shape)."""
    if kind == "gaussian":
        return torch.randn(shape, generator=gen, device=gen.device) * value
    if kind == "kumaraswamy":
        return kumaraswamy(torch.rand(shape, generator=gen, device=gen.device), value)
    raise ValueError(f"unknown noise kind {kind!r}")


def _quantized(fit: _Fit, phase: FitPhase, t: float) -> list[Tensor]:
    """The latents as the phase's quantizer sees them at ``t`` (0 → 1 over the phase)."""
    temp = phase.temperature[0] + (phase.temperature[1] - phase.temperature[0]) * t
    value = phase.noise[0] + (phase.noise[1] - phase.noise[0]) * t
    out = []
    for y in fit.grids():
        n = _noise(y.shape, fit.gen, phase.noise_kind, value)
        out.append(soft_round(soft_round(y, temp) + n, temp) if phase.quantizer == "softround" else y + n)
    return out


def _run_phase(
    fit: _Fit, phase: FitPhase, steps: int, stepper: Stepper, clip: float, tick: Callable[[], None]
) -> float:
    """Train ``fit`` for ``steps`` iterations of ``phase``; returns the hard-rounded loss at its end."""
    frozen = phase.quantizer == "frozen"
    trained = list(fit.decoder.parameters()) + ([] if frozen else fit.latents)
    fixed = fit.hard() if frozen else None
    opt = torch.optim.Adam(trained, lr=phase.lr)
    for it in range(steps):
        t = it / max(1, steps - 1)
        if phase.cosine:
            opt.param_groups[0]["lr"] = phase.lr * (phase.floor + (1 - phase.floor) * (1 + math.cos(math.pi * t)) / 2)
        for p in trained:
            p.grad = None
        stepper.backward(fit.decoder, fixed if frozen else _quantized(fit, phase, t))
        if clip:
            torch.nn.utils.clip_grad_norm_(trained, clip)
        opt.step()
        if not frozen:
            with torch.no_grad():
                for p, g in zip(fit.latents, fit.gains, strict=True):
                    p.clamp_(-LATENT_BOUND / g, LATENT_BOUND / g)
        if phase.keep_best and ((it + 1) % phase.score_every == 0 or it == steps - 1):
            fit.snapshot(_score(fit, stepper.x, stepper.scale))
        tick()
    if phase.keep_best:
        fit.restore()
    return _score(fit, stepper.x, stepper.scale)


def _score(fit: _Fit, x: Tensor, scale: float) -> float:
    with torch.no_grad():
        return float(_loss(fit.decoder, fit.hard(), x, scale)[0])


def phase_steps(preset: FitPreset) -> list[int]:
    """Iterations of each phase per candidate: the phases' shares of ``preset.iterations`` (rounded so that
    they add up), divided among its candidates; at least one each."""
    total, done, out = sum(p.share for p in preset.phases), 0.0, []
    for p in preset.phases:
        start, done = round(done), done + preset.iterations * p.share / total
        out.append(max(1, (round(done) - start) // p.candidates))
    return out


def planned_iterations(preset: FitPreset) -> int:
    """Iterations a fit with ``preset`` runs, all candidates counted (``preset.iterations`` or a few less)."""
    return sum(n * p.candidates for n, p in zip(phase_steps(preset), preset.phases, strict=True))


def fit(
    x: Tensor,
    quality: float,
    arch: Arch,
    preset: FitPreset = PRESETS[0],
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
    parallel: bool | None = None,
) -> FitResult:
    """Fit one image ``x`` (1, 3, H, W) in [0, 1] at ``quality`` with ``preset``; ``parallel``: the rate on a
    second thread (None: whichever measures faster; the result is the same)."""
    start = time.perf_counter()
    lam = Q.lmbda(quality)
    stepper = Stepper(x, lam * 255**2, parallel)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(1)

    try:
        pool: list[_Fit] = []
        for phase, n in zip(preset.phases, phase_steps(preset), strict=True):
            pool = pool or [_Fit(x, arch, preset, seed + c) for c in range(phase.candidates)]
            scores = [_run_phase(f, phase, n, stepper, preset.clip, tick) for f in pool[: phase.candidates]]
            pool = [pool[i] for i in sorted(range(len(scores)), key=scores.__getitem__)]
        best = pool[0]
        fitted = time.perf_counter()
        hard = best.hard()
        exps, result = choose_steps(best.decoder, hard, x, lam)
    finally:
        stepper.close()
    out = _result(result, exps, hard, done[0], time.perf_counter() - start)
    out.timings = {"fit": fitted - start, "steps": time.perf_counter() - fitted}
    out.parallel = bool(stepper.parallel)
    return out


def _result(result, exps, grids, iterations, seconds) -> FitResult:
    decoder, loss, bpp_latents, bpp_params, mse = result
    return FitResult(
        decoder=decoder,
        exps=exps,
        grids=grids,
        loss=loss,
        bpp_latents=bpp_latents,
        bpp_params=bpp_params,
        psnr=-10 * math.log10(max(mse, 1e-12)),
        iterations=iterations,
        seconds=seconds,
    )


@torch.no_grad()
def choose_steps(decoder: FittedDecoder, grids: list[Tensor], x: Tensor, lam: float):
    """Per tensor, the step 2^-e minimizing latent bits + parameter bits + λ·255²·MSE·pixels.

    Greedy in ``tensors()`` order, the others at the finest step tried; an ARM tensor changes only the
    latents' rate (the contexts of the hard grids are computed once), any other only the image.
    Returns (exps, (decoder, loss, bpp latents, bpp params, mse)) with the decoder at the chosen steps.
    """
    pixels = x.shape[-2] * x.shape[-1]
    tensors = decoder.tensors()
    is_arm = [name.startswith("arm_") for name, _ in tensors]
    flat = torch.cat([g.reshape(-1) for g in grids])
    ctx = decoder.contexts(grids)
    cost: dict[tuple[int, int], float] = {}

    def param_bits(i: int, e: int) -> float:
        if (i, e) not in cost:
            cost[i, e] = coding.param_bits(coding.quantize(tensors[i][1], e))[1]
        return cost[i, e]

    def rate(q: FittedDecoder) -> float:
        return float(laplace.bits(flat, *q.arm(ctx)).sum()) / pixels

    def distortion(q: FittedDecoder) -> float:
        return float(torch.mean((q.image(grids) - x) ** 2))

    def total(parts: tuple[float, float], exps: list[int]) -> float:
        params = (sum(param_bits(i, e) for i, e in enumerate(exps)) + 8 * coding.HEADER_BYTES * len(exps)) / pixels
        return parts[0] + params + lam * 255**2 * parts[1]

    exps = [max(STEP_EXPS)] * len(tensors)
    q = coding.dequantized(decoder, exps).to(x.device)
    parts = (rate(q), distortion(q))
    best = total(parts, exps)
    for i in range(len(tensors)):
        for e in STEP_EXPS:
            if e == exps[i]:
                continue
            trial = exps[:i] + [e] + exps[i + 1 :]
            q = coding.dequantized(decoder, trial).to(x.device)
            trial_parts = (rate(q), parts[1]) if is_arm[i] else (parts[0], distortion(q))
            score = total(trial_parts, trial)
            if score < best:
                best, exps, parts = score, trial, trial_parts
    q = coding.dequantized(decoder, exps).to(x.device)
    bpp_params = best - parts[0] - lam * 255**2 * parts[1]
    return exps, (q, best, parts[0], bpp_params, parts[1])
