"""Checkpoint → shipped weights (``aecodec export``): tables built here, manifest entry written."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core import quality as Q
from ..models.base import Model
from ..models.registry import DEFAULT_KIND, model_class
from ..weights.manifest import write_manifest_entry
from ..weights.store import save_weights
from .train import _without_tables, load_checkpoint


def model_from_checkpoint(path: str | Path, raw: bool = False) -> tuple[Model, dict]:
    """The checkpoint's model, tables built: its weight average (``train.WeightAverage``) where it kept
    one, unless ``raw``."""
    ck = load_checkpoint(Path(path))
    model = model_class(ck.get("kind", DEFAULT_KIND)).from_arch(ck["arch"])
    sd = _without_tables(ck["model"])
    if not raw and ck.get("ema"):
        sd.update({n: v.to(sd[n].dtype) for n, v in ck["ema"].items()})
    model.load_state_dict(sd, strict=False)
    model.eval()
    model.build_tables()
    return model, ck["state"]


def export(model: Model, model_id: str, folder: Path, half: bool, meta: dict, make_default: bool = True) -> dict:
    """Write ``folder/<model_id>.safetensors`` and its manifest entry; returns the entry."""
    model = model.cpu().eval()
    model.build_tables()  # raises if the model's exact path could overflow
    file = f"{model_id}.safetensors"
    digest = save_weights(model, folder / file, half=half)
    entry = {
        "file": file,
        "sha256": digest,
        "kind": model.kind,
        "arch": model.arch_dict(),
        "dtype": "float16" if half else "float32",
        **meta,
    }
    if "training" in meta:  # the λs the model was trained on: its own levels of the ladder
        entry["training"] = {**meta["training"], "lambdas": list(Q.ladder(model.levels))}
    write_manifest_entry(folder, model_id, entry, make_default)
    return entry


def checkpoint_meta(state: dict, train_dir: str | None = None, device: str | None = None) -> dict:
    return {
        "training": {
            "steps": state.get("step"),
            "seconds": round(state.get("seconds", 0.0)),
            "data": train_dir,
            "device": device,
            "validation": state.get("val", []),
        },
        "torch": torch.__version__,
    }
