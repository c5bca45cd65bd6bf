"""A seeded random network for tests and the fuzzer; never shipped (the real weights live in weights/)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .export import export
from .model import AECModel, Arch

TEST_MODEL_ID = "test-model"


def make_test_weights(folder: Path, note: str = "seeded random network, tests only") -> None:
    """Export a small seeded network to ``folder`` the way real weights are exported.

    A random g_a outputs tiny latents (std ~0.05): the gains are widened so qualities 1..10 span a
    real rate range (about 0.1 to 8 bpp) and rate-control tests have something to search.
    """
    torch.manual_seed(1234)
    model = AECModel(Arch(N=32, M=48))
    with torch.no_grad():
        levels = torch.linspace(0, 1, model.arch.levels)[:, None]
        model.log_y_gain.copy_((math.log(5) + levels * math.log(100)).expand_as(model.log_y_gain))
        model.log_z_gain.copy_((math.log(20) + levels * math.log(10)).expand_as(model.log_z_gain))
    export(model, TEST_MODEL_ID, Path(folder), half=False, meta={"note": note})
