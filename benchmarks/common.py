"""Small helpers shared by the RD and speed benchmarks: image selection, weights and devices."""

from __future__ import annotations

import os
from pathlib import Path

from codec.bench import parse_floats  # noqa: F401  (re-exported for the benchmarks)
from codec.bench.report import json_text
from codec.core.devices import available, resolve_device
from codec.core.errors import AecError
from codec.core.quality import integer_qualities
from codec.training.data import image_files

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def select_images(data: str | Path, limit: int | None = None) -> list[Path]:
    """The first ``limit`` images of a folder in sorted order (all when ``limit`` is None)."""
    paths = image_files(data)
    return paths[:limit] if limit else paths


def use_weights(folder: str | Path | None) -> None:
    """Point ``codec.weights.store`` at ``folder`` (it reads ``$AECODEC_WEIGHTS`` on every load)."""
    if folder:
        os.environ["AECODEC_WEIGHTS"] = str(Path(folder).resolve())


#: What the --qualities options say when left out.
ALL_QUALITIES_HELP = "aecodec qualities [default: every integer quality of the model's range]."


def all_qualities(levels: int) -> list[float]:
    """Every integer quality of the range of a model with ``levels`` quality levels."""
    return integer_qualities(levels)


def devices(choice: str) -> list[str]:
    """Devices to run on: ``auto`` is every available one, so CPU and CUDA numbers land in one report."""
    if choice == "auto":
        return available()
    try:
        return [resolve_device(choice)]
    except AecError as e:
        raise SystemExit(str(e)) from None


def write_json(path: Path, data: dict) -> None:
    path.write_text(json_text(data))
