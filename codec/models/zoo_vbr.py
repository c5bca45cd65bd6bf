"""Variable-rate models trained elsewhere (kind ``compressai-vbr``): CompressAI's ``bmshj2018-hyperprior-vbr``
(``ScaleHyperpriorVbr``) and ``mbt2018-mean-vbr`` (``MeanScaleHyperpriorVbr``), one network for every rate, coded
through our integer-exact entropy path.

How CompressAI codes them (``compress(x, stage=2, s)``, scale = |Gain[s]|, the inverse of y's quantization step):
y is coded as ``round(y·scale − mean·scale)`` with the Gaussian table of ``scales·scale``; the hyper-latent z, in
the zoo's networks (``vr_entbttlnck``: a ``gayn2zqstep`` network), as ``round((z − median) / qs)`` with a step
``qs = LowerBound(0.5)(gayn2zqstep(1/scale))`` and entropy-bottleneck tables rebuilt for that step
(``update_variable(qs)``), both in float; without that network, z as in ``bmshj2018-hyperprior``. The decoder adds
a float offset (``QuantABCD``) to each non-zero y symbol: reconstruction only, it decides no table.

Here the float parts that decide tables are computed once, at import (``build_tables``), for every quality this
model offers, and stored as data in its weights (buffers ``grid.*``): y's scale, z's step and z's quantized CDF
tables per quality. A file then decodes with the same tables on every machine; y's scales and means come from the
exact hyper-synthesis (``HyperpriorCoder``: gains ``scale`` for y and ``1/qs`` for z, medians ``median/qs``).

Qualities: CompressAI's level s (0-based, λ of its zoo quality s+1) is our quality s+3; between two levels, on a
grid of ``STEP``, the scale is interpolated geometrically (the step 1/scale log-linear in quality, as λ is:
CompressAI defines no rule between its levels; its own evaluation takes any step). Off-grid qualities are refused
in one line that names the grid (``quality.describe``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from compressai.models.google import get_scale_table
from compressai.models.vbr import MeanScaleHyperpriorVbr, ScaleHyperpriorVbr
from torch import Tensor, nn

from ..core import engine
from ..core import quality as Q
from .base import DEFAULT_SETTINGS, EncodeSettings, Model, Streams, register
from .hyperprior import ExactHyperSynthesis, HyperpriorCoder, Latents
from .zoo import ZooNet

#: The architectures this kind codes: CompressAI's name → its class (``compressai.zoo.image_vbr``'s names).
VBR_CLASSES: dict[str, type[nn.Module]] = {
    "bmshj2018-hyperprior-vbr": ScaleHyperpriorVbr,
    "mbt2018-mean-vbr": MeanScaleHyperpriorVbr,
}
WITH_MEANS = ("mbt2018-mean-vbr",)
#: The quality grid: CompressAI's levels are our 3..10; between them, steps of ``STEP``.
STEP = 0.25
LOWEST, TOP = Q.compressai_quality(1), Q.compressai_quality(len(Q.COMPRESSAI_LAMBDAS))
GRID: tuple[float, ...] = tuple(LOWEST + i * STEP for i in range(round((TOP - LOWEST) / STEP) + 1))
#: The key whose presence says a checkpoint quantizes z with a variable step (CompressAI's ``vr_entbttlnck``).
VARIABLE_Z_KEY = "gayn2zqstep.0.weight"


def variable_z(sd: dict[str, Tensor]) -> bool:
    return VARIABLE_Z_KEY in sd


def reference(arch: str, N: int, M: int, with_variable_z: bool) -> nn.Module:
    """CompressAI's own network of ``arch`` (the zoo loads its files with ``vr_entbttlnck=True``)."""
    return VBR_CLASSES[arch](N, M, vr_entbttlnck=with_variable_z)


@dataclass(frozen=True)
class VbrArch:
    """What the manifest's ``arch`` stores; ``levels`` and ``qualities`` are for readers without torch."""

    arch: str
    metric: str
    N: int
    M: int
    variable_z: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VbrArch:
        if d.get("arch") not in VBR_CLASSES:
            raise ValueError(f"architecture {d.get('arch')!r} is none of {', '.join(VBR_CLASSES)}")
        if [float(q) for q in d.get("qualities", ())] != list(GRID):
            raise ValueError(f"qualities are not this version's grid ({Q.describe(GRID)})")
        return cls(str(d["arch"]), str(d["metric"]), int(d["N"]), int(d["M"]), bool(d["variable_z"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "metric": self.metric,
            "N": self.N,
            "M": self.M,
            "variable_z": self.variable_z,
            "levels": TOP,
            "qualities": list(GRID),
        }


def grid_scale(gains: Tensor, quality: float) -> Tensor:
    """y's scale at a grid quality (float32, as CompressAI's): |Gain| of its level, or between two levels the
    geometric interpolation (computed once, at import; what is stored is what every decoder reads)."""
    s = round((quality - LOWEST) / STEP)
    level, t = divmod(s, round(1 / STEP))
    if t == 0:
        return gains[level].clone()
    w = t * STEP
    a, b = float(gains[level]), float(gains[level + 1])
    return torch.tensor(math.exp((1 - w) * math.log(a) + w * math.log(b)), dtype=torch.float32)


class Grid(nn.Module):
    """Per grid quality g: y's scale, z's step and z's CDF tables (rows g·N .. g·N+N−1), stored as data."""

    def __init__(self, N: int):
        super().__init__()
        self.N = N
        self.register_buffer("scale", torch.zeros(len(GRID)))
        self.register_buffer("qs", torch.zeros(len(GRID)))
        self.register_buffer("_quantized_cdf", torch.zeros(0, 0, dtype=torch.int32))
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_cdf_length", torch.zeros(0, dtype=torch.int32))

    def z_tables(self, g: int) -> engine.RansTables:
        rows = slice(g * self.N, (g + 1) * self.N)
        if self._quantized_cdf.shape[0] != len(GRID) * self.N:
            raise RuntimeError("grid tables missing: call build_tables() first")
        return engine.RansTables(
            self._quantized_cdf[rows].tolist(), self._cdf_length[rows].tolist(), self._offset[rows].tolist()
        )

    def fill(self, scales: list[Tensor], steps: list[Tensor], tables: list[tuple[Tensor, Tensor, Tensor]]) -> None:
        """Store the grid's scales, steps and each step's (quantized CDF, offset, length) tables."""
        width = max(cdf.shape[1] for cdf, _, _ in tables)
        cdf = torch.zeros(len(GRID) * self.N, width, dtype=torch.int32)
        for g, (c, _, _) in enumerate(tables):
            cdf[g * self.N : (g + 1) * self.N, : c.shape[1]] = c
        self.scale = torch.stack([s.reshape(()) for s in scales]).float()
        self.qs = torch.stack([q.reshape(()) for q in steps]).float()
        self._quantized_cdf = cdf
        self._offset = torch.cat([o.reshape(-1) for _, o, _ in tables]).int()
        self._cdf_length = torch.cat([n.reshape(-1) for _, _, n in tables]).int()


@dataclass
class VbrLatents(Latents):
    """Latents plus the (gained) scale of each y element: the decoder's quantization offsets read it."""

    stdev: Tensor | None = None


class VbrLevelCoder(HyperpriorCoder):
    """The exact path at one grid quality: z's tables and medians of its step, y and z gains."""

    def __init__(self, hyper: ExactHyperSynthesis, y_tables: engine.RansTables, z_tables, y_gain, z_gain):
        self.hyper, self.y_tables, self.z_tables = hyper, y_tables, z_tables
        self.channels = hyper.medians.numel()
        self.gains = y_gain, z_gain

    def decode(self, streams: list[Streams], z_shape: tuple[int, int], y_gain: Tensor, z_gain: Tensor) -> Latents:
        z_sym = self.decode_z(streams, z_shape)
        S, Mu = self.hyper.integer_outputs(z_sym, z_gain)
        idx, means = self.hyper.indexes_and_means(S, Mu, y_gain)
        y_sym = torch.stack([self.y_tables.decode(s[1], idx[b]) for b, s in enumerate(streams)])
        stdev = S * 2.0**-self.hyper.net.out_frac * y_gain.view(1, -1, 1, 1)
        return VbrLatents(z_sym, y_sym, idx, means, y_gain, stdev)


#: Symbols of one z table at most (as the importer's bound on a checkpoint's tails): a step so small that the
#: tables would be larger is refused.
MAX_Z_SYMBOLS = 1 << 14


@register
class ZooVbrModel(Model):
    """One CompressAI variable-rate network (its modules adopted, so its tensors keep CompressAI's names) and the
    grid of per-quality data computed at import (``grid``)."""

    kind = "compressai-vbr"
    stride = ZooNet.stride
    latent_stride = ZooNet.latent_stride
    hyper_stride = ZooNet.hyper_stride
    tile_margin = ZooNet.tile_margin

    def __init__(self, arch: VbrArch):
        super().__init__()
        self.arch = arch
        net = reference(arch.arch, arch.N, arch.M, arch.variable_z)
        for name, module in net.named_children():
            self.add_module(name, module)
        self.Gain = net.Gain
        self.gaussian_conditional.scale_table = get_scale_table()  # CompressAI leaves it empty until update()
        self.grid = Grid(arch.N)
        self._hyper: ExactHyperSynthesis | None = None
        self._y_tables: engine.RansTables | None = None
        self._coders: dict[int, VbrLevelCoder] = {}

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> ZooVbrModel:
        return cls(VbrArch.from_dict(arch))

    def arch_dict(self) -> dict[str, Any]:
        return self.arch.to_dict()

    @property
    def levels(self) -> int:
        return TOP

    @property
    def qualities(self) -> tuple[float, ...]:
        return GRID

    # -- tables: computed once, at import ----------------------------------------------------------------------
    def build_tables(self) -> None:
        """CompressAI's own tables from the parameters (a checkpoint without them), then the grid."""
        if not self.arch.variable_z:
            self.entropy_bottleneck.update(force=True)
        self.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
        self.build_grid()

    @torch.no_grad()
    def build_grid(self) -> None:
        """Per grid quality, y's scale, z's step and z's tables, as CompressAI's ``update(scale=...)`` computes
        them (``qs = LowerBound(0.5)(gayn2zqstep(1/scale))``, ``update_variable(qs)``); z's step is 1 without the
        variable-step network. Then ``prepare``.

        In float64 on the CPU, on copies of those modules: these tables decide symbols, and two machines that
        import the same zoo file must store the same grid (the weights hash a file names covers it). CompressAI's
        float32 differs between CPUs by an ulp, enough to move a quantized CDF entry; float64 rounded once to the
        float32 CDF builder leaves a machine's last-bit differences far below that rounding."""
        eb = copy.deepcopy(self.entropy_bottleneck).double().cpu()
        to_step = nn.Sequential(self.gayn2zqstep, self.lower_bound_zqstep) if self.arch.variable_z else None
        to_step = copy.deepcopy(to_step).double().cpu() if to_step is not None else None
        lo, median, hi = eb.quantiles.detach().double().cpu().reshape(-1, 3).unbind(-1)
        span = float(torch.maximum(median - lo, hi - median).max())
        gains = self.Gain.detach().float().abs().cpu()
        scales, steps, tables = [], [], []
        for q in GRID:
            scale = grid_scale(gains, q)
            qs = torch.ones(1, dtype=torch.float64)
            if to_step is not None:
                qs = to_step(1.0 / scale.double().view(1)).float().double()  # the float32 step that is stored
                if not (bool(torch.isfinite(qs).all()) and float(qs) > 0 and 2 * span / float(qs) <= MAX_Z_SYMBOLS):
                    raise ValueError(f"z's quantization step at quality {q:g} is {float(qs):g}: out of range")
                eb.update_variable(force=True, qs=qs)
            scales.append(scale)
            steps.append(qs)
            tables.append(tuple(t.detach().cpu().clone() for t in (eb._quantized_cdf, eb._offset, eb._cdf_length)))
        self.grid.fill(scales, steps, tables)
        self.prepare()

    def prepare(self) -> ZooVbrModel:
        engine.use_layout(self.g_a, self.g_s)
        h_s = self.h_s
        if isinstance(h_s[-1], nn.ReLU):  # ScaleHyperprior: scales = ReLU(conv); an index never sees the ReLU
            h_s = nn.Sequential(*list(h_s)[:-1])
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        self._y_tables = engine.RansTables.from_entropy_model(gc)
        means = self.arch.arch in WITH_MEANS
        self._hyper = ExactHyperSynthesis(h_s, eb._get_medians(), gc.scale_table, self.device, means)
        self._coders = {}
        self.grid.z_tables(0)  # RuntimeError now when the grid is missing
        return self

    def coder(self, quality: float) -> VbrLevelCoder:
        """The exact path of one grid quality (built on first use from the stored grid)."""
        if self._hyper is None or self._y_tables is None:
            raise RuntimeError("model not prepared for coding: call prepare() or build_tables() first")
        g = GRID.index(Q.check_quality(quality, TOP, "", GRID))
        if g not in self._coders:
            scale, qs = self.grid.scale[g].double().cpu(), self.grid.qs[g].double().cpu()
            hyper = copy.copy(self._hyper)
            hyper.medians = self._hyper.medians / qs  # round((z − median)/qs) = round(z·(1/qs) − median/qs)
            y_gain, z_gain = scale.expand(self.arch.M).clone(), (1.0 / qs).expand(self.arch.N).clone()
            self._coders[g] = VbrLevelCoder(hyper, self._y_tables, self.grid.z_tables(g), y_gain, z_gain)
        return self._coders[g]

    # -- coding ---------------------------------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return self.g_a[0].weight.dtype

    def analyze(self, x: Tensor) -> Tensor:
        return engine.analyze_with(self.g_a, x, self._dtype())

    def side_analysis(self, y: Tensor) -> Tensor:
        y = y.to(self.device, self._dtype())
        with torch.inference_mode():
            return self.h_a(y if self.arch.arch in WITH_MEANS else torch.abs(y))

    @torch.inference_mode()
    def quantize(self, y: Tensor, quality: float, side: Tensor | None = None) -> Latents:
        """Symbols and tables of ``y``: the encoder's floats decide the symbols, the exact path the rest."""
        coder = self.coder(quality)
        z = self.side_analysis(y) if side is None else side
        return coder.quantize(y, z, *coder.gains)

    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        return self.coder(quality).code(self.quantize(y, quality, side))

    @torch.inference_mode()
    def decode_symbols(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> VbrLatents:
        """rANS-decode same-size images' streams: symbols, indexes, means and y's scales (all on the CPU)."""
        coder = self.coder(quality)
        hyper = shape[0] // self.hyper_stride, shape[1] // self.hyper_stride
        return coder.decode(streams, hyper, *coder.gains)

    @torch.inference_mode()
    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        lat = self.decode_symbols(streams, shape, quality)
        return (lat.y_hat() + self.offsets(lat, quality)).float()

    def offsets(self, lat: VbrLatents, quality: float) -> Tensor:
        """CompressAI's reconstruction offsets (``decompress``, stage 2): ``QuantABCD`` of each element's scale and
        the level's, added away from 0 to every non-zero symbol, in y's units (float: it decides no table)."""
        scale = self.grid.scale[GRID.index(float(quality))]
        stdev = self.gaussian_conditional.lower_bound_scale(lat.stdev.to(self.device, self._dtype()))
        inputs = torch.stack((stdev, scale.to(stdev).expand_as(stdev)), dim=-1)
        offset = -self.QuantABCD(inputs).squeeze(-1).double().cpu()
        return torch.where(lat.y_sym == 0, 0.0, torch.sign(lat.y_sym) * offset) / lat.y_gain.view(1, -1, 1, 1)

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return engine.synthesize_with(self.g_s, y_hat, self.device, self._dtype())
