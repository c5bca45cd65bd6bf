"""Small helpers shared by the RD and speed benchmarks: image selection, weights and devices."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from codec.data import image_files
from codec.devices import available, resolve_device
from codec.errors import AecError
from codec.quality import Q_MIN

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def select_images(data: str | Path, limit: int | None = None) -> list[Path]:
    """The first ``limit`` images of a folder in sorted order (all when ``limit`` is None)."""
    paths = image_files(data)
    return paths[:limit] if limit else paths


def use_weights(folder: str | Path | None) -> None:
    """Point ``codec.weights`` at ``folder`` (it reads ``$AECODEC_WEIGHTS`` on every load)."""
    if folder:
        os.environ["AECODEC_WEIGHTS"] = str(Path(folder).resolve())


#: What the --qualities options say when left out.
ALL_QUALITIES_HELP = "aecodec qualities [default: every integer quality of the model's range]."


def all_qualities(levels: int) -> list[float]:
    """Every integer quality of the range of a model with ``levels`` quality levels."""
    return [float(q) for q in range(int(Q_MIN), levels + 1)]


def parse_floats(text: str) -> list[float]:
    """``"1,2,4.5"`` → ``[1.0, 2.0, 4.5]``; the CLIs take sweeps as comma lists."""
    return [float(t) for t in text.split(",") if t.strip()]


def devices(choice: str) -> list[str]:
    """Devices to run on: ``auto`` is every available one, so CPU and CUDA numbers land in one report."""
    if choice == "auto":
        return available()
    try:
        return [resolve_device(choice)]
    except AecError as e:
        raise SystemExit(str(e)) from None


def finite_or_none(value):
    """JSON has no NaN/inf: write them as null (recursively through lists and dicts)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(finite_or_none(data), indent=2) + "\n")
