"""Model kinds: the manifest's ``kind`` of a weights entry → the class that runs it.

Each kind registers itself (``base.register``, a class decorator); importing this module imports the
shipped kinds' modules so that they have. A new kind is its own module plus its import line here; nothing
else in the codec names model classes. Coding asks ``model_class`` (a kind that only trains is refused),
training ``trainable_class`` (a kind that only codes is refused).
"""

from __future__ import annotations

from ..core.errors import AecError
from . import context, hyperprior, zoo, zoo_vbr  # noqa: F401  (they register their kinds)
from .base import KINDS, Kind, Model, Trainable
from .kinds import LEGACY_KIND, kind_of  # noqa: F401  (kind_of re-exported: reading kinds needs no torch)
from .overfit import model  # noqa: F401  (registers the fitted kind)

#: Kind of manifest entries written before kinds existed (v2-v4 weights).
DEFAULT_KIND = LEGACY_KIND
assert DEFAULT_KIND in KINDS, "the legacy kind must stay registered: v2-v4 weights name no kind"


def kind_class(kind: str) -> type[Kind]:
    """The registered class of ``kind``, whatever it does (AecError for a kind this version does not know)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise AecError(f"unknown model kind {kind!r} (this version knows {', '.join(sorted(KINDS))})") from None


def model_class(kind: str) -> type[Model]:
    """The class that codes ``kind``: AecError for an unknown kind or one that only trains."""
    cls = kind_class(kind)
    if not issubclass(cls, Model):
        raise AecError(f"model kind {kind!r} only trains: it cannot code images")
    return cls


def trainable_class(kind: str) -> type[Trainable]:
    """The class that trains ``kind``: AecError for an unknown kind or one that only codes."""
    cls = kind_class(kind)
    if not issubclass(cls, Trainable):
        trains = ", ".join(sorted(k for k, c in KINDS.items() if issubclass(c, Trainable)))
        raise AecError(f"model kind {kind!r} is not trained here: it only codes (trainable kinds: {trains})")
    return cls
