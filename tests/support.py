"""A seeded random network for the tests, the fuzzer and the fixture scripts (``from tests.support import ...``):
outside ``codec/``, so the wheel never ships it (the real weights live in weights/)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TypeVar

import torch

from codec.models.hyperprior import Arch, GainHyperprior
from codec.models.overfit.model import OverfitModel
from codec.training.export import export, write_manifest_entry

TEST_MODEL_ID = "test-model"
#: The id of the overfitted kind in the shipped manifest (and in test weights folders).
OVERFIT_ID = "overfit"
#: Quality levels of the test model: as many as the shipped v2-v4 weights, fewer than the longest
#: ladder, so the tests see a model whose range stops below ``quality.LEVELS``.
TEST_LEVELS = 10
H = TypeVar("H", bound=GainHyperprior)


def make_test_weights(
    folder: Path,
    note: str = "seeded random network, tests only",
    cls: type[GainHyperprior] = GainHyperprior,
    model_id: str = TEST_MODEL_ID,
) -> None:
    """Export ``seeded_model(cls)`` to ``folder`` as ``model_id``, the way real weights are exported, beside
    the ``overfit`` entry (a kind without weights) as the shipped manifest has it."""
    export(seeded_model(cls), model_id, Path(folder), half=False, meta={"note": note})
    write_manifest_entry(Path(folder), OVERFIT_ID, OverfitModel.manifest_entry(), make_default=False)


def seeded_model(cls: type[H], levels: int = TEST_LEVELS) -> H:
    """The small seeded network (N=32, M=48) of a gained-hyperprior class.

    A random g_a outputs tiny latents (std ~0.05): the gains are widened so qualities 1..levels span a
    real rate range (about 0.1 to 8 bpp) and rate-control tests have something to search.
    """
    torch.manual_seed(1234)
    model = cls(Arch(N=32, M=48, levels=levels))
    with torch.no_grad():
        levels = torch.linspace(0, 1, model.arch.levels)[:, None]
        model.log_y_gain.copy_((math.log(5) + levels * math.log(100)).expand_as(model.log_y_gain))
        model.log_z_gain.copy_((math.log(20) + levels * math.log(10)).expand_as(model.log_z_gain))
    return model


def decoded_digests(data: bytes, codec) -> dict:
    """sha256 of what a file decodes to: its latent symbols (exact on every machine by design) and
    its pixels (exact only where the transforms run in float32; see ``engine.half_dtype``).

    Shared by ``scripts/make_fixtures.py``, which records them, and ``tests/test_fixtures.py``,
    which checks that files written by earlier versions still decode to the same thing.
    """
    from codec import api
    from codec.coding import tiling
    from codec.core.tensors import padded_size
    from codec.format import bitstream as bs

    f = bs.unpack(data)
    model = codec.model
    hp, wp = padded_size(f.height, f.width, model.stride)
    tiles = tiling.grid(f.height, f.width, f.tile or max(hp, wp), model.stride)
    symbols = hashlib.sha256()
    for t, streams in zip(tiles, f.streams, strict=True):
        lat = model.decode_symbols([streams], t.latent_size(model.latent_stride), f.quality)
        for sym in (lat.z_sym, lat.y_sym):
            symbols.update(sym.to(torch.int32).contiguous().numpy().astype("<i4").tobytes())
    image = api.decode(data, codec=codec)
    return {
        "mode": image.mode,
        "size": list(image.size),
        "symbols_sha256": symbols.hexdigest(),
        "pixels_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
    }


def fitted_grid_digest(data: bytes) -> str:
    """sha256 of the latent grids of a fitted (``overfit``) file, every tile's, as the torch reference decodes
    them (int32 little-endian, tiles in raster order, grids finest first): what ``scripts/make_fixtures.py
    --overfit`` records and the compiled decoder must reproduce."""
    from codec.coding import tiling
    from codec.format import bitstream as bs
    from codec.models.overfit import coding
    from codec.models.overfit.network import Arch, grid_sizes

    f = bs.unpack(data)
    arch = Arch.from_dict(OverfitModel.default_arch())
    tiles = tiling.grid(f.height, f.width, f.tile or max(f.height, f.width), OverfitModel.stride)
    digest = hashlib.sha256()
    for t, (params, grids) in zip(tiles, f.streams, strict=True):
        decoder = coding.decode_params(params, arch)
        sizes = grid_sizes(t.y1 - t.y0, t.x1 - t.x0, arch.grids)
        for g in coding.decode_grids(decoder, decoder.exact_arm(), grids, sizes):
            digest.update(g.to(torch.int32).numpy().astype("<i4").tobytes())
    return digest.hexdigest()
