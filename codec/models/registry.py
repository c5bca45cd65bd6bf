"""Model kinds: the manifest's ``kind`` of a weights entry → the class that runs it.

Each kind registers itself (``base.register``, a class decorator); importing this module imports the
shipped kinds' modules so that they have. A new kind is its own module plus its import line here; nothing
else in the codec names model classes.
"""

from __future__ import annotations

from ..core.errors import AecError
from ..weights.manifest import LEGACY_KIND, kind_of  # noqa: F401  (kind_of re-exported: reading kinds needs no torch)
from . import context, hyperprior, zoo, zoo_vbr  # noqa: F401  (they register their kinds)
from .base import KINDS, Model
from .overfit import model  # noqa: F401  (registers the fitted kind)

#: Kind of manifest entries written before kinds existed (v2-v4 weights).
DEFAULT_KIND = LEGACY_KIND
assert DEFAULT_KIND in KINDS, "the legacy kind must stay registered: v2-v4 weights name no kind"


def model_class(kind: str) -> type[Model]:
    try:
        return KINDS[kind]
    except KeyError:
        raise AecError(f"unknown model kind {kind!r} (this version knows {', '.join(sorted(KINDS))})") from None
