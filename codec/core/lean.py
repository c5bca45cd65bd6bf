"""Start-up cost of a command-line run: import only the parts of CompressAI the codec uses.

``compressai/__init__.py`` imports every subpackage. Its point-cloud datasets and transforms pull in
torch_geometric (and with it ``torch._dynamo``) and torchvision, and its entropy models import
``scipy.stats``, which only ``update()`` (building tables: export and training) calls. None of them
is needed to encode or decode, yet together they cost about as much as ``import torch`` itself.
``import_compressai_lean`` defers them; only the command line calls it, for encode and decode.
"""

from __future__ import annotations

import importlib
import sys
import types

#: Loaded on first attribute access instead of at import: nothing on the coding path touches them.
DEFERRED = ("compressai.datasets", "compressai.transforms", "scipy.stats")
#: compressai's registry of torchvision/torch_geometric transforms, read only by its training tools.
TRANSFORM_REGISTRY = "compressai.registry.transforms"


class _Deferred(types.ModuleType):
    """A placeholder module that imports the real one the first time one of its names is asked for.

    Dunder probes (``__file__``, ``__loader__``...), which libraries make on every module in
    ``sys.modules`` (torch does at import), answer "absent" instead; ``__path__`` and ``__all__``,
    which importing a submodule or ``*`` needs, load the real module.
    """

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr not in ("__path__", "__all__"):
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _transform_registry() -> types.ModuleType:
    """Same names as compressai's, but starting empty: transforms registered later are still kept."""
    module = types.ModuleType(TRANSFORM_REGISTRY)
    module.TRANSFORMS = {}

    def register_transform(name: str):
        def decorator(cls):
            module.TRANSFORMS[name] = cls
            return cls

        return decorator

    module.register_transform = register_transform
    module.__all__ = ["TRANSFORMS", "register_transform"]
    return module


def import_compressai_lean() -> None:
    """Install the placeholders, unless CompressAI is already imported (then there is nothing to save)."""
    if "compressai" in sys.modules:
        return
    for name in DEFERRED:
        sys.modules.setdefault(name, _Deferred(name))
    sys.modules.setdefault(TRANSFORM_REGISTRY, _transform_registry())
