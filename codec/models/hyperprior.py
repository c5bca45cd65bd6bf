"""The gained mean-scale hyperprior (kind ``gain-msh``): GDN analysis/synthesis transforms around it.

Variable rate comes from per-quality gain vectors (Cui et al., "Asymmetric Gained Deep Image
Compression With Continuous Rate Adaptation", CVPR 2021): the latent ``y`` is multiplied by a
per-channel gain before rounding, so one set of weights covers the whole λ ladder and a
fractional quality interpolates the gains of its two neighbours (``quality.interpolate``).

Unlike CompressAI's ``GainHyperpriorLatentCodec`` (whose hyper-synthesis cannot see the gain), the
hyper-synthesis here predicts mean and scale of the *un-gained* ``y``; both are then multiplied by
the same gain. Quantizing ``y * g`` with step 1 is quantizing ``y`` with step ``1 / g``, so the
predicted Gaussian stays correct at every quality.

Entropy path, two streams per image (tile), in this order::

    y ──h_a──► z ──×g_z, −median, round──► z symbols ──rANS, factorized──────────► stream 0 "z"
                                               │
                                exact h_s (integers, ``ExactHyperSynthesis``)
                                               │ scale index, mean·g_y
    y ──×g_y, −mean, round─────────────────► y symbols ──rANS, Gaussian by index──► stream 1 "y"

Sizes: N=128, M=192, the width CompressAI uses for its low and middle qualities. The wider
192/320 costs 2.2x the time per training step on CPU (measured, see docs/TRAINING.md) and our
training compute is the scarce resource.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from ..core import engine
from ..core import quality as Q
from ..core.exact import ExactNetwork
from ..core.tensors import ste_round
from .base import DEFAULT_SETTINGS, Effortful, EncodeSettings, Model, Streams, Trainable, register

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
    #: Quality levels: the first ``levels`` λs of ``quality.LAMBDAS`` (v2-v4: 10; new runs: all).
    levels: int = Q.LEVELS


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


def ste_dequantize(yg: Tensor, means_g: Tensor, y_gain: Tensor) -> Tensor:
    """The un-gained latent the decoder will see (symbols round(yg − μ_g), STE): what g_s is trained on."""
    return (ste_round(yg - means_g) + means_g) / y_gain


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``, or a disabled one for None (float32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@dataclass
class Latents:
    """Symbols and the tables derived from them; exact, so equal on every machine."""

    z_sym: Tensor
    y_sym: Tensor
    indexes: Tensor
    means: Tensor
    y_gain: Tensor

    def y_hat(self) -> Tensor:
        return (self.y_sym.double() + self.means) / self.y_gain.view(1, -1, 1, 1)


class ExactHyperSynthesis:
    """``h_s`` as an ``ExactNetwork``: hyper-latent symbols → scale indexes and means, identical everywhere.

    Scale index i of a latent element = number of entries of the scale table (without its last)
    that are strictly below σ·g, compared as ``S > table[i] · 2^E / g`` with ``S`` the integer
    output. The gains enter only through CPU float64 elementwise steps (input scaling, thresholds).
    """

    def __init__(
        self,
        h_s: nn.Sequential,
        medians: Tensor,
        scale_table: Tensor,
        device: torch.device | str = "cpu",
        means: bool = True,
    ):
        self.net = ExactNetwork(h_s, device)
        self.medians = medians.detach().double().cpu().reshape(-1)
        self.scale_table = scale_table.detach().double().cpu()
        #: False for a scale-only hyper-synthesis (every output channel a scale; the means are 0).
        self.means = means

    def integer_outputs(self, z_sym: Tensor, z_gain: Tensor) -> tuple[Tensor, Tensor]:
        """Integer (S, Mu): scale and mean channels at ``net.out_frac`` fractional bits, on the CPU."""
        z = z_sym.detach().cpu().double() + self.medians.view(1, -1, 1, 1)
        out = self.net(self.net.fixed_point(z / z_gain.view(1, -1, 1, 1)))
        return out.chunk(2, 1) if self.means else (out, torch.zeros_like(out))

    def thresholds(self, y_gain: Tensor) -> Tensor:
        """(C, T-1) integer-domain thresholds table[i] · 2^E / g_y[c] — CPU float64 elementwise."""
        return (self.scale_table[:-1].view(1, -1) * 2.0**self.net.out_frac) / y_gain.view(-1, 1)

    def __call__(self, z_sym: Tensor, z_gain: Tensor, y_gain: Tensor) -> tuple[Tensor, Tensor]:
        """(scale indexes int32, gained means float64) for hyper-latent symbols (B, N, h, w)."""
        return self.indexes_and_means(*self.integer_outputs(z_sym, z_gain), y_gain)

    def indexes_and_means(self, S: Tensor, Mu: Tensor, y_gain: Tensor) -> tuple[Tensor, Tensor]:
        """(scale indexes int32, gained means float64) of integer (S, Mu) at ``net.out_frac`` bits;
        ``y_gain`` holds the gains of S's channels (a context model passes one group at a time)."""
        B, C, H, W = S.shape
        thr = self.thresholds(y_gain)  # (C, T-1), increasing along T
        # count of thresholds strictly below S  ==  searchsorted(thr, S, side="left")
        flat = S.permute(1, 0, 2, 3).reshape(C, -1).contiguous()
        idx = torch.searchsorted(thr.contiguous(), flat, right=False)
        idx = idx.reshape(C, B, H, W).permute(1, 0, 2, 3).to(torch.int32)
        means = Mu * 2.0**-self.net.out_frac * y_gain.view(1, -1, 1, 1)
        return idx, means


class HyperpriorCoder:
    """The exact entropy path of the gained hyperprior, prepared once per model (see the diagram)."""

    STREAMS = 2  # z, y

    def __init__(self, model: GainHyperprior):
        if not model.y_gain_table.any():
            raise RuntimeError("gain tables missing: call build_tables() first")
        self.setup(model.entropy_bottleneck, model.gaussian_conditional, model.h_s, model.device)

    def setup(
        self,
        eb: EntropyBottleneck,
        gc: GaussianConditional,
        h_s: nn.Sequential,
        device: torch.device,
        means: bool = True,
    ) -> None:
        """The tables and the exact hyper-synthesis from an entropy model's parts: also what a hyperprior
        trained elsewhere codes with (``codec.models.zoo``, gains of 1)."""
        self.z_tables = engine.RansTables.from_entropy_model(eb)
        self.y_tables = engine.RansTables.from_entropy_model(gc)
        self.hyper = ExactHyperSynthesis(h_s, eb._get_medians(), gc.scale_table, device, means)
        self.channels = eb.channels

    def z_indexes(self, shape: tuple[int, int]) -> Tensor:
        """The factorized model codes channel c with table c."""
        return torch.arange(self.channels, dtype=torch.int32)[:, None, None].expand(self.channels, *shape)

    def z_symbols(self, z: Tensor, z_gain: Tensor) -> Tensor:
        return torch.round(z.double().cpu() * z_gain.view(1, -1, 1, 1) - self.hyper.medians.view(1, -1, 1, 1)).int()

    def quantize(self, y: Tensor, z: Tensor, y_gain: Tensor, z_gain: Tensor) -> Latents:
        """Symbols of (y, z): only these encoder floats decide them; the rest comes from the symbols."""
        z_sym = self.z_symbols(z, z_gain)
        idx, means = self.hyper(z_sym, z_gain, y_gain)
        y_sym = torch.round(y.double().cpu() * y_gain.view(1, -1, 1, 1) - means).int()
        return Latents(z_sym, y_sym, idx, means, y_gain)

    def code(self, lat: Latents) -> list[Streams]:
        z_idx = self.z_indexes(tuple(lat.z_sym.shape[2:]))
        return [
            [self.z_tables.encode(lat.z_sym[b], z_idx), self.y_tables.encode(lat.y_sym[b], lat.indexes[b])]
            for b in range(lat.y_sym.shape[0])
        ]

    def decode_z(self, streams: list[Streams], z_shape: tuple[int, int]) -> Tensor:
        """Hyper-latent symbols from stream 0 of each image, after checking the stream count."""
        for s in streams:
            if len(s) != self.STREAMS:
                raise ValueError(f"{len(s)} streams in a tile, this model codes {self.STREAMS}")
        z_idx = self.z_indexes(z_shape)
        return torch.stack([self.z_tables.decode(s[0], z_idx) for s in streams])

    def decode(self, streams: list[Streams], z_shape: tuple[int, int], y_gain: Tensor, z_gain: Tensor) -> Latents:
        z_sym = self.decode_z(streams, z_shape)
        idx, means = self.hyper(z_sym, z_gain, y_gain)
        y_sym = torch.stack([self.y_tables.decode(s[1], idx[b]) for b, s in enumerate(streams)])
        return Latents(z_sym, y_sym, idx, means, y_gain)


@register
class GainHyperprior(Model, Trainable, Effortful):
    """Variable-rate mean-scale hyperprior; see the module docstring. It codes, trains and optimizes its latents."""

    kind = "gain-msh"
    stride = 64  # 4 stride-2 layers in g_a, 2 more in h_a
    latent_stride = 16
    hyper_stride = stride // latent_stride
    half_stored = ("g_a.", "g_s.", "h_a.", "h_s.")
    #: The exact entropy path ``prepare`` builds (a subclass with more nets brings its own).
    coder_class: ClassVar[type[HyperpriorCoder]] = HyperpriorCoder
    level_params = ("log_y_gain", "log_z_gain")
    level_tables = ("y_gain_table", "z_gain_table")
    aux_params = ("entropy_bottleneck.quantiles",)
    #: 64 px covers most of the transforms' effective receptive field (measured: docs/FORMAT.md, tiled
    #: against untiled PSNR).
    tile_margin = 64

    def __init__(self, arch: Arch = Arch()):
        super().__init__()
        self.arch = arch
        N, M, L = arch.N, arch.M, Q.check_levels(arch.levels)
        self.g_a = analysis(N, M)
        self.g_s = synthesis(N, M)
        self.h_a = hyper_analysis(N, M)
        self.h_s = hyper_synthesis(N, M)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(scale_table())
        # Step size ∝ λ^-1/2 under high-rate theory, so start the gains at (λ/λ_mid)^1/2.
        lam = torch.tensor(Q.ladder(L))
        init = 0.5 * torch.log(lam / lam[L // 2 - 1 : L // 2 + 1].mean())
        self.log_y_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_z_gain = nn.Parameter((0.5 * init)[:, None].repeat(1, N).clone())
        self.register_buffer("y_gain_table", torch.zeros(L, M))
        self.register_buffer("z_gain_table", torch.zeros(L, N))
        self._coder: HyperpriorCoder | None = None

    @classmethod
    def default_arch(cls) -> dict[str, Any]:
        return asdict(Arch())

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> GainHyperprior:
        return cls(Arch(**arch))

    @classmethod
    def with_levels(cls, arch: dict[str, Any], levels: int) -> dict[str, Any]:
        return {**arch, "levels": levels}

    def arch_dict(self) -> dict[str, Any]:
        return asdict(self.arch)

    @property
    def levels(self) -> int:
        return self.arch.levels

    # -- gains -----------------------------------------------------------------------------
    def gains(self, quality: Tensor | float) -> tuple[Tensor, Tensor]:
        """Per-sample (y_gain, z_gain) of shape (B, C, 1, 1) for qualities in [1, levels].

        Between two ladder levels the gains are interpolated linearly by ``quality.interpolate``,
        the formula the decoder evaluates in float64 (``inference_gains``): what is trained is what
        is decoded.
        """
        qs = torch.as_tensor(quality, dtype=torch.float32).reshape(-1).tolist()
        y_g, z_g = self.log_y_gain.exp(), self.log_z_gain.exp()
        return tuple(torch.stack([Q.interpolate(g, q) for q in qs])[:, :, None, None] for g in (y_g, z_g))

    @torch.no_grad()
    def freeze_gains(self) -> None:
        """Store exp(log gain) as plain numbers: decoders read these, never recompute exp."""
        self.y_gain_table.copy_(self.log_y_gain.exp())
        self.z_gain_table.copy_(self.log_z_gain.exp())

    def inference_gains(self, quality: float) -> tuple[Tensor, Tensor]:
        """(y_gain, z_gain) as float64 CPU vectors from the frozen tables, bit-identical everywhere."""
        return tuple(Q.interpolate(t.detach().double().cpu(), quality) for t in (self.y_gain_table, self.z_gain_table))

    # -- training forward ----------------------------------------------------------------
    def forward(self, x: Tensor, quality: Tensor, autocast_dtype: torch.dtype | None = None) -> dict:
        """Training/evaluation pass with noise for the rate and STE rounding for the decoder.

        The transforms run under autocast when ``autocast_dtype`` is given; everything that
        computes likelihoods stays float32, where bf16 would lose the small tail probabilities.
        """
        y, y_gain, scales, means, z_lik = self.hyperprior(x, quality, autocast_dtype)
        yg, scales_g, means_g = y * y_gain, scales * y_gain, means * y_gain
        _, y_lik = self.gaussian_conditional(yg, scales_g, means=means_g)
        return self.synthesis_output(ste_dequantize(yg, means_g, y_gain), y_lik, z_lik, autocast_dtype)

    def hyperprior(self, x: Tensor, quality: Tensor, autocast_dtype: torch.dtype | None) -> tuple[Tensor, ...]:
        """The training pass up to the hyper-synthesis: (y, y_gain, scales, means, z likelihoods),
        scales and means of the un-gained latent, all float32."""
        y_gain, z_gain = (g.to(x.device) for g in self.gains(quality))
        with _autocast(x.device, autocast_dtype):
            y = self.g_a(x)
        return (y.float(), y_gain, *self.side_pass(y, z_gain, autocast_dtype))

    def side_pass(self, y: Tensor, z_gain: Tensor, autocast_dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """The training pass of the side information: (scales, means, z likelihoods) for the latent y,
        scales and means of the un-gained latent, all float32."""
        with _autocast(y.device, autocast_dtype):
            z = self.h_a(y)
        z = z.float() * z_gain
        _, z_lik = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians().detach()
        z_hat = ste_round(z - medians) + medians
        with _autocast(y.device, autocast_dtype):
            params = self.h_s(z_hat / z_gain)
        scales, means = params.float().chunk(2, 1)
        return scales, means, z_lik

    def latent_rate(self, y: Tensor, quality: Tensor) -> dict:
        """Training likelihoods of a given latent (no transforms): fitting the entropy model alone."""
        y_gain, z_gain = (g.to(y.device) for g in self.gains(quality))
        scales, means, z_lik = self.side_pass(y, z_gain)
        _, y_lik = self.gaussian_conditional(y * y_gain, scales * y_gain, means=means * y_gain)
        return {"y": y_lik, "z": z_lik}

    def synthesis_output(self, y_hat: Tensor, y_lik: Tensor, z_lik: Tensor, autocast_dtype: torch.dtype | None) -> dict:
        """The training pass's result from the STE-rounded latent and both likelihoods."""
        with _autocast(y_hat.device, autocast_dtype):
            x_hat = self.g_s(y_hat)
        # The auxiliary loss rides along so one backward (and one DDP all-reduce) covers it.
        return {"x_hat": x_hat.float(), "likelihoods": {"y": y_lik, "z": z_lik}, "aux": self.aux_loss()}

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()

    # -- encoder effort (the Effortful interface; used by codec.coding.effort) ----------------------------
    def relaxed_rd(self, y: Tensor, z: Tensor, quality: float, rounding: Callable[[Tensor], Tensor]) -> dict:
        """See ``Effortful.relaxed_rd``: ``rounding`` sees ``z·g_z - median`` and ``y·g_y - mean``."""
        y_gain, z_gain = self.gains(quality)
        eb = self.entropy_bottleneck
        medians = eb._get_medians()
        z_hat = rounding(z * z_gain - medians) + medians
        # EntropyBottleneck's densities take (C, 1, N).
        z_lik, _, _ = eb._likelihood(z_hat.transpose(0, 1).reshape(z.shape[1], 1, -1))
        z_lik = eb.likelihood_lower_bound(z_lik).reshape(z.shape[1], z.shape[0], -1).transpose(0, 1)
        scales, means = self.hyper_params(z_hat, z_gain, y_gain)
        y_hat, y_lik = self.relaxed_latent(y * y_gain, scales, means, y_gain, rounding)
        bits = -(torch.log2(z_lik).flatten(1).sum(1) + torch.log2(y_lik).flatten(1).sum(1))
        return {"bits": bits, "y_hat": y_hat / y_gain, "z_hat": z_hat / z_gain}

    def relaxed_latent(
        self, y: Tensor, scales: Tensor, means: Tensor, y_gain: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(ŷ, likelihoods) of the gained latent ``y`` given the gained hyper parameters: the part of
        ``relaxed_rd`` an entropy model with more context than the hyperprior replaces."""
        y_hat = rounding(y - means) + means
        gc = self.gaussian_conditional
        return y_hat, gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))

    def differentiable_synthesis(self, y_hat: Tensor) -> Tensor:
        """``g_s`` in the device's precision and layout, as ``synthesize``, with gradients and unclamped."""
        y_hat = y_hat.to(self._dtype()).contiguous(memory_format=engine.layout(y_hat.device))
        return engine.transform(self.g_s, y_hat).float()

    def hyper_params(self, z_hat: Tensor, z_gain: Tensor, y_gain: Tensor) -> tuple[Tensor, Tensor]:
        """Float (scales, means) of the gained latent — the training-time path; coding uses
        ``codec.core.exact`` instead, which computes the same thing in integers."""
        scales, means = self.h_s(z_hat / z_gain).float().chunk(2, 1)
        return scales * y_gain, means * y_gain

    # -- tables --------------------------------------------------------------------------
    def build_tables(self) -> None:
        engine.fit_quantiles(self.entropy_bottleneck)
        self.entropy_bottleneck.update(force=True)
        self.gaussian_conditional.update()
        self.freeze_gains()
        self._coder = self.coder_class(self)  # raises if the exact hyper-synthesis could overflow 2^53

    def prepare(self) -> GainHyperprior:
        engine.use_layout(self.g_a, self.g_s)
        self._coder = self.coder_class(self)
        return self

    @property
    def coder(self) -> HyperpriorCoder:
        if self._coder is None:
            raise RuntimeError("model not prepared for coding: call prepare() or build_tables() first")
        return self._coder

    def scale_indexes(self, scales: Tensor) -> Tensor:
        """Index into the scale table: the number of table entries (but the last) below the scale."""
        table = self.gaussian_conditional.scale_table.to(scales)
        return torch.bucketize(scales.contiguous(), table[:-1].contiguous()).int()

    # -- coding (the Model interface) -----------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return self.log_y_gain.dtype

    def analyze(self, x: Tensor) -> Tensor:
        return engine.analyze_with(self.g_a, x, self._dtype())

    def side_analysis(self, y: Tensor) -> Tensor:
        return self.h_a(y.to(self.device, self._dtype()))

    @torch.inference_mode()
    def quantize(self, y: Tensor, quality: float, side: Tensor | None = None) -> Latents:
        """Symbols and coding tables for latents ``y`` at ``quality`` (what the decoder will rebuild).

        Only the encoder's own float values (``y``, ``z``) decide the symbols; everything the decoder
        must reproduce (indexes, means) comes from the exact hyper-synthesis on the symbols themselves.
        """
        y_gain, z_gain = self.inference_gains(quality)
        z = self.side_analysis(y) if side is None else side
        return self.coder.quantize(y, z, y_gain, z_gain)

    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        return self.coder.code(self.quantize(y, quality, side))

    @torch.inference_mode()
    def decode_symbols(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Latents:
        """rANS-decode same-size images' streams: symbols, indexes and means (all on the CPU)."""
        y_gain, z_gain = self.inference_gains(quality)
        return self.coder.decode(streams, self.hyper_shape(shape), y_gain, z_gain)

    def hyper_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Size of the hyper-latent of an (h, w) latent."""
        return shape[0] // self.hyper_stride, shape[1] // self.hyper_stride

    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        return self.decode_symbols(streams, shape, quality).y_hat().float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return engine.synthesize_with(self.g_s, y_hat, self.device, self._dtype())
