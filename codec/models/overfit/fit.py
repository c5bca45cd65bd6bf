"""The per-image encoder: fit latent grids and a decoder to one image, then quantize and code both.

Loss: bits per pixel + λ·255²·MSE (``codec.core.quality.lmbda``: ``-q`` means the same λ as in every kind).
Quantization of the latents as in C3 / Cool-chic, by phase of the iteration budget::

    0 ─── NOISE ───► additive uniform noise (rate and distortion)
          ─── SOFT ──► soft rounding, sharpened from temperature 1 to ~0.05, noise on the rate term
          ─── HARD ──► rounding with straight-through gradients, lower learning rate;
                        the best hard-rounded iterate is kept (the loss of what will be coded)

Then each parameter tensor gets the quantization step (2^-e) that minimizes rate + λ·distortion
with the parameters' own bits counted, and the grids are coded with the exact ARM (``coding``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ...core import quality as Q
from . import coding, laplace
from .network import Arch, Decoder, grid_sizes

log = logging.getLogger("codec.overfit")

#: Fractions of the iterations spent in the noise and soft-rounding phases (the rest: hard rounding).
NOISE_END, SOFT_END = 0.5, 0.85
#: Adam step sizes of the decoder's parameters and of the latents; the hard phase scales both. Measured on
#: the central 128² of validation photo wikiphoto_012 (500 iterations, loss of the coded result) against the
#: Cool-chic-like 0.01 for both with a 0.3 noise phase: q2 1.052 vs 1.098, q4 2.276 vs 2.826, q8 6.308 vs
#: 7.864 (a latent step of 0.04: 1.075, 2.148, 6.026 — mixed, not adopted before the benchmark started).
LR, LATENT_LR, HARD_LR_FACTOR = 0.01, 0.08, 0.2
#: Fraction of the iterations over which the rate term's weight ramps from 0 to 1 (0: off). Meant against low
#: qualities zeroing every latent before the synthesis learned to use them (Kodak crop kodim02 at q2: 18.6 dB).
#: Central 192² of validation photos, loss of the coded result, off → 0.1: at 600 iterations wikiphoto_020 q2
#: 0.949 → 0.348 (a collapse fixed), wikiphoto_004 q1/q2 0.266 → 0.246 / 0.468 → 0.426, mcmaster_03 q1/q2
#: 0.502 → 0.475 / 0.707 → 0.770, q4/q8 within ±1.3 %; but at 3,000 iterations (``benchmarks.overfit tune``)
#: wikiphoto_004 q2/q6 0.365 → 0.416 / 1.667 → 1.787, mcmaster_03 q2/q6 0.656 → 0.772 / 2.333 → 2.330: the
#: latents grown without a rate term are not pruned again, and the longer the fit the longer the ramp. Off.
RATE_WARMUP = 0.0
#: Latent values are kept within ± this (the exact ARM's input clamp is ±1024).
LATENT_BOUND = 1000.0
#: How often (iterations) the hard phase scores the hard-rounded loss for keeping the best.
SCORE_EVERY = 10
#: Parameter step exponents tried per tensor (steps 1 … 1/4096). Steps coarser than 1/32 halved the parameter
#: bits at q1 (val wikiphoto_004, 192²: 0.111 → 0.053 bpp, loss −22 %; at q4 −0.6 %, at q8 −0.1 %).
STEP_EXPS = tuple(range(0, 13))


@dataclass
class FitResult:
    decoder: Decoder  # quantized parameters, as the decoder rebuilds them
    exps: list[int]
    grids: list[Tensor]  # integer-valued latents
    loss: float  # of the coded result: estimated bpp + λ·255²·MSE
    bpp_latents: float
    bpp_params: float
    psnr: float
    iterations: int
    seconds: float


def _soft_round(y: Tensor, alpha: float) -> Tensor:
    """C3's soft rounding: → y as alpha → 0, → round(y) as alpha → ∞."""
    m = torch.floor(y) + 0.5
    r = y - m
    return m + torch.tanh(alpha * r) / (2 * math.tanh(alpha / 2))


def _round_ste(y: Tensor) -> Tensor:
    return y + (torch.round(y) - y).detach()


def _losses(
    decoder: Decoder,
    grids: list[Tensor],
    x: Tensor,
    lam: float,
    rate_grids: list[Tensor] | None = None,
    rate_weight: float = 1.0,
):
    """(loss, bpp, mse) of ``grids`` (the distortion's) with the rate of ``rate_grids`` (default: the same)."""
    rate_grids = grids if rate_grids is None else rate_grids
    flat = torch.cat([g.reshape(-1) for g in rate_grids])
    mu, log_b = decoder.arm(decoder.contexts(rate_grids))
    pixels = x.shape[-2] * x.shape[-1]
    bpp = laplace.bits(flat, mu, log_b).sum() / pixels
    mse = torch.mean((decoder.image(grids) - x) ** 2)
    return rate_weight * bpp + lam * 255**2 * mse, bpp, mse


def fit(
    x: Tensor,
    quality: float,
    iterations: int,
    arch: Arch,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> FitResult:
    """Fit one image ``x`` (1, 3, H, W) in [0, 1] at ``quality`` for ``iterations`` steps."""
    start = time.perf_counter()
    lam = Q.lmbda(quality)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    decoder = Decoder(arch, seed).to(x.device)
    h, w = x.shape[-2:]
    grids = [torch.zeros(gh, gw, device=x.device, requires_grad=True) for gh, gw in grid_sizes(h, w, arch.grids)]
    opt = torch.optim.Adam([{"params": decoder.parameters(), "lr": LR}, {"params": grids, "lr": LATENT_LR}])
    noise_end, soft_end = int(NOISE_END * iterations), int(SOFT_END * iterations)
    best: tuple[float, dict, list[Tensor]] | None = None

    def noise(g: Tensor) -> Tensor:
        return torch.rand(g.shape, generator=gen, device=g.device) - 0.5

    for it in range(iterations):
        if it == soft_end:
            for group in opt.param_groups:
                group["lr"] *= HARD_LR_FACTOR
        if it < noise_end:
            noisy = [g + noise(g) for g in grids]
            warm = min(1.0, it / (RATE_WARMUP * iterations)) if RATE_WARMUP > 0 else 1.0
            loss, _, _ = _losses(decoder, noisy, x, lam, rate_weight=warm)
        elif it < soft_end:
            t = (it - noise_end) / max(1, soft_end - noise_end)
            alpha = math.exp(math.log(1.0) * (1 - t) + math.log(20.0) * t)
            soft = [_soft_round(g, alpha) for g in grids]
            loss, _, _ = _losses(
                decoder, [_soft_round(s + noise(s), alpha) for s in soft], x, lam, [s + noise(s) for s in soft]
            )
        else:
            loss, _, _ = _losses(decoder, [_round_ste(g) for g in grids], x, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for g in grids:
                g.clamp_(-LATENT_BOUND, LATENT_BOUND)
        if it >= soft_end and ((it - soft_end) % SCORE_EVERY == 0 or it == iterations - 1):
            with torch.no_grad():
                hard = [torch.round(g) for g in grids]
                score = float(_losses(decoder, hard, x, lam)[0])
            if best is None or score < best[0]:
                best = (score, copy.deepcopy(decoder.state_dict()), [g.detach().clone() for g in hard])
        if progress is not None:
            progress(1)
    if best is None:  # fewer iterations than the phases need: code the last iterate
        best = (0.0, decoder.state_dict(), [torch.round(g.detach()) for g in grids])
    decoder.load_state_dict(best[1])
    hard = best[2]
    exps, result = choose_steps(decoder, hard, x, lam)
    return _result(result, exps, hard, iterations, time.perf_counter() - start)


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
def choose_steps(decoder: Decoder, grids: list[Tensor], x: Tensor, lam: float):
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

    def rate(q: Decoder) -> float:
        return float(laplace.bits(flat, *q.arm(ctx)).sum()) / pixels

    def distortion(q: Decoder) -> float:
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
