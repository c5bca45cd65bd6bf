"""Shared fixtures. Tests never need the shipped weights: they build a network from a fixed seed
(random weights live only inside tests) and export it to a temporary weights folder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def test_weights(tmp_path_factory) -> str:
    """A weights folder holding a small seeded network, exported the way real weights are."""
    from codec.export import export
    from codec.model import AECModel, Arch

    torch.manual_seed(1234)
    folder = tmp_path_factory.mktemp("weights")
    model = AECModel(Arch(N=32, M=48))
    # A random g_a outputs tiny latents (std ~0.05): widen the gains so qualities 1..8 span a real
    # rate range (about 0.1 to 8 bpp) and rate-control tests have something to search.
    with torch.no_grad():
        levels = torch.linspace(0, 1, model.arch.levels)[:, None]
        model.log_y_gain.copy_((np.log(5) + levels * np.log(100)).expand_as(model.log_y_gain))
        model.log_z_gain.copy_((np.log(20) + levels * np.log(10)).expand_as(model.log_z_gain))
    export(model, "test-model", folder, half=False, meta={"note": "seeded random network, tests only"})
    return str(folder)


@pytest.fixture(autouse=True)
def _use_test_weights(test_weights, monkeypatch):
    monkeypatch.setenv("AECODEC_WEIGHTS", test_weights)
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
