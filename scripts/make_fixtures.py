"""Write decode fixtures: small ``.aec`` files made with shipped weights, the digests of what they decode
to (``fixtures.json``) and the decoded images as PNG.

``python scripts/make_fixtures.py`` wrote ``tests/fixtures/`` once, with the version 2 encoder and the
then default hyperprior weights; ``python scripts/make_fixtures.py --model ID`` writes
``tests/fixtures/ID/`` for another shipped model (the context model's files: format version 3). Each
set is made once (the script refuses to overwrite one) and committed: the files stand for "what
earlier versions wrote", which every later decoder must still read to the same latent symbols and
pixels (``tests/test_fixtures.py``). Inputs are crops of ``scripts/sample.png``, so the script needs
nothing outside the repository.

``python scripts/make_fixtures.py --overfit`` writes ``tests/fixtures/overfit/``: fitted files (they carry
their decoder, no weights) and ``digests.json``, the sha256 of the latent grids the torch reference decodes
from each tile and of the decoded pixels (``tests/test_overfit_decode.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import codec  # noqa: E402
from codec.weights.store import load_codec  # noqa: E402
from tests.support import decoded_digests  # noqa: E402

OUT = ROOT / "tests" / "fixtures"


def inputs() -> dict[str, tuple[Image.Image, float, int]]:
    """name → (image, quality, tile side): RGB, grey, RGBA (alpha plane) and a tiled image."""
    sample = Image.open(ROOT / "scripts" / "sample.png").convert("RGB")
    rgba = sample.crop((200, 100, 240, 132)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(0, 240, 6, dtype=np.uint8), (32, 1)), "L"))
    return {
        "rgb-48x40": (sample.crop((100, 80, 148, 120)), 4.0, codec.coding.tiling.TILE),
        "gray-40x32": (sample.crop((20, 30, 60, 62)).convert("L"), 6.5, codec.coding.tiling.TILE),
        "rgba-40x32": (rgba, 2.0, codec.coding.tiling.TILE),
        "tiled-130x70": (sample.crop((150, 60, 280, 130)), 3.0, 64),
    }


def main(model_id: str | None = None) -> None:
    out = OUT / model_id if model_id else OUT
    if (out / "fixtures.json").exists():
        sys.exit(f"{out} already holds fixtures: they stand for files earlier versions wrote, keep them")
    c = load_codec(model_id)
    out.mkdir(parents=True, exist_ok=True)
    table = {"model": c.model_id, "files": {}}
    for name, (image, quality, tile) in inputs().items():
        data = codec.encode(image, quality, codec=c, tile=tile)
        (out / f"{name}.aec").write_bytes(data)
        codec.decode(data, codec=c).save(out / f"{name}.png")
        table["files"][f"{name}.aec"] = decoded_digests(data, c)
    (out / "fixtures.json").write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")


def overfit() -> None:
    """The fitted kind's fixtures: one tile, and three tiles of 32 px (fits of a few seconds)."""
    import hashlib

    from tests.support import OVERFIT_ID, fitted_grid_digest

    out = OUT / "overfit"
    if (out / "digests.json").exists():
        sys.exit(f"{out} already holds fixtures: they stand for files earlier versions wrote, keep them")
    sample = Image.open(ROOT / "scripts" / "sample.png").convert("RGB")
    cases = {
        "fitted-48x40": (sample.crop((100, 80, 148, 120)), 6.0, 1024, 150),
        "fitted-tiled-70x23": (sample.crop((150, 60, 220, 83)), 4.0, 32, 60),
    }
    out.mkdir(parents=True, exist_ok=True)
    table = {}
    for name, (image, quality, tile, iterations) in cases.items():
        data = codec.encode(image, quality, model=OVERFIT_ID, tile=tile, iterations=iterations)
        (out / f"{name}.aec").write_bytes(data)
        decoded = codec.decode(data)
        table[f"{name}.aec"] = {
            "size": list(decoded.size),
            "grids_sha256": fitted_grid_digest(data),
            "pixels_sha256": hashlib.sha256(decoded.tobytes()).hexdigest(),
        }
    (out / "digests.json").write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write decode fixtures of shipped weights (once per model).")
    parser.add_argument("--model", help="a shipped model id: writes tests/fixtures/ID/ [default: tests/fixtures/]")
    parser.add_argument("--overfit", action="store_true", help="write the fitted kind's: tests/fixtures/overfit/")
    args = parser.parse_args()
    overfit() if args.overfit else main(args.model)
