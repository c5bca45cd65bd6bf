"""Model kinds: the manifest's ``kind`` of a weights entry → the class that runs it.

A new model is one line here (and its own module); nothing else in the codec names model classes.
"""

from __future__ import annotations

from ..core.errors import AecError
from ..weights.manifest import LEGACY_KIND, kind_of  # noqa: F401  (kind_of re-exported: reading kinds needs no torch)
from .base import Model
from .context import ContextModel
from .hyperprior import GainHyperprior
from .overfit.model import OverfitModel
from .zoo import ZooModel

KINDS: dict[str, type[Model]] = {cls.kind: cls for cls in (GainHyperprior, ContextModel, OverfitModel, ZooModel)}
#: Kind of manifest entries written before kinds existed (v2-v4 weights).
DEFAULT_KIND = LEGACY_KIND
assert DEFAULT_KIND in KINDS, "the legacy kind must stay registered: v2-v4 weights name no kind"


def model_class(kind: str) -> type[Model]:
    try:
        return KINDS[kind]
    except KeyError:
        raise AecError(f"unknown model kind {kind!r} (this version knows {', '.join(sorted(KINDS))})") from None
