"""Pluggable models: the interface (``base``), the kind → class registry and the implementations."""

from .base import Model
from .registry import DEFAULT_KIND, KINDS, kind_of, model_class

__all__ = ["Model", "DEFAULT_KIND", "KINDS", "kind_of", "model_class"]
