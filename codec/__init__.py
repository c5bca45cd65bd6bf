"""aecodec: a learned image codec (GDN autoencoder + CompressAI hyperprior and rANS).

    >>> import codec
    >>> data = codec.encode(Image.open("photo.png"), quality=4)
    >>> image = codec.decode(data)

Importing the package registers the Pillow plugin for ``.aec`` files. It stays light (no torch, no
CompressAI): ``encode`` and ``decode`` load ``codec.api`` on first use, so the command line's help,
``info`` and usage errors answer in a fraction of a second.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .core.errors import AecError, FormatError
from .plugin import register as _register_plugin

if TYPE_CHECKING:
    from .api import decode, encode

# compressai 1.2.8 calls torch.jit.script at import time, which torch 2.14 flags as deprecated.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

__version__ = "0.1.0"
__all__ = ["encode", "decode", "AecError", "FormatError", "__version__"]
_LAZY = ("encode", "decode")


def __getattr__(name: str) -> Any:
    """``codec.encode`` / ``codec.decode`` import the network stack only when first used (PEP 562)."""
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_register_plugin()
