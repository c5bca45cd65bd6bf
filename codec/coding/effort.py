"""Encoder effort: optimize each image's latents for its own rate-distortion cost before coding.

``analyze`` is an amortized guess of the best latent, worse the less the network was trained;
searching the latents (y and the side latent z) of each image for its own cost
``bits + λ·255²·MSE·pixels`` closes that "amortization gap" (Campos et al. 2019; Yang, Bamler &
Mandt, NeurIPS 2020). Only the encoder changes: the result is coded by the model's exact entropy
path (``encode_latent(y, quality, side=z)``), so every file decodes, bit-exactly, with the
unchanged decoder.

Method (Yang et al. 2020, shortened to a CPU budget): Adam over the scaled latents (``Effortful.gains``:
one unit is one quantization step, so one step size serves every quality) with a cosine-decayed
learning rate; rounding relaxed as in their stochastic Gumbel annealing (SGA), the temperature
annealed from ``tau_start`` to ``tau_end`` — by default without the Gumbel noise, which needs far
more iterations than we can afford (see ``Settings``); every ``eval_every`` iterations the
hard-rounded latent is scored (float rate model + real synthesis) and the best one, never worse
than the analysis's own by that score, is what gets coded. The model is touched only through its
interface (``codec.models.base``): ``side_analysis``, and ``Effortful``'s ``gains``, ``relaxed_rd`` and
``differentiable_synthesis``. The levels (iterations per effort) are in ``codec.core.quality``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import progress
from ..core import quality as Q
from ..core.errors import AecError
from ..core.tensors import ste_round
from ..format.bitstream import quantize_quality
from ..models.base import Effortful, Model, no_effort

#: Where each optimization's gain is reported (``aecodec encode -v`` prints it; ``--quiet`` raises its
#: level above WARNING, which also hides the progress bar): the logger ``codec.effort``.
log = progress.effort_log


@dataclass(frozen=True)
class Settings:
    """Step size (in quantization steps) and its cosine decay, rounding temperatures, how often to score.

    Tuned on 128² crops of validation photos (q 2/4/5/8, 30 iterations, RD cost of the hard latent):
    lr 0.01 gave -4.6/-4.6/-5.4/-9.4 %; 0.02 was better at q8 (-10.7 %) but worse at q2/q4 (-2.0/-3.2 %),
    0.005 slower (-4.1 % at q2, -5.9 % at q8). Gumbel noise (SGA proper) gained only -0.7 % at q2 in
    that budget — Yang et al. run 2000 iterations — so ``noise`` is off by default (a deterministic
    annealed soft rounding); straight-through rounding gained -1.3 % at q2. Temperature 0.5 → 0.05.
    """

    lr: float = 0.01
    lr_end: float = 0.001
    tau_start: float = 0.5
    tau_end: float = 0.05
    noise: bool = False
    rounding: str = "sga"
    eval_every: int = 4
    seed: int = 0


@dataclass
class Gain:
    """What the optimization gained, by the float rate model (the coder's bits differ slightly)."""

    iterations: int = 0
    seconds: float = 0.0
    bits_before: float = 0.0
    bits_after: float = 0.0
    sse_before: float = 0.0
    sse_after: float = 0.0
    pixels: int = 0

    def add(self, other: Gain) -> None:
        """Accumulate another tile's or batch's gain into this one."""
        for name in ("iterations", "seconds", "bits_before", "bits_after", "sse_before", "sse_after", "pixels"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def psnr(self, sse: float) -> float:
        return 10 * math.log10(3 * self.pixels / sse) if sse > 0 else math.inf

    def summary(self) -> str:
        rate = 100 * (self.bits_after / self.bits_before - 1) if self.bits_before else 0.0
        dpsnr = self.psnr(self.sse_after) - self.psnr(self.sse_before)
        return (
            f"{self.iterations} iterations in {self.seconds:.1f} s: "
            f"rate {rate:+.1f} %, PSNR {dpsnr:+.2f} dB (float rate model)"
        )


def report(gain: Gain) -> None:
    """Log what one image's (or one batch's) optimization gained."""
    log.info("effort: %s", gain.summary())


@dataclass
class Target:
    """The pixels the synthesis of the latent should match.

    ``pixels`` (B, 3, H, W) in [0, 1] and ``mask`` (B or 1, 1, H, W), 1 where a pixel counts (the
    image, not its padding). For a tile, ``context`` is the latent window g_s sees (neighbours
    included) and ``inner`` where the optimized latent sits in it; None means the latent is all.
    """

    pixels: Tensor
    mask: Tensor
    context: Tensor | None = None
    inner: tuple[slice, slice] | None = None

    def synthesize(self, model: Model, y_hat: Tensor) -> Tensor:
        if self.context is not None and self.inner is not None:
            window = self.context.clone()
            window[:, :, self.inner[0], self.inner[1]] = y_hat
            y_hat = window
        return model.differentiable_synthesis(y_hat)

    def sse(self, x_hat: Tensor) -> Tensor:
        """Per-item squared error over the counted pixels, the decoder's [0, 1] clamp applied."""
        return ((x_hat.clamp(0, 1) - self.pixels).square() * self.mask).flatten(1).sum(1)


def sga(tau: float, generator: torch.Generator | None) -> Callable[[Tensor], Tensor]:
    """Stochastic Gumbel annealing (Yang et al. 2020): a differentiable draw between floor and
    ceiling, favouring the nearer (logits ``-atanh(distance)``), hard as ``tau`` → 0.
    ``generator`` None draws no noise: a deterministic soft rounding to the nearest integer."""

    def rounding(v: Tensor) -> Tensor:
        floor = torch.floor(v).detach()
        d = (v - floor).clamp(1e-4, 1 - 1e-4)
        logit = torch.atanh(d) - torch.atanh(1 - d)  # > 0 when the ceiling is nearer
        if generator is not None:
            u = torch.rand(v.shape, generator=generator, device=v.device).clamp_(1e-6, 1 - 1e-6)
            logit = logit + torch.log(u) - torch.log1p(-u)  # difference of two Gumbels
        return floor + torch.sigmoid(logit / tau)

    return rounding


@contextmanager
def _frozen(model: Model) -> Iterator[None]:
    """No gradients for the weights (only the latents are optimized), restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def optimize(
    model: Model,
    y: Tensor,
    target: Target,
    quality: float,
    steps: int,
    settings: Settings = Settings(),
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Gain]:
    """Latents (y, z) for ``target`` at ``quality`` after ``steps`` Adam iterations, and the gain.

    Starts from ``y`` (``analyze``'s latent) and ``z = side_analysis(y)``. The returned latents are the
    best scored hard-rounded ones, snapped to their dequantized values so that the exact coder
    (whose means may differ from the float model's in the last bits) writes exactly these symbols.
    ``progress`` is called with the number of iterations done since its last call.
    """
    if not isinstance(model, Effortful):  # ``Model.encoder_steps`` refuses it first; a direct caller is told too
        raise AecError(no_effort(model.kind))
    return _search(model, y, target, quality, steps, settings, progress)


def _annealed(settings: Settings, frac: float) -> tuple[float, float]:
    """(soft-rounding temperature, learning rate) at ``frac`` of the iterations: geometric, cosine."""
    tau = settings.tau_start * (settings.tau_end / settings.tau_start) ** frac
    return tau, settings.lr_end + (settings.lr - settings.lr_end) * 0.5 * (1 + math.cos(math.pi * frac))


def _search(
    model: Model,
    y: Tensor,
    target: Target,
    quality: float,
    steps: int,
    settings: Settings,
    progress: Callable[[int], None] | None,
) -> tuple[Tensor, Tensor, Gain]:
    """``optimize`` itself, on an ``Effortful`` model."""
    t0 = time.perf_counter()
    quality = quantize_quality(quality)  # what the file will carry
    lam = Q.lmbda(quality) * 255**2 / 3  # MSE averages 3 channels; the cost is per pixel
    with _frozen(model):
        y_gain, z_gain = (g.detach() for g in model.gains(quality))
        y0 = y.detach().float().clone()
        u = (y0 * y_gain).requires_grad_()
        v = (model.side_analysis(y0).detach() * z_gain).requires_grad_()

        def score() -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
            with torch.no_grad():
                out = model.relaxed_rd(u / y_gain, v / z_gain, quality, torch.round)
                sse = target.sse(target.synthesize(model, out["y_hat"]))
            return out["bits"] + lam * sse, out["y_hat"], out["z_hat"], out["bits"], sse

        best_cost, best_y, best_z, bits0, sse0 = score()
        best_bits, best_sse = bits0.clone(), sse0.clone()
        opt = torch.optim.Adam([u, v], lr=settings.lr)
        gen = None
        if settings.noise:
            gen = torch.Generator(device=u.device)
            gen.manual_seed(settings.seed)
        for i in range(steps):
            tau, opt.param_groups[0]["lr"] = _annealed(settings, i / max(steps - 1, 1))
            opt.zero_grad(set_to_none=True)
            rnd = ste_round if settings.rounding == "ste" else sga(tau, gen)
            out = model.relaxed_rd(u / y_gain, v / z_gain, quality, rnd)
            cost = out["bits"] + lam * target.sse(target.synthesize(model, out["y_hat"]))
            cost.sum().backward()
            opt.step()
            if (i + 1) % settings.eval_every == 0 or i == steps - 1:
                c, yh, zh, bits, sse = score()
                better = c < best_cost
                best_cost = torch.where(better, c, best_cost)
                best_y[better], best_z[better] = yh[better], zh[better]
                best_bits[better], best_sse[better] = bits[better], sse[better]
            if progress is not None:
                progress(1)
    gain = Gain(
        iterations=steps,
        seconds=time.perf_counter() - t0,
        bits_before=float(bits0.sum()),
        bits_after=float(best_bits.sum()),
        sse_before=float(sse0.sum()),
        sse_after=float(best_sse.sum()),
        pixels=int(target.mask.expand(target.pixels.shape[0], -1, -1, -1).sum()),
    )
    return best_y.detach(), best_z.detach(), gain
