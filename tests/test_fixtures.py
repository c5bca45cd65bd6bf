"""Files written by earlier versions with the shipped weights still decode to the same thing.

The fixtures (``tests/fixtures`` with the first default weights, ``tests/fixtures/MODEL_ID/`` for later
ones; made by ``scripts/make_fixtures.py``) are real ``.aec`` files. Their decoded latent symbols must
match exactly on every machine: the entropy path is integer-exact by design. Pixels come from the
float synthesis transform, whose kernels differ between CPUs and thread counts (float32 on an AVX-512
machine differed from the recorded pixels with one thread, not with two): they must be within 1 level
of the recorded image where the transforms run in float32 (``engine.half_dtype`` None), within 2 in
bf16 on CPU or fp16 on CUDA.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec.core import engine
from codec.weights.handle import Codec
from codec.weights.store import load_codec
from tests.support import decoded_digests

FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = Path(__file__).parent.parent / "weights"
SETS = {p.parent: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("**/fixtures.json"))}
TABLE = SETS[FIXTURES]  # version 2 files of the first default weights


def load_shipped(model_id: str, monkeypatch) -> Codec:
    monkeypatch.setenv("AECODEC_WEIGHTS", str(SHIPPED))
    return load_codec(model_id, "cpu")


@pytest.fixture
def shipped(monkeypatch):
    return load_shipped(TABLE["model"], monkeypatch)


@pytest.mark.parametrize(
    "folder, name",
    [(folder, name) for folder, table in SETS.items() for name in sorted(table["files"])],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_fixture_decodes_as_recorded(folder, name, monkeypatch):
    table = SETS[folder]
    shipped = load_shipped(table["model"], monkeypatch)
    want = table["files"][name]
    data = (folder / name).read_bytes()
    got = decoded_digests(data, shipped)
    assert got["symbols_sha256"] == want["symbols_sha256"]
    assert (got["mode"], got["size"]) == (want["mode"], want["size"])
    reference = Image.open(folder / name.replace(".aec", ".png"))
    assert hashlib.sha256(reference.tobytes()).hexdigest() == want["pixels_sha256"]  # the fixture itself
    tolerance = 1 if engine.half_dtype(torch.device("cpu")) is None else 2
    decoded = np.asarray(codec.decode(data, codec=shipped), dtype=np.int16)
    assert np.abs(decoded - np.asarray(reference, dtype=np.int16)).max() <= tolerance


def test_info_describes_a_version_2_file(shipped):
    from click.testing import CliRunner

    from codec.cli import main

    result = CliRunner().invoke(main, ["info", str(FIXTURES / "tiled-130x70.aec")])
    assert result.exit_code == 0, result.output
    for line in ("format version: 2", "model kind:     gain-msh", "tiles:          6 of 64 px", "2 per tile"):
        assert line in result.output


@pytest.mark.parametrize("folder", [f for f, t in SETS.items() if f != FIXTURES], ids=lambda f: f.name)
def test_info_describes_each_later_file(folder, monkeypatch):
    """Later sets carry their model's kind and the format version it writes (3: any number of streams)."""
    from click.testing import CliRunner

    from codec.cli import main
    from codec.weights.manifest import model_kind

    load_shipped(SETS[folder]["model"], monkeypatch)
    result = CliRunner().invoke(main, ["info", str(folder / "tiled-130x70.aec")])
    assert result.exit_code == 0, result.output
    kind = model_kind(SETS[folder]["model"])
    for line in ("format version: 3", f"model kind:     {kind}", "tiles:          6 of 64 px"):
        assert line in result.output
