"""Files written by earlier versions with the shipped weights still decode to the same thing.

The fixtures (``tests/fixtures``, made by ``scripts/make_fixtures.py`` with the shipped default
weights) are real ``.aec`` files. Their decoded latent symbols must match exactly on every machine:
the entropy path is integer-exact by design. Pixels come from the float synthesis transform, which
runs in float32 only where ``engine.half_dtype`` is None (CPUs without native bf16); there they
must match bit for bit, elsewhere (bf16 on CPU, fp16 on CUDA) within 2 levels of the recorded image.
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
from codec import engine
from codec.testing import decoded_digests
from codec.weights import load_codec

FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = Path(__file__).parent.parent / "weights"
TABLE = json.loads((FIXTURES / "fixtures.json").read_text())


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("AECODEC_WEIGHTS", str(SHIPPED))
    return load_codec(TABLE["model"], "cpu")


@pytest.mark.parametrize("name", sorted(TABLE["files"]))
def test_fixture_decodes_as_recorded(name, shipped):
    want = TABLE["files"][name]
    data = (FIXTURES / name).read_bytes()
    got = decoded_digests(data, shipped)
    assert got["symbols_sha256"] == want["symbols_sha256"]
    assert (got["mode"], got["size"]) == (want["mode"], want["size"])
    reference = Image.open(FIXTURES / name.replace(".aec", ".png"))
    assert hashlib.sha256(reference.tobytes()).hexdigest() == want["pixels_sha256"]  # the fixture itself
    if engine.half_dtype(torch.device("cpu")) is None:
        assert got["pixels_sha256"] == want["pixels_sha256"]
    else:
        decoded = np.asarray(codec.decode(data, codec=shipped), dtype=np.int16)
        assert np.abs(decoded - np.asarray(reference, dtype=np.int16)).max() <= 2


def test_info_describes_a_version_2_file(shipped):
    from click.testing import CliRunner

    from codec.cli import main

    result = CliRunner().invoke(main, ["info", str(FIXTURES / "tiled-130x70.aec")])
    assert result.exit_code == 0, result.output
    for line in ("format version: 2", "model kind:     gain-msh", "tiles:          6 of 64 px", "2 per tile"):
        assert line in result.output
