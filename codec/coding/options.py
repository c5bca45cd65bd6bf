"""What a coding job takes: the options of ``encode`` and ``decode``, each declared once, here.

The command line's options are generated from these fields (``cli.options_from``), as ``train``'s are from
``TrainConfig``: a field's ``metadata`` holds its ``help`` and, where the option differs from the field's name
and type, its ``flag``, ``short`` flag, ``choices`` (``case_sensitive``), ``range`` (lo, hi; None for no
bound), ``type``; ``cli=False`` for fields the command sets itself. A bool field is a flag (``--force``).

Torch-free: the command's ``--help`` and its checks of the options run before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import AecError
from ..core.quality import (
    DEFAULT_QUALITY,
    MAX_EFFORT,
    Q_MAX,
    Q_MIN,
    check_quality,
    default_quality,
    effort_iterations,
)
from ..format import files
from ..format.bitstream import MAX_PIXELS
from ..weights.manifest import check_installed_quality

if TYPE_CHECKING:
    from ..weights.handle import Codec


#: Default tile side in pixels (``--tile``); images up to this size are coded as one tile (no margins at all).
TILE = 1024


def _opt(default: Any, help: str, **more: Any) -> Any:
    return field(default=default, metadata={"help": help, **more})


@dataclass(frozen=True)
class Options:
    """What every coding job takes; picklable, so a cluster's workers build the same coder from it.

    ``batch`` 0 is auto (``devices.BATCH`` on CUDA, 1 on CPU: resolved where the coder runs); ``threads``
    None leaves torch's default. ``since``: outputs that already hold exactly the bytes to be written and were
    modified at or after this time (the output filesystem's clock) count as written, not as existing: a batch
    that Ray retries after its worker died finds its own earlier writes. None (the local command) refuses them.
    """

    device: str = _opt("auto", "auto, cpu or cuda.")
    force: bool = _opt(False, "Overwrite existing outputs; write binary data to a terminal too.", short="-f")
    batch: int = _opt(
        0,
        "Images per network pass (same-size images share it); 0 = auto: 16 on CUDA, 1 on CPU, "
        "where batching measured no faster.",
    )
    threads: int | None = _opt(None, "CPU threads for the network [default: torch's].", type=int, range=(1, None))
    skip_existing: bool = _opt(False, "Skip inputs whose output exists (resume a job that stopped).")
    since: float | None = field(default=None, metadata={"cli": False})


@dataclass(frozen=True)
class EncodeOptions(Options):
    """An encode's options. ``quality`` None is the model's default (``quality.default_quality``); ``checked``
    resolves it, with the model, once: what comes out is passed down and not checked again (``is_checked``)."""

    quality: float | None = _opt(
        None,
        f"{Q_MIN:g} (fewest bits: 0.06 bpp on Kodak with the default model) to the model's top level "
        f"(best quality; 'aecodec models' lists each model's range, {Q_MAX:g} at most); fractions interpolate. "
        f"[default: {DEFAULT_QUALITY:g}, or the nearest a model with one network per quality has]",
        short="-q",
        type=float,
    )
    target_bpp: float | None = _opt(
        None,
        "Highest quality whose file is at most this many bits per pixel; exit 2 if even the lowest is above.",
        type=float,
    )
    max_bytes: int | None = _opt(
        None, "Highest quality whose file fits in this many bytes; exit 2 if none does.", type=int
    )
    model_id: str | None = _opt(
        None, "Model id (see 'aecodec models'; default: the installation's default).", flag="--model"
    )
    tile: int = _opt(
        TILE, "Tile side in pixels (a multiple of the model's stride, 64): larger images are coded in tiles."
    )
    effort: int = _opt(
        0,
        f"Encoder search, 0 to {MAX_EFFORT}: 0 is one pass; higher optimizes each image's latents longer "
        "(slower, smaller files, same decoder; -v prints the gain). --model overfit: a preset of --iterations.",
    )
    iterations: int | None = _opt(
        None,
        "--model overfit: fitting iterations per image (tile); default: the --effort preset.",
        type=int,
        range=(1, None),
    )
    is_checked: bool = field(default=False, repr=False, metadata={"cli": False})

    def checked(self, codec: Codec | None = None) -> EncodeOptions:
        """These options with the model resolved and the rate, effort and quality checked: against ``codec``'s
        model when given, else against the installation's (the default for None) without loading torch, so a
        bad option fails before any work. AecError, or ValueError for a quality the model lacks."""
        try:
            effort_iterations(self.effort)
        except ValueError as e:
            raise AecError(str(e)) from None
        self._check_rate()
        if codec is None:
            model_id, quality = check_installed_quality(self.quality, self.model_id)
        else:
            model, model_id = codec.model, codec.model_id
            asked = default_quality(model.qualities) if self.quality is None else self.quality
            quality = check_quality(asked, model.levels, model_id, model.qualities)
        return dataclasses.replace(self, model_id=model_id, quality=quality, is_checked=True)

    def _check_rate(self) -> None:
        """A size search takes one target, positive, and no fitting iterations (a fit codes one quality)."""
        check_targets(self.target_bpp, self.max_bytes)
        if self.searching and self.iterations is not None:
            raise AecError("iterations are for a quality (-q), not a target size")

    @property
    def searching(self) -> bool:
        return self.target_bpp is not None or self.max_bytes is not None


def check_targets(
    target_bpp: float | None, max_bytes: int | None, names: tuple[str, str] = ("target_bpp", "max_bytes")
) -> None:
    """At most one size target, each positive (and finite), named in the caller's words (a command's flags)."""
    bpp_name, bytes_name = names
    if target_bpp is not None and max_bytes is not None:
        raise AecError(f"give either {bpp_name} or {bytes_name}, not both")
    if target_bpp is not None and not 0 < target_bpp < math.inf:
        raise AecError(f"{bpp_name} must be positive and finite, got {target_bpp:g}")
    if max_bytes is not None and max_bytes < 1:
        raise AecError(f"{bytes_name} must be positive, got {max_bytes}")


#: The output formats ``--format`` names (``files.OUTPUT_FORMATS``' suffixes).
FORMAT_CHOICES = sorted({suffix[1:] for suffix in files.OUTPUT_FORMATS})


@dataclass(frozen=True)
class DecodeOptions(Options):
    fmt: str | None = _opt(
        None,
        "Output format, whatever the name says; for -o - (stdout, PNG otherwise) and default names.",
        flag="--format",
        choices=FORMAT_CHOICES,
        case_sensitive=False,
    )
    out_quality: int = _opt(
        files.DEFAULT_OUT_QUALITY, "Quality of lossy outputs (.jpg, .webp), on Pillow's 0-100 scale.", range=(0, 100)
    )
    drop_alpha: bool = _opt(False, "Allow writing an image with alpha to a format without it.")
    max_pixels: int = _opt(
        MAX_PIXELS,
        "Refuse larger images (width x height, padded to the model's stride) before allocating anything for them.",
        range=(1, None),
    )

    @property
    def suffix(self) -> str | None:
        return f".{self.fmt.lower()}" if self.fmt else None


def own_fields(cls: type[Options]) -> list[dataclasses.Field]:
    """The fields ``cls`` declares itself (not those of the class it extends) that the command offers as
    options, in declaration order."""
    parent = cls.__mro__[1]
    inherited = {f.name for f in dataclasses.fields(parent)} if dataclasses.is_dataclass(parent) else set()
    return [f for f in dataclasses.fields(cls) if f.name not in inherited and f.metadata.get("cli", True)]
