"""`pip install .` gives a working tool: the wheel carries the default weights and runs outside the checkout;
the companion ``aecodec-models`` (``packaging/aecodec-models``) adds the earlier models' weights.

Everything is offline: the wheels are built without build isolation and installed with ``--no-index --no-deps``
into a fresh virtual environment that sees this interpreter's packages (torch, CompressAI, Pillow) through a
``.pth`` line, never the repository. The companion goes into a folder of its own, put on ``PYTHONPATH`` only by
the test that wants it, so one environment serves both the lean and the complete installation.
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

from codec.weights.shipping import COMPANION, COMPANION_MODULE, MAIN, files_of

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "_aecodec_start.py", "codec", "weights", "packaging")
#: A file written with the v4 hyperprior (an earlier model, not the default): the companion's to decode.
OLD_FILE = REPO / "tests" / "fixtures" / "rgb-48x40.aec"
pytestmark = pytest.mark.slow  # wheel builds and fresh environments: the long tests

#: The most the aecodec wheel may weigh (issue 28: PyPI's usual limit is 100 MB; one model is ~17 MB packed).
LEAN_LIMIT_MB = 45


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


def _wheel_mb(wheel: Path) -> float:
    return wheel.stat().st_size / 1e6


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Both wheels, built from a copy of the sources: {distribution name: wheel}."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.tmp", "*.egg-info", "build")
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    _run([*pip, "-w", root / "dist", src])
    _run([*pip, "-w", root / "dist", src / "packaging" / "aecodec-models"])
    (lean,) = (root / "dist").glob("aecodec-[0-9]*.whl")
    (companion,) = (root / "dist").glob(f"{COMPANION.replace('-', '_')}-[0-9]*.whl")
    return {MAIN: lean, COMPANION: companion}


def test_wheels_split_the_weights(wheels):
    """The aecodec wheel: the manifest and the default model only (at most LEAN_LIMIT_MB); the companion: every
    other model's file; together every file the manifest lists. The README states both sizes."""
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    with zipfile.ZipFile(wheels[MAIN]) as z:
        lean = {n for n in z.namelist() if n.startswith("codec/weights/shipped/")}
    with zipfile.ZipFile(wheels[COMPANION]) as z:
        companion = {n for n in z.namelist() if n.startswith(f"{COMPANION_MODULE}/") and not n.endswith(".py")}
    default_file = manifest["models"][manifest["default"]]["file"]
    assert lean == {"codec/weights/shipped/manifest.json", f"codec/weights/shipped/{default_file}"}
    assert companion == {f"{COMPANION_MODULE}/{name}" for name in files_of(manifest, COMPANION)}
    with_files = {m["file"] for m in manifest["models"].values() if m.get("file") is not None}  # overfit: none
    assert {default_file, *files_of(manifest, COMPANION)} == with_files
    assert _wheel_mb(wheels[MAIN]) <= LEAN_LIMIT_MB
    readme = (REPO / "README.md").read_text()
    for dist, wheel in wheels.items():  # "the aecodec wheel (17 MB)": the figure, to the nearest MB
        stated = re.search(rf"`{dist}` wheel \((\d+) MB\)", readme)
        assert stated, f"README states no size for the {dist} wheel"
        assert abs(int(stated[1]) - _wheel_mb(wheel)) <= 1, (dist, _wheel_mb(wheel))


def test_wheel_has_every_module(wheels):
    """Every module of codec/ is in the wheel: a subpackage missing from pyproject's ``packages`` would not be."""
    with zipfile.ZipFile(wheels[MAIN]) as z:
        packed = set(z.namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "codec").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - packed == set()


@pytest.fixture(scope="module")
def installed(wheels, tmp_path_factory) -> Path:
    """The ``bin`` folder of a fresh venv with the aecodec wheel installed (the companion: ``companion``)."""
    venv = tmp_path_factory.mktemp("env") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not the checkout
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps", "-q", wheels[MAIN]])
    return venv / "bin"


@pytest.fixture(scope="module")
def companion(wheels, tmp_path_factory) -> Path:
    """A folder holding the installed companion, for ``PYTHONPATH``."""
    target = tmp_path_factory.mktemp("companion")
    _run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q", "--target", target, wheels[COMPANION]]
    )
    return target


def _outside_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point the installed command at the checkout."""
    drop = ("PYTHONPATH", "AECODEC_WEIGHTS", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def test_lean_install_refuses_an_old_file_in_one_line(installed, tmp_path):
    shutil.copy(OLD_FILE, tmp_path / "old.aec")
    proc = subprocess.run(
        [installed / "aecodec", "decode", "old.aec"], cwd=tmp_path, env=_outside_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("aecodec: old.aec: ") and "aec-gain-msh-128-192-v4" in line and COMPANION in line, line
    assert not (tmp_path / "old.png").exists()


def test_companion_decodes_the_old_file(installed, companion, tmp_path):
    shutil.copy(OLD_FILE, tmp_path / "old.aec")
    run = {"cwd": tmp_path, "env": _outside_env(PYTHONPATH=str(companion))}
    _run([installed / "aecodec", "decode", "old.aec"], **run)
    with Image.open(tmp_path / "old.png") as im:
        assert im.size == (48, 40)
    listed = json.loads(_run([installed / "aecodec", "models", "--json"], **run).stdout)
    assert all(row["present"] for row in listed), listed


def test_installed_wheel_encodes_and_decodes_offline(installed, tmp_path, photo_like):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(photo_like(40, 72)).save(elsewhere / "photo.png")
    run = {"cwd": elsewhere, "env": _outside_env()}
    where = _run([installed / "python", "-c", "import codec.weights.manifest as m; print(m.weights_dir())"], **run)
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
    run = {"cwd": tmp_path, "env": _outside_env()}
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
