"""Models trained elsewhere and imported (``aecodec import compressai``): where they live and what they are called.

Torch-free, so ``aecodec models`` and the missing-weights message need no network stack. The import itself is
``codec.weights.importer``; the model kind is ``codec.models.zoo``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core import quality as Q

#: Overrides the user's models folder (as ``AECODEC_WEIGHTS`` does the shipped weights).
ENV = "AECODEC_MODELS"
#: The metrics CompressAI trains for, as its zoo spells them.
METRICS = ("mse", "ms-ssim")
#: Imported model ids: ``cai-<architecture>-<metric>``.
PREFIX = "cai-"

_AUTOREGRESSIVE = (
    "its context model predicts each latent from the ones decoded before it with a float network, so another "
    "machine can predict other tables and lose the rest of the image; coding it exactly needs an integer context "
    "model of this architecture with a wavefront decode, which is not built yet"
)
#: CompressAI zoo architectures this version refuses, and why (one line each).
REFUSED = {
    "mbt2018": _AUTOREGRESSIVE,
    "cheng2020-anchor": _AUTOREGRESSIVE,
    "cheng2020-attn": _AUTOREGRESSIVE,
    "mbt2018-vbr": _AUTOREGRESSIVE,
}
#: The variable-rate architectures (one network for every quality: imported without --quality).
VARIABLE_RATE = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr")


def user_models_dir() -> Path:
    """``$AECODEC_MODELS``, else ``$XDG_DATA_HOME/aecodec/models`` (``~/.local/share`` without it): imported
    weights go to the user's data folder, never into the installed package."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"  # the spec ignores relative ones
    return base / "aecodec" / "models"


def model_id(arch: str, metric: str) -> str:
    return f"{PREFIX}{arch}-{metric}"


def parse_id(model: str) -> tuple[str, str] | None:
    """(architecture, metric) of an imported model's id, None for any other id."""
    if not model.startswith(PREFIX):
        return None
    for metric in METRICS:
        if model.endswith(f"-{metric}") and len(model) > len(PREFIX) + len(metric) + 1:
            return model[len(PREFIX) : -len(metric) - 1], metric
    return None


def import_command(model: str, quality: float | None = None) -> str | None:
    """The command that brings an imported model (its network for our ``quality``, when given), None for ids
    that are not of an imported model."""
    parsed = parse_id(model)
    if parsed is None:
        return None
    arch, metric = parsed
    command = f"aecodec import compressai {arch} --metric {metric}"
    if arch in VARIABLE_RATE:
        return command
    try:
        return command + ("" if quality is None else f" --quality {Q.zoo_quality(quality)}")
    except ValueError:
        return command
