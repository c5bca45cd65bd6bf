"""`pip install .` gives a working tool: the wheel carries the shipped weights and runs outside the checkout.

Everything is offline: the wheel is built without build isolation and installed with ``--no-index --no-deps``
into a fresh virtual environment that sees this interpreter's packages (torch, CompressAI, Pillow) through a
``.pth`` line, never the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "_aecodec_start.py", "codec", "weights")


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``bin`` folder of a fresh venv with the wheel built from a copy of the sources installed."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.tmp"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", root / "dist", src])
    (wheel,) = (root / "dist").glob("aecodec-*.whl")
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert "codec/weights/manifest.json" in names
    assert {f"codec/weights/{m['file']}" for m in manifest["models"].values()} <= names  # every model it lists

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not the checkout
    _run([*pip, "--python", python, "install", "--no-index", "--no-deps", "-q", wheel])
    return venv / "bin"


def test_installed_wheel_encodes_and_decodes_offline(installed, tmp_path, photo_like):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(photo_like(40, 72)).save(elsewhere / "photo.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AECODEC_WEIGHTS", "VIRTUAL_ENV")}
    run = {"cwd": elsewhere, "env": env}
    where = _run([installed / "python", "-c", "import codec.weights as w; print(w.weights_dir())"], **run)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout  # package data, not the repo
    _run([installed / "aecodec", "encode", "photo.png"], **run)
    (elsewhere / "photo.png").rename(elsewhere / "original.png")
    _run([installed / "aecodec", "decode", "photo.aec"], **run)
    with Image.open(elsewhere / "photo.png") as im:
        assert im.size == (72, 40)


def test_installed_compare_and_bench_work_outside_the_checkout(installed, tmp_path, photo_like):
    """`compare` and `bench` are commands of the package, not of `benchmarks/` in the repository."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate(((48, 64), (40, 56))):
        Image.fromarray(photo_like(h, w, seed=i)).save(photos / f"p{i}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AECODEC_WEIGHTS", "VIRTUAL_ENV")}
    run = {"cwd": tmp_path, "env": env}
    _run([installed / "aecodec", "compare", "photos/p0.png", "-q", "2", "--codecs", "jpeg", "-o", "page.html"], **run)
    page = (tmp_path / "page.html").read_text()
    assert page.count("data:image/png;base64,") >= 3  # original, aecodec, JPEG
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    _run(
        [
            installed / "aecodec",
            "bench",
            "photos",
            "-q",
            "2",
            "--codecs",
            "jpeg",
            "--pillow-qualities",
            "30,80",
            "-o",
            "out",
            "--quiet",
        ],
        **run,
    )
    table = json.loads((tmp_path / "out" / "rd.json").read_text())
    assert set(table["codecs"]) == {"aecodec", "jpeg"} and len(table["images"]) == 2
    for name in ("rd.png", "rd.csv", "rd_per_image.csv", "bdrate.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
