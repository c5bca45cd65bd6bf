"""The ``overfit`` kind: a per-image neural codec (Cool-chic / C3 style) behind the model interface.

No weights ship: each file carries its own decoder (``codec.models.overfit``). Through the interface the
"latent" of this kind is the image itself, at stride 1::

    x ──analyze (identity)──► y = x ──encode_latent: fit grids + decoder to y, code them──► streams
    x̂ ◄──synthesize (clamp)── ŷ = x̂ ◄──decode_latent: decoder from stream 0, grids, upsample, synthesis──┘

so tiling, batching, the API and the container run it unchanged: a tile is fitted and coded on its
own (its own decoder), and the decoded tile is what the tiler crops and places. The encoder's work
is each call's ``EncodeSettings`` (an ``--effort`` preset of ``fit.PRESETS``, ``--iterations`` instead of its
count), never state on the model, and not ``codec.coding.effort``'s.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...core import progress
from ...core.engine import intra_op_threads
from ..base import DEFAULT_SETTINGS, EncodeSettings, Model, Streams, register
from . import coding, fast
from .fit import fit, planned_iterations, preset_for
from .network import Arch, macs_per_pixel

log = progress.effort_log  # the CLI shows this logger's lines with -v


@register
class OverfitModel(Model):
    """A per-image codec: the 'weights' are an architecture; every tile is fitted when it is coded."""

    # The geometry is the torch-free decoder's (``fast.FastModel``): tiles are fitted and decoded on their own,
    # the decoded "latent" is the tile's pixels, no context needed.
    kind: ClassVar[str] = fast.FastModel.kind
    stride: ClassVar[int] = fast.FastModel.stride
    latent_stride: ClassVar[int] = fast.FastModel.latent_stride
    needs_weights: ClassVar[bool] = fast.FastModel.needs_weights
    tile_margin: ClassVar[int] = fast.FastModel.tile_margin
    batches: ClassVar[bool] = fast.FastModel.batches
    fits_per_image: ClassVar[bool] = True

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # carries the device

    @staticmethod
    def manifest_entry() -> dict[str, Any]:
        """The manifest entry of the shipped ``overfit`` id (weights/manifest.json holds this; a test checks)."""
        return {
            "kind": OverfitModel.kind,
            "arch": OverfitModel.default_arch(),
            "note": "per-image (overfitted) codec: no weights file, each .aec carries its own decoder; "
            "encoding fits it (minutes per image on a CPU)",
        }

    @classmethod
    def default_arch(cls) -> dict[str, Any]:
        """The arch of the shipped ``overfit`` id (the kind is fitted per image, never trained)."""
        return Arch().as_dict()

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> OverfitModel:
        return cls(Arch.from_dict(arch))

    def arch_dict(self) -> dict[str, Any]:
        return self.arch.as_dict()

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def levels(self) -> int:
        return self.arch.levels

    def build_tables(self) -> None:
        self.prepare()

    def prepare(self) -> OverfitModel:
        from . import laplace

        laplace.tables()  # built from constants, once per process
        return self

    def encoder_steps(self, effort: int, iterations: int | None) -> int:
        """Checks ``effort`` and ``iterations`` (ValueError); no latent optimization by ``codec.coding.effort``
        (returns 0): ``encode_latent`` fits with the preset its settings name."""
        preset_for(effort, iterations)
        return 0

    def macs_per_pixel(self, height: int, width: int) -> float:
        return macs_per_pixel(self.arch, height, width)

    # -- coding ------------------------------------------------------------------------------
    def analyze(self, x: Tensor) -> Tensor:
        return x.float()

    def side_analysis(self, y: Tensor) -> Tensor:
        raise NotImplementedError("the overfit kind has no side latent")

    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        """Fit each image with the preset of ``settings``, then code its decoder and grids.

        The fit runs on one intra-op thread (the same bytes whatever ``--threads`` says); with more than one
        thread allowed, its rate may run on a second thread where that measures faster (``fit.Stepper``).
        """
        preset = preset_for(settings.effort, settings.iterations)
        parallel = None if torch.get_num_threads() > 1 else False
        out = []
        for i in range(y.shape[0]):
            with torch.enable_grad(), intra_op_threads(1), progress.fit_bar(planned_iterations(preset)) as bar:
                result = fit(y[i : i + 1].to(self.device), quality, self.arch, preset, bar.update, parallel=parallel)
            start = time.perf_counter()
            decoder, grids = result.decoder, [g.cpu() for g in result.grids]
            params = coding.encode_params(decoder, result.exps)
            streams = [params, coding.encode_grids(decoder, decoder.exact_arm(), grids)]
            log.info(
                "overfit: %d iterations, %.4f bpp (latents %.4f, decoder %.4f), %.2f dB (estimated); "
                "fit %.1f s (rate %s), parameter steps %.1f s, coding %.1f s",
                result.iterations,
                result.bpp_latents + result.bpp_params,
                result.bpp_latents,
                result.bpp_params,
                result.psnr,
                result.timings["fit"],
                "on a second thread" if result.parallel else "on the same thread",
                result.timings["steps"],
                time.perf_counter() - start,
            )
            if settings.on_fit is not None:
                settings.on_fit(result)
            out.append(streams)
        return out

    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        """Each tile's pixels (float32, unclamped) through the compiled decoder (``fast``), or the torch
        reference (``coding.decode_image``) where it was not built; both give the same symbols."""
        h, w = shape
        if not fast.available():
            return torch.cat([coding.decode_image(st, h, w, self.arch) for st in streams])
        return torch.from_numpy(fast.FastModel(self.arch).decode_latent(streams, shape, quality))

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return torch.nan_to_num(y_hat.float(), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1)
