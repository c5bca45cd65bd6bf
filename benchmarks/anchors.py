"""Published Kodak curves (CompressAI's results format), drawn dashed and put in the BD-rate tables of Kodak runs."""

from __future__ import annotations

import json
from pathlib import Path

from codec.bench.report import with_db

#: Published Kodak curves drawn by default (file stems in the anchors folder); the rest only with "all".
DEFAULT_ANCHORS = (
    "jpeg",
    "webp",
    "jpeg2000",
    "bpg_444_x265_ycbcr",
    "av1",
    "vtm",
    "compressai-bmshj2018-hyperprior_mse_cuda",
    "compressai-mbt2018-mean_mse_cuda",
    "mbt2018-mean-vbr-ans",
    "compressai-cheng2020-anchor_mse_cuda",
    "ELIC-paper",
    "TCM-large",
    "DCAE",
)


def load_anchors(folder: Path, which: str = "default") -> dict[str, dict]:
    """Published curves from CompressAI-format JSON files, keyed by a short label; unreadable files skipped."""
    files = sorted(folder.glob("*.json"))
    if which == "default":
        chosen = [folder / f"{s}.json" for s in DEFAULT_ANCHORS if (folder / f"{s}.json").exists()]
        files = chosen or files
    out = {}
    for f in files:
        try:
            res = json.loads(f.read_text())["results"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if "bpp" in res and "psnr-rgb" in res:
            label = f.stem.removeprefix("compressai-").removesuffix("_cuda")
            out[label] = with_db(res)
    return out
