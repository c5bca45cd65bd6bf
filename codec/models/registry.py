"""Model kinds: the manifest's ``kind`` of a weights entry → the class that runs it.

A new model is one line here (and its own module); nothing else in the codec names model classes.
"""

from __future__ import annotations

from ..errors import AecError
from .base import Model
from .hyperprior import GainHyperprior

#: Kind of manifest entries written before kinds existed (v2-v4 weights).
DEFAULT_KIND = GainHyperprior.kind
KINDS: dict[str, type[Model]] = {cls.kind: cls for cls in (GainHyperprior,)}


def kind_of(entry: dict) -> str:
    """The model kind a manifest entry names."""
    kind = entry.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str):
        raise AecError(f"manifest kind must be a string, got {kind!r}")
    return kind


def model_class(kind: str) -> type[Model]:
    try:
        return KINDS[kind]
    except KeyError:
        raise AecError(f"unknown model kind {kind!r} (this version knows {', '.join(sorted(KINDS))})") from None
