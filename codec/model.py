"""The network: GDN analysis/synthesis transforms around a gained mean-scale hyperprior.

Variable rate comes from per-quality gain vectors (Cui et al., "Asymmetric Gained Deep Image
Compression With Continuous Rate Adaptation", CVPR 2021): the latent ``y`` is multiplied by a
per-channel gain before rounding, so one set of weights covers the whole λ ladder and a
fractional quality interpolates the gains of its two neighbours log-linearly.

Unlike CompressAI's ``GainHyperpriorLatentCodec`` (whose hyper-synthesis cannot see the gain), the
hyper-synthesis here predicts mean and scale of the *un-gained* ``y``; both are then multiplied by
the same gain. Quantizing ``y * g`` with step 1 is quantizing ``y`` with step ``1 / g``, so the
predicted Gaussian stays correct at every quality.

Sizes: N=128, M=192, the width CompressAI uses for its low and middle qualities. The wider
192/320 costs 2.2x the time per training step on CPU (measured, see docs/TRAINING.md) and our
training compute is the scarce resource.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from . import quality as Q

#: Input sides must be a multiple of this (4 stride-2 layers in g_a, 2 more in h_a).
PAD_MULTIPLE = 64
#: CompressAI's default scale table: 64 log-spaced scales in [0.11, 256].
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> list[float]:
    return [
        math.exp(math.log(SCALE_MIN) + i * (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1))
        for i in range(SCALE_LEVELS)
    ]


@dataclass(frozen=True)
class Arch:
    """Architecture hyper-parameters; stored in the weights manifest."""

    N: int = 128
    M: int = 192
    levels: int = len(Q.LAMBDAS)


def analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(M, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, 3),
    )


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        conv(M, N, stride=1, kernel_size=3),
        nn.LeakyReLU(inplace=True),
        conv(N, N),
        nn.LeakyReLU(inplace=True),
        conv(N, N),
    )


def hyper_synthesis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(N, M),
        nn.LeakyReLU(inplace=True),
        deconv(M, M * 3 // 2),
        nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
    )


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class AECModel(nn.Module):
    """Variable-rate mean-scale hyperprior; see the module docstring."""

    def __init__(self, arch: Arch = Arch()):
        super().__init__()
        self.arch = arch
        N, M, L = arch.N, arch.M, arch.levels
        if L != len(Q.LAMBDAS):
            raise ValueError(f"{L} quality levels, but this version's ladder has {len(Q.LAMBDAS)}")
        self.g_a = analysis(N, M)
        self.g_s = synthesis(N, M)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(scale_table())
        # Step size ∝ λ^-1/2 under high-rate theory, so start the gains at (λ/λ_mid)^1/2.
        lam = torch.tensor(Q.LAMBDAS)
        init = 0.5 * torch.log(lam / lam[L // 2 - 1 : L // 2 + 1].mean())
        self.log_y_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_z_gain = nn.Parameter((0.5 * init)[:, None].repeat(1, N).clone())
        self.register_buffer("y_gain_table", torch.zeros(L, M))
        self.register_buffer("z_gain_table", torch.zeros(L, N))

    # -- gains -----------------------------------------------------------------------------
    def gains(self, quality: Tensor | float) -> tuple[Tensor, Tensor]:
        """Per-sample (y_gain, z_gain) of shape (B, C, 1, 1) for qualities in [1, levels].

        Between two ladder levels the gains are interpolated linearly — the same formula the
        integer-exact decoder path evaluates in float64 (``inference_gains``), so what is trained
        is what is decoded, and no transcendental function (whose last bit varies between libms)
        sits on the path that decides the entropy coder's tables.
        """
        q = torch.as_tensor(quality, dtype=torch.float32, device=self.log_y_gain.device).reshape(-1)
        q = q.clamp(Q.Q_MIN, float(self.arch.levels))
        lo = (q.floor().long() - 1).clamp(max=self.arch.levels - 2)
        t = (q - 1 - lo.float())[:, None]

        def interp(table: Tensor) -> Tensor:
            g = table.exp()
            return ((1 - t) * g[lo] + t * g[lo + 1])[:, :, None, None]

        return interp(self.log_y_gain), interp(self.log_z_gain)

    @torch.no_grad()
    def freeze_gains(self) -> None:
        """Store exp(log gain) as plain numbers: decoders read these, never recompute exp."""
        self.y_gain_table.copy_(self.log_y_gain.exp())
        self.z_gain_table.copy_(self.log_z_gain.exp())

    def inference_gains(self, quality: float) -> tuple[Tensor, Tensor]:
        """(y_gain, z_gain) as float64 CPU vectors from the frozen tables, bit-identical everywhere."""
        k = round(float(quality) * 1000)
        level = min(k // 1000, self.arch.levels - 1) - 1
        t = (k - 1000 * (level + 1)) / 1000

        def interp(table: Tensor) -> Tensor:
            g = table.detach().double().cpu()
            return g[level] if t == 0 else (1 - t) * g[level] + t * g[level + 1]

        return interp(self.y_gain_table), interp(self.z_gain_table)

    # -- training forward ----------------------------------------------------------------
    def forward(self, x: Tensor, quality: Tensor, autocast_dtype: torch.dtype | None = None) -> dict:
        """Training/evaluation pass with noise for the rate and STE rounding for the decoder.

        The transforms run under autocast when ``autocast_dtype`` is given; everything that
        computes likelihoods stays float32, where bf16 would lose the small tail probabilities.
        """
        y_gain, z_gain = self.gains(quality)
        dev = x.device.type
        with torch.autocast(dev, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            y = self.g_a(x)
            z = self.h_a(y)
        y, z = y.float(), z.float() * z_gain
        _, z_lik = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians().detach()
        z_hat = ste_round(z - medians) + medians
        with torch.autocast(dev, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            params = self.h_s(z_hat / z_gain)
        scales, means = params.float().chunk(2, 1)
        yg, scales_g, means_g = y * y_gain, scales * y_gain, means * y_gain
        _, y_lik = self.gaussian_conditional(yg, scales_g, means=means_g)
        y_hat = (ste_round(yg - means_g) + means_g) / y_gain
        with torch.autocast(dev, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            x_hat = self.g_s(y_hat)
        # The auxiliary loss rides along so one backward (and one DDP all-reduce) covers it.
        return {"x_hat": x_hat.float(), "likelihoods": {"y": y_lik, "z": z_lik}, "aux": self.aux_loss()}

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()

    # -- inference pieces (used by codec.engine) -----------------------------------------
    def hyper_params(self, z_hat: Tensor, z_gain: Tensor, y_gain: Tensor) -> tuple[Tensor, Tensor]:
        """Float (scales, means) of the gained latent — the training-time path; coding uses
        ``codec.exact`` instead, which computes the same thing in integers."""
        scales, means = self.h_s(z_hat / z_gain).float().chunk(2, 1)
        return scales * y_gain, means * y_gain
