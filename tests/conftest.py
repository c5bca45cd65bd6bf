"""Shared fixtures. Tests never need the shipped weights: they build a network from a fixed seed
(random weights live only inside tests) and export it to a temporary weights folder."""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)

#: Fixtures that make every test using them long (marker ``slow``: ``bash scripts/test.sh --slow`` runs them):
#: ``cluster`` starts a Ray cluster (tests/test_distributed.py).
SLOW_FIXTURES = {"cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests that use a fixture of ``SLOW_FIXTURES``, directly or through another fixture."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def test_weights(tmp_path_factory) -> str:
    """A weights folder holding a small seeded network, exported the way real weights are."""
    from tests.support import make_test_weights

    folder = tmp_path_factory.mktemp("weights")
    make_test_weights(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _use_test_weights(test_weights, tmp_path_factory, monkeypatch):
    """The test weights, and an empty folder of imported models (never the user's own)."""
    monkeypatch.setenv("AECODEC_WEIGHTS", test_weights)
    monkeypatch.setenv("AECODEC_MODELS", str(tmp_path_factory.getbasetemp() / "no-imported-models"))
    yield


def make_photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic image with edges and noise, more photo-like than uniform noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 80 * np.sin(xx / 17.0 + c + seed) * np.cos(yy / 23.0 - c) for c in range(3)], axis=-1)
    base[(xx + 2 * yy) % 97 < 30] += 40
    base += rng.normal(0, 6, base.shape)
    return base.clip(0, 255).astype(np.uint8)


@pytest.fixture
def photo_like():
    return make_photo_like


@pytest.fixture
def png(tmp_path, photo_like) -> Path:
    """An 80x48 photo-like PNG: the command-line tests' usual input."""
    path = tmp_path / "img.png"
    Image.fromarray(photo_like(48, 80)).save(path)
    return path


@pytest.fixture
def aec_file(tmp_path, photo_like) -> Path:
    """A 16x16 photo-like image coded at quality 4: ``a.aec``."""
    import codec

    path = tmp_path / "a.aec"
    path.write_bytes(codec.encode(photo_like(16, 16), quality=4))
    return path


def one_error_line(result, *fragments: str, code: int = 2) -> str:
    """The one ``aecodec:`` line a failed command printed, after checking there is exactly one, that it holds
    every fragment and that the exit status is ``code`` (a CliRunner result or a finished subprocess)."""
    status = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert status == code, (status, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aecodec: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def count_calls(monkeypatch, targets: dict[str, tuple[object, str]]) -> dict[str, int]:
    """Calls of each ``getattr(owner, name)`` of ``targets`` (key: (owner, name)), counted by key while the test
    runs: what the one-path tests (test_decode_path, test_encode_path) count."""
    counts = dict.fromkeys(targets, 0)

    def counting(key: str, fn):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    for key, (owner, name) in targets.items():
        monkeypatch.setattr(owner, name, counting(key, getattr(owner, name)))
    return counts


@pytest.fixture
def mixed_inputs(png, tmp_path, photo_like) -> tuple[Path, Path, Path]:
    """A batch with a bad input in the middle: (img.png, bad.png that is text, two.png)."""
    other = tmp_path / "two.png"
    Image.fromarray(photo_like(20, 20)).save(other)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    return png, bad, other


@pytest.fixture
def weights_copy(test_weights, tmp_path, monkeypatch) -> Path:
    """A private copy of the test weights folder, used by this test's codec (a fresh cache entry)."""
    folder = tmp_path / "weights"
    shutil.copytree(test_weights, folder)
    monkeypatch.setenv("AECODEC_WEIGHTS", str(folder))
    return folder


@pytest.fixture
def tiny_dir(tmp_path, photo_like) -> Path:
    """Three 64x96 images and a non-image file: --limit 2 must pick im0 and im1 only."""
    d = tmp_path / "tiny"
    d.mkdir()
    for i in range(3):
        Image.fromarray(photo_like(64, 96, seed=i)).save(d / f"im{i}.png")
    (d / "README.txt").write_text("not an image")
    return d


@pytest.fixture
def script():
    """Load one of ``scripts/*.py`` as a module (they are not a package): ``script("browser")``."""

    def load(name: str):
        path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
