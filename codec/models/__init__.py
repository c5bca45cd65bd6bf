"""Pluggable models: the interface (``base``), the kind → class registry and the implementations.

The names below load on first use, so that a submodule that needs no torch (the fitted kind's compiled
decoder, ``overfit.fast``) imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Model
    from .registry import DEFAULT_KIND, KINDS, kind_of, model_class

__all__ = ["Model", "DEFAULT_KIND", "KINDS", "kind_of", "model_class"]


def __getattr__(name: str) -> Any:
    if name == "Model":
        from .base import Model

        return Model
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
