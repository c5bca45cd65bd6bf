"""The kind a manifest entry names, read without torch (``info``, ``models`` and the fitted kind's light decode
ask it before any network loads): the names of kinds, where ``registry`` maps them to classes."""

from __future__ import annotations

from ..core.errors import AecError

#: Kind of manifest entries written before kinds existed (v2-v4 weights: the gained hyperprior).
LEGACY_KIND = "gain-msh"


def kind_of(entry: dict) -> str:
    """The model kind a manifest entry names."""
    kind = entry.get("kind", LEGACY_KIND)
    if not isinstance(kind, str):
        raise AecError(f"manifest kind must be a string, got {kind!r}")
    return kind
