"""The model interface: all that the engine, tiling, batching, the API and the container know of a network.

A model turns a padded image batch into per-image byte streams and back, in four steps::

    x (B, 3, H, W) ──analyze──► y ──encode_latent(quality)──► [[bytes, ...], ...]  one list per image
      H, W multiples of           │                              (ordered, any count)
      ``stride``                  │ side_analysis (optional: hyper-latent z of y)
                                  ▼
    x̂ ◄──synthesize── ŷ ◄──decode_latent(streams, latent size, quality)──┘

Everything between ``y`` and ``ŷ`` is the model's own (CompressAI's ``latent_codecs`` style): how
many streams, in which order, hyper-latents, channel groups, contexts, interleaved rANS decoding.
Callers only store the streams in the order they were given and hand them back with the latent
size (pixels / ``latent_stride``). A tile is coded on its own: ``encode_latent`` sees one tile's
latent, so the streams of a tile never depend on another tile.

The coding path must be exact: ``decode_latent`` must rebuild, on any machine, the symbols and
coding tables ``encode_latent`` used. Floats may decide the encoder's symbols (``analyze``) and the
pixels (``synthesize``), never what the decoder derives from decoded symbols (see ``codec.core.exact``).

The interface is in parts, each for the layer that uses it: ``Model`` is a kind that codes (the steps
above; what coding, the API and the container use), ``Trainable`` a kind that ``codec.training`` trains,
``Effortful`` a coding kind whose latents the encoder effort (``codec.coding.effort``) optimizes per image
(``gains``, ``relaxed_rd``, ``differentiable_synthesis``; a ``Model`` without it codes at effort 0 only).
The shipped ``gain-msh`` and ``gain-ctx`` are all three; the imported and fitted kinds only code; a kind may
only train (``registry.model_class`` refuses to code with it). ``Kind`` is what they share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from ..core import quality as Q

#: CompressAI entropy models' size-varying table buffers: stored in shipped weights, dropped from
#: training checkpoints (their shapes change with every ``update``).
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")

Streams = list[bytes]  # one image's (one tile's) streams, in the model's order


@dataclass(frozen=True)
class EncodeSettings:
    """One encode call's settings for the kinds that read them (the fitted kind: its ``--effort`` preset,
    ``--iterations`` instead of the preset's, a callback given each tile's fit result). Passed with the call,
    never kept on a model: a cached model codes the next call with that call's settings."""

    effort: int = 0
    iterations: int | None = None
    on_fit: Callable[[Any], None] | None = None


DEFAULT_SETTINGS = EncodeSettings()


def iterations_refused(top_effort: int) -> str:
    """What ``--iterations`` given to a kind that does not fit per image is told, in the user's words: the one
    message of every such kind (``encoder_steps``), ``top_effort`` its highest ``--effort``."""
    efforts = "--effort 0 only" if top_effort == 0 else f"--effort 0..{top_effort}"
    return f"--iterations applies only to --model overfit (a fit per image); this model takes {efforts}"


#: Manifest ``kind`` → the class that runs it, filled by ``register`` as each kind's module is imported
#: (``registry`` imports the shipped kinds; a kind defined elsewhere, a test's, registers the same way). A kind
#: codes (a ``Model``), trains (a ``Trainable``) or both; ``registry`` hands each side only the kinds it can run.
KINDS: dict[str, type[Kind]] = {}


def register(cls: type[K]) -> type[K]:
    """Class decorator of a model kind: registers it under its ``kind`` (ValueError if another class has it,
    TypeError for a class that neither codes nor trains)."""
    if not issubclass(cls, (Model, Trainable)):
        raise TypeError(f"{cls.__name__} neither codes (Model) nor trains (Trainable): not a model kind")
    if KINDS.setdefault(cls.kind, cls) is not cls:
        raise ValueError(f"model kind {cls.kind!r} is registered twice ({KINDS[cls.kind].__name__}, {cls.__name__})")
    return cls


def no_effort(kind: str) -> str:
    """What an encoder effort asked of a kind that is not ``Effortful`` is told."""
    return f"model kind {kind!r} has no encoder effort: it codes at --effort 0 only"


class Kind(nn.Module, ABC):
    """What every kind has, whether it codes, trains or both: its name, its architecture and its quality levels.
    Used by the registry, the weights store (``from_arch`` on a manifest entry, ``half_stored`` when saving) and
    training's checkpoints (``arch_dict``)."""

    #: Manifest ``kind`` of this class.
    kind: ClassVar[str]
    #: Parameter-name prefixes that shipped weights (and the GPU sprint's checkpoints) may store in fp16.
    half_stored: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def from_arch(cls, arch: dict[str, Any]) -> Kind:
        """A fresh model from its manifest (or checkpoint) ``arch`` entry."""

    @abstractmethod
    def arch_dict(self) -> dict[str, Any]:
        """What ``from_arch`` needs to rebuild this model (stored in manifests and checkpoints)."""

    @property
    def device(self):
        return next(self.parameters()).device

    @property
    @abstractmethod
    def levels(self) -> int:
        """Quality levels: the model codes qualities in [1, levels], at the first ``levels`` λs of
        ``quality.LAMBDAS``."""


K = TypeVar("K", bound=Kind)


class Trainable(Kind):
    """A kind ``codec.training`` trains (``train``, ``export``'s checkpoints, the GPU sprint): all it asks of a
    model. A kind that only trains implements this alone; training codes (validation with ``--val``,
    ``--entropy-only``'s latents, ``export``) only for a kind that is also a ``Model``."""

    #: Parameter-name prefixes of the entropy model's own networks (not in a hyperprior's weights):
    #: training may give them their own learning rate while they catch up with trained transforms.
    context_params: ClassVar[tuple[str, ...]] = ()
    #: Parameters with one row per quality level (log gains): training moves them to another
    #: ladder or level count (``quality.remap_levels``). Empty: the level count is in no parameter's shape.
    level_params: ClassVar[tuple[str, ...]] = ()
    #: Buffers derived from ``level_params`` (frozen gains), dropped after such a move (``build_tables``
    #: rebuilds them).
    level_tables: ClassVar[tuple[str, ...]] = ()
    #: Parameter-name prefixes trained by ``aux_loss`` alone (CompressAI's quantiles): training gives them
    #: their own optimizer group at a fixed LR and leaves them out of the weight average.
    aux_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def default_arch(cls) -> dict[str, Any]:
        """The architecture a new run gets (``train --arch KEY=VALUE`` overrides its keys)."""

    @classmethod
    @abstractmethod
    def with_levels(cls, arch: dict[str, Any], levels: int) -> dict[str, Any]:
        """``arch`` with ``levels`` quality levels (``train --levels``; a checkpoint or shipped weights with
        fewer levels are compared with the run's at its count)."""

    @abstractmethod
    def forward(self, x: Tensor, quality: Tensor, autocast_dtype=None) -> dict:
        """Training pass: ``{"x_hat", "likelihoods": {name: tensor}, "aux"}`` for per-sample qualities
        (``quality`` (B,) in [1, levels]); the rate is the sum of -log2 of all likelihoods."""

    def aux_loss(self) -> Tensor | float:
        """Loss of the entropy models' own parameters, minimized alongside the R-D loss."""
        return 0.0

    def latent_rate(self, y: Tensor, quality: Tensor) -> dict[str, Tensor]:
        """Training likelihoods of a given latent ``y`` (no transforms), for fitting the entropy model
        alone on cached latents (``train --entropy-only``: a kind with ``context_params`` that also codes)."""
        raise NotImplementedError(f"model kind {self.kind!r} cannot train its entropy model alone")


class Model(Kind):
    """A kind that codes: all that coding (``codec.coding``: tiling, batch, decoding, jobs, effort), the API, the
    weights store and the container know of a network (the module docstring's four steps). The name every
    layer above uses for a coding model; a kind that also trains is a ``Trainable`` too, one whose encoder
    effort optimizes latents an ``Effortful`` too."""

    #: Input sides must be a multiple of this (the total downsampling of the whole network).
    stride: ClassVar[int]
    #: Pixels per latent pixel (the analysis transform's downsampling).
    latent_stride: ClassVar[int]
    #: Kinds that fit each image while coding it (``encode_latent`` runs an optimization, the overfitted
    #: codec): callers do not search a size by re-coding (each probe would fit again).
    fits_per_image: ClassVar[bool] = False
    #: False for kinds whose manifest entry is an ``arch`` only (no weights file: files carry their decoder).
    needs_weights: ClassVar[bool] = True
    #: Whether same-size files share a synthesis pass when decoded in batches (``codec.coding.decoding``); False
    #: for kinds whose files share nothing (each carries its own decoder).
    batches: ClassVar[bool] = True
    #: Context each side of a tile, in pixels (rounded up to ``stride`` by ``tiling``), that a tile's coding
    #: window includes: the part of the transforms' receptive field that matters for its pixels.
    tile_margin: ClassVar[int]

    @property
    def qualities(self) -> tuple[float, ...] | None:
        """None: the model codes every quality in [1, levels]. A model with one network per quality (trained
        elsewhere) codes only these."""
        return None

    def at(self, quality: float) -> Model:
        """The model that codes ``quality``: itself, or for a model with one network per quality that network
        (analysis and synthesis depend on it). Callers run ``analyze``, ``encode_latent``, ``decode_latent``
        and ``synthesize`` of one quality through it."""
        return self

    # -- tables ------------------------------------------------------------------------------
    @abstractmethod
    def build_tables(self) -> None:
        """Fit and quantize the entropy models from the parameters (export, validation), then ``prepare``."""

    @abstractmethod
    def prepare(self) -> Model:
        """Ready for coding on its current device: coder state from the stored tables, weight layouts.

        Raises RuntimeError when the tables are missing (call ``build_tables``) or unusable.
        """

    # -- coding ------------------------------------------------------------------------------
    @abstractmethod
    def analyze(self, x: Tensor) -> Tensor:
        """Latent ``y`` of ``x`` (B, 3, H, W) in [0, 1], sides multiples of ``stride``."""

    @abstractmethod
    def side_analysis(self, y: Tensor) -> Tensor:
        """The side information (hyper-latent) the model derives from ``y``, before any gain or rounding."""

    @abstractmethod
    def encode_latent(
        self, y: Tensor, quality: float, side: Tensor | None = None, settings: EncodeSettings = DEFAULT_SETTINGS
    ) -> list[Streams]:
        """Entropy-code ``y`` (B, C, h, w) at ``quality``: one ordered list of streams per image.

        ``side``, when given, replaces ``side_analysis(y)`` (an encoder may optimize it); ``settings``: this
        call's encoder settings (kinds that fit per image read them).
        """

    @abstractmethod
    def decode_latent(self, streams: list[Streams], shape: tuple[int, int], quality: float) -> Tensor:
        """ŷ (B, C, h, w), float32 on the CPU, from same-size images' streams and the latent size (h, w).

        Raises ValueError (or RuntimeError from the coder) on streams that cannot be valid.
        """

    @abstractmethod
    def synthesize(self, y_hat: Tensor) -> Tensor:
        """x̂ (B, 3, H, W) in [0, 1] of a latent; never raises on damaged latents (NaN/inf → 0/1)."""

    def encoder_steps(self, effort: int, iterations: int | None = None) -> int:
        """Iterations of ``codec.coding.effort``'s latent optimization for an ``effort`` level (0: none).

        ``iterations`` is for kinds that fit per image (they check it and return 0: their ``encode_latent``
        reads both from its ``settings``); others refuse it (ValueError), as a kind that is not ``Effortful``
        refuses an effort above 0.
        """
        effortful = isinstance(self, Effortful)
        if iterations is not None:
            raise ValueError(iterations_refused(Q.MAX_EFFORT if effortful else 0))
        steps = Q.effort_iterations(effort)
        if steps and not effortful:
            raise ValueError(no_effort(self.kind))
        return steps


class Effortful(ABC):
    """A coding kind whose latents ``codec.coding.effort`` can optimize per image (``--effort`` above 0): a
    differentiable rate and synthesis. Mixed into a ``Model``; a ``Model`` without it codes at effort 0 only."""

    @abstractmethod
    def gains(self, quality: float) -> tuple[Tensor, Tensor]:
        """(y scale, side scale), each (1, C, 1, 1): multiplied by them, one unit of ``y`` / the side
        latent is one quantization step at ``quality``, so one optimizer step size serves every quality."""

    @abstractmethod
    def relaxed_rd(self, y: Tensor, z: Tensor, quality: float, rounding: Callable[[Tensor], Tensor]) -> dict:
        """Differentiable rate of coding (``y``, side latent ``z``) at ``quality``, rounding with ``rounding``.

        ``rounding`` is applied to the scaled values whose integer part the coder writes:
        ``torch.round`` gives the hard (coded) latent, a soft rounding a relaxation to optimize.
        Returns ``bits`` (B,) for y and z together (a float rate model: the coder's quantized CDFs
        cost slightly more), ``y_hat`` (what ``synthesize`` would see) and ``z_hat``, un-scaled.
        """

    @abstractmethod
    def differentiable_synthesis(self, y_hat: Tensor) -> Tensor:
        """x̂ of ``y_hat`` with gradients (``synthesize`` runs in inference mode), not clamped."""
