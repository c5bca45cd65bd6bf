"""Models trained elsewhere (kind ``compressai``): CompressAI's zoo architectures, one network per quality, coded
through our integer-exact entropy path, so that a file decodes to the same symbols on every machine.

CompressAI's own ``compress()``/``decompress()`` run the hyper-synthesis in float: another machine can rebuild
other scale indexes and lose the rest of the stream (its issues #279, #309). Here the networks are CompressAI's
own modules with the weights it published (or any checkpoint of the same architecture), and whatever decides a
rANS table goes through ``codec.core.exact`` exactly as for our own hyperprior, with gains of 1
(``HyperpriorCoder.setup``). Streams per tile:

- ``bmshj2018-factorized`` (and ``-relu``): [y]. Symbols ``round(y − median)``, channel c coded with table c of
  the entropy bottleneck; no network decides a table.
- ``bmshj2018-hyperprior``: [z, y]. Scales from the exact hyper-synthesis without its last ReLU (every threshold
  of the scale table is positive, so ReLU never changes an index), means 0, as CompressAI's ``ScaleHyperprior``.
- ``mbt2018-mean``: [z, y]. Scales and means from the exact hyper-synthesis: our ``gain-msh`` path, gains 1.

Qualities: CompressAI trains one network per λ; zoo quality k (1..8) is our quality ``compressai_quality(k)``
(k + 2: the λ ladders coincide). A ``ZooModel`` holds the networks that were imported, codes only their
qualities, and ``at(q)`` is the network of quality q (a ``ZooNet``, itself a ``Model`` of one quality).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models.google import (
    FactorizedPrior,
    FactorizedPriorReLU,
    MeanScaleHyperprior,
    ScaleHyperprior,
    get_scale_table,
)
from torch import Tensor, nn

from ..core import engine
from ..core import quality as Q
from .base import DEFAULT_SETTINGS, EncodeSettings, Model, Streams, register
from .hyperprior import HyperpriorCoder, Latents

#: The architectures this kind codes: CompressAI's name → its class (``compressai.zoo.image``'s names).
CLASSES: dict[str, type[nn.Module]] = {
    "bmshj2018-factorized": FactorizedPrior,
    "bmshj2018-factorized-relu": FactorizedPriorReLU,
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
}
#: Which of them have a hyperprior, and which predict means too.
HYPER = ("bmshj2018-hyperprior", "mbt2018-mean")
WITH_MEANS = ("mbt2018-mean",)
#: Tensors whose shapes follow the data, not the architecture: the entropy models' tables (rebuilt on import).
TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


@dataclass(frozen=True)
class ZooArch:
    """What the manifest's ``arch`` stores: the architecture, the metric it was trained for and, per quality of
    ours, the network's channels (N, M)."""

    arch: str
    metric: str
    channels: dict[int, tuple[int, int]]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZooArch:
        if d.get("arch") not in CLASSES:
            raise ValueError(f"architecture {d.get('arch')!r} is none of {', '.join(CLASSES)}")
        channels = {int(q): (int(n), int(m)) for q, (n, m) in dict(d["channels"]).items()}
        for q in channels:
            Q.zoo_quality(q)  # ValueError for a quality that is no zoo quality
        return cls(str(d["arch"]), str(d["metric"]), channels)

    def to_dict(self) -> dict[str, Any]:
        """The manifest form; ``levels`` and ``qualities`` are for readers without torch (``manifest``)."""
        qualities = sorted(self.channels)
        return {
            "arch": self.arch,
            "metric": self.metric,
            "levels": max(qualities),
            "qualities": qualities,
            "channels": {str(q): list(self.channels[q]) for q in qualities},
        }


class FactorizedCoder:
    """The factorized prior's exact path: one stream of ``round(y − median)``, channel c with table c."""

    STREAMS = 1

    def __init__(self, eb: EntropyBottleneck):
        self.tables = engine.RansTables.from_entropy_model(eb)
        self.medians = eb._get_medians().detach().double().cpu().reshape(1, -1, 1, 1)
        self.channels = eb.channels

    def indexes(self, shape: tuple[int, int]) -> Tensor:
        return torch.arange(self.channels, dtype=torch.int32)[:, None, None].expand(self.channels, *shape)

    def latents(self, y_sym: Tensor) -> Latents:
        idx = self.indexes(tuple(y_sym.shape[2:])).expand(y_sym.shape[0], -1, -1, -1)
        return Latents(y_sym[:, :0], y_sym, idx, self.medians, torch.ones(self.channels, dtype=torch.float64))

    def quantize(self, y: Tensor) -> Latents:
        return self.latents(torch.round(y.double().cpu() - self.medians).int())

    def code(self, lat: Latents) -> list[Streams]:
        return [[self.tables.encode(lat.y_sym[b], lat.indexes[b])] for b in range(lat.y_sym.shape[0])]

    def decode(self, streams: list[Streams], shape: tuple[int, int]) -> Latents:
        for s in streams:
            if len(s) != self.STREAMS:
                raise ValueError(f"{len(s)} streams in a tile, this model codes {self.STREAMS}")
        idx = self.indexes(shape)
        return self.latents(torch.stack([self.tables.decode(s[0], idx) for s in streams]))


class ZooHyperCoder(HyperpriorCoder):
    """Our hyperprior's exact path (``HyperpriorCoder``) on a CompressAI hyperprior, gains of 1."""

    def __init__(self, net: ZooNet):
        h_s = net.h_s
        if isinstance(h_s[-1], nn.ReLU):  # ScaleHyperprior: scales = ReLU(conv); an index never sees the ReLU
            h_s = nn.Sequential(*list(h_s)[:-1])
        self.setup(net.entropy_bottleneck, net.gaussian_conditional, h_s, net.device, net.arch in WITH_MEANS)
        self.gains = torch.ones(net.M, dtype=torch.float64), torch.ones(net.N, dtype=torch.float64)


class ZooNet(Model):
    """One CompressAI network (one quality), adopting its modules, so its tensors keep CompressAI's names."""

    kind = "compressai-net"
    stride = 64  # g_a and h_a halve the image 6 times (CompressAI's evaluation pads to 64 for every model)
    latent_stride = 16
    hyper_stride = stride // latent_stride
    tile_margin = 64

    def __init__(self, arch: str, N: int, M: int, quality: int):
        super().__init__()
        self.arch, self.N, self.M, self.quality = arch, N, M, quality
        net = CLASSES[arch](N, M)
        for name, module in net.named_children():
            self.add_module(name, module)
        if arch in HYPER:  # CompressAI leaves it empty until update(); the stored one has its default's shape
            self.gaussian_conditional.scale_table = get_scale_table()
        self._coder: FactorizedCoder | ZooHyperCoder | None = None

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> ZooNet:
        raise NotImplementedError("a network of a ZooModel is built by it")

    def arch_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "N": self.N, "M": self.M, "quality": self.quality}

    @property
    def levels(self) -> int:
        return self.quality

    @property
    def qualities(self) -> tuple[float, ...]:
        return (float(self.quality),)

    def build_tables(self) -> None:
        """CompressAI's own ``update(force=True)``: the tables its ``compress()`` would use, from the parameters."""
        self.entropy_bottleneck.update(force=True)
        if self.arch in HYPER:
            self.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
        self.prepare()

    def prepare(self) -> ZooNet:
        engine.use_layout(self.g_a, self.g_s)
        self._coder = ZooHyperCoder(self) if self.arch in HYPER else FactorizedCoder(self.entropy_bottleneck)
        return self

    @property
    def coder(self) -> FactorizedCoder | ZooHyperCoder:
        if self._coder is None:
            raise RuntimeError("model not prepared for coding: call prepare() or build_tables() first")
        return self._coder

    def _dtype(self) -> torch.dtype:
        return self.g_a[0].weight.dtype

    def analyze(self, x: Tensor) -> Tensor:
        return engine.analyze_with(self.g_a, x, self._dtype())

    def side_analysis(self, y: Tensor) -> Tensor:
        if self.arch not in HYPER:
            return y[:, :0]  # no side information
        y = y.to(self.device, self._dtype())
        with torch.inference_mode():
            return self.h_a(y if self.arch in WITH_MEANS else torch.abs(y))

    @torch.inference_mode()
    def quantize(self, y: Tensor, side: Tensor | None = None) -> Latents:
        """Symbols and tables of ``y``: the encoder's floats decide the symbols, the exact path the rest."""
        if isinstance(self.coder, FactorizedCoder):
            return self.coder.quantize(y)
        y_gain, z_gain = self.coder.gains
        z = self.side_analysis(y) if side is None else side
        return self.coder.quantize(y, z, y_gain, z_gain)

    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        return self.coder.code(self.quantize(y, side))

    @torch.inference_mode()
    def decode_symbols(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Latents:
        """rANS-decode same-size images' streams: symbols, indexes and means (all on the CPU)."""
        if isinstance(self.coder, FactorizedCoder):
            return self.coder.decode(streams, shape)
        hyper = shape[0] // self.hyper_stride, shape[1] // self.hyper_stride
        return self.coder.decode(streams, hyper, *self.coder.gains)

    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        return self.decode_symbols(streams, shape, quality).y_hat().float()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return engine.synthesize_with(self.g_s, y_hat, self.device, self._dtype())


@register
class ZooModel(Model):
    """The networks of one imported architecture and metric, one per quality; ``at(q)`` codes quality q."""

    kind = "compressai"
    stride = ZooNet.stride
    latent_stride = ZooNet.latent_stride
    tile_margin = ZooNet.tile_margin
    #: Tensor names are ``q<quality>.<CompressAI's name>``.
    PREFIX: ClassVar[str] = "q"

    def __init__(self, arch: ZooArch):
        super().__init__()
        self.arch = arch
        for q, (N, M) in sorted(arch.channels.items()):
            self.add_module(f"{self.PREFIX}{q}", ZooNet(arch.arch, N, M, q))

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> ZooModel:
        return cls(ZooArch.from_dict(arch))

    def arch_dict(self) -> dict[str, Any]:
        return self.arch.to_dict()

    @property
    def levels(self) -> int:
        return max(self.arch.channels)

    @property
    def qualities(self) -> tuple[float, ...]:
        return tuple(float(q) for q in sorted(self.arch.channels))

    def at(self, quality: float) -> ZooNet:
        q = Q.check_quality(quality, self.levels, "", self.qualities)
        return self.get_submodule(f"{self.PREFIX}{int(q)}")

    def nets(self) -> list[ZooNet]:
        return [self.at(q) for q in self.qualities]

    def build_tables(self) -> None:
        for net in self.nets():
            net.build_tables()

    def prepare(self) -> ZooModel:
        for net in self.nets():
            net.prepare()
        return self

    def _one_quality(self, *_: Any) -> Tensor:
        raise RuntimeError("a model with one network per quality codes through model.at(quality)")

    analyze = side_analysis = synthesize = _one_quality

    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        return self.at(quality).encode_latent(y, quality, side, settings)

    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        return self.at(quality).decode_latent(streams, shape, quality)

    def decode_symbols(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Latents:
        return self.at(quality).decode_symbols(streams, shape, quality)
