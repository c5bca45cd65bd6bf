"""One decode path: every entry (the one-image API, the batch API, the command) parses, loads and checks each
file once, and a fitted file's command decodes without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec.coding import batch, decoding
from codec.format import bitstream as bs
from codec.weights.store import load_codec
from tests.conftest import count_calls, one_error_line
from tests.test_hostile import run

FITTED = Path(__file__).parent / "fixtures" / "overfit"
#: What a fitted file's command must not import: each costs a second or more of start-up.
HEAVY = {"torch", "compressai", "torchvision"}


@pytest.mark.parametrize("name, device", [("fitted-48x40.aec", "auto"), ("fitted-tiled-70x23.aec", "cuda")])
def test_fitted_file_decodes_without_torch(name, device, tmp_path):
    """Pixels identical to the kind's torch model's; on the CPU whatever ``--device`` says (CUDA or not)."""
    src, out = FITTED / name, tmp_path / "out.png"
    proc, names = _imported_run(["decode", str(src), "-o", str(out), "--device", device], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in names and not names & HEAVY, names & HEAVY  # the listing worked; no torch on the way
    import torch

    torch_model = load_codec("overfit")  # the torch path: the fitted kind's torch model
    assert isinstance(torch_model.model, torch.nn.Module)
    reference = codec.decode(src.read_bytes(), codec=torch_model)
    with Image.open(out) as decoded:
        assert decoded.mode == reference.mode and np.array_equal(np.asarray(decoded), np.asarray(reference))


def test_decoding_an_image_says_it_is_not_an_aec_file(png, tmp_path):
    """``decode photo.png`` (whose default output is the input itself) is told what it is, without torch."""
    proc, names = _imported_run(["decode", str(png)], tmp_path)
    one_error_line(proc, f"{png.name}: not an .aec file")
    assert "click" in names and not names & HEAVY, names & HEAVY


def _imported_run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """A CLI run in its own process with its stderr less the import lines, and the top-level packages it
    imported (``-X importtime`` lists every module)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "codec.cli", *args], capture_output=True, text=True, cwd=cwd
    )
    lines = proc.stderr.splitlines()
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    proc.stderr = "".join(f"{line}\n" for line in lines if not line.startswith("import time:"))
    return proc, names


@pytest.fixture
def counted(monkeypatch) -> dict[str, int]:
    """Calls of the three steps that happen once per file: parse, model load, check against the model."""
    targets = {
        "unpack": (bs, "unpack"),
        "load": (decoding, "load_decoder_for"),
        "check": (decoding, "check_fits_model"),
    }
    return count_calls(monkeypatch, targets)


@pytest.fixture
def coded_files(photo_like, tmp_path) -> list[Path]:
    """Two files of the default model (one of them tiled) and the two fitted fixtures."""
    c = load_codec()
    datas = [
        codec.encode(photo_like(40, 48), quality=3, codec=c),
        codec.encode(photo_like(70, 90), 5, codec=c, tile=64),
    ]
    paths = [tmp_path / f"{i}.aec" for i in range(len(datas))]
    for path, data in zip(paths, datas, strict=True):
        path.write_bytes(data)
    return paths + sorted(FITTED.glob("*.aec"))


def test_one_image_api_parses_loads_and_checks_once(coded_files, counted):
    for path in coded_files:
        codec.decode(path.read_bytes())
    assert counted == {key: len(coded_files) for key in counted}


def test_batch_api_parses_loads_and_checks_once_per_file(coded_files, counted):
    images = batch.decode_images([p.read_bytes() for p in coded_files], batch=4)
    assert len(images) == len(coded_files)
    assert counted == {key: len(coded_files) for key in counted}


def test_command_parses_loads_and_checks_once_per_file(coded_files, counted, tmp_path):
    result = run("decode", *coded_files, "-o", f"{tmp_path}/out/")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "out").iterdir())) == len(coded_files)
    assert counted == {key: len(coded_files) for key in counted}
