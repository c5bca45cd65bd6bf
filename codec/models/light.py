"""Kinds whose files decode without torch: the kind → its torch-free decoding model, imported on first use.

Importing a kind's torch model (``registry``) costs importing torch, 1.6 s of CPU, ten times the decode of a
fitted 768×512 file. A kind listed here gives ``codec.weights.store.load_decoder_for`` an object with what the
decode path reads of a model (``stride``, ``latent_stride``, ``tile_margin``, ``levels``, ``qualities``, ``at``,
``decode_latent``, ``synthesize``, ``needs_weights``) on numpy arrays, when its ``available()`` says it runs
here; otherwise the kind's torch model decodes, as for every other kind.
"""

from __future__ import annotations

import importlib
from typing import Any

#: kind → (module, class) of its torch-free decoding model; the module's ``available()`` says whether it runs.
DECODERS = {"overfit": ("codec.models.overfit.fast", "FastModel")}


def light_decoder(kind: str) -> Any | None:
    """The torch-free decoding model class of ``kind``, None when it has none (or its extension is not built)."""
    where = DECODERS.get(kind)
    if where is None:
        return None
    module = importlib.import_module(where[0])
    return getattr(module, where[1]) if module.available() else None
