"""The quality ladder per model (issue 13 §3): the global ladder is the longest, a model codes the
first ``levels`` of it, qualities above its top are refused, and shorter models are extended upward."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import codec
from codec.api import encode_array, encode_array_to_size
from codec.cli import main
from codec.core import quality as Q
from codec.format import bitstream as bs
from codec.models.hyperprior import GainHyperprior
from codec.weights.handle import Codec
from tests.support import OVERFIT_ID, TEST_LEVELS, TEST_MODEL_ID, seeded_model

SHIPPED = Path(__file__).parent.parent / "weights" / "manifest.json"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def long_codec() -> Codec:
    """The test network with the whole ladder (12 levels), tables built."""
    model = seeded_model(GainHyperprior, levels=Q.LEVELS).eval()
    model.build_tables()
    return Codec(model, "long-test-model", device=torch.device("cpu"))


def test_ladder_extends_the_shipped_one_upward():
    """q1..q10 keep the λ the shipped weights were trained on; the levels above double λ each."""
    for entry in json.loads(SHIPPED.read_text())["models"].values():
        if "training" not in entry:  # a kind without weights (overfit) was not trained
            continue
        levels = entry["arch"]["levels"]
        assert Q.ladder(levels) == tuple(entry["training"]["lambdas"])
    assert Q.LEVELS == len(Q.LAMBDAS) > 10 and Q.Q_MAX == Q.LEVELS
    assert [b / a for a, b in zip(Q.LAMBDAS[9:], Q.LAMBDAS[10:], strict=False)] == pytest.approx([2.0, 2.0])
    assert Q.lmbda(Q.DEFAULT_QUALITY) == 0.013
    with pytest.raises(ValueError, match="2 to 12"):
        Q.ladder(13)


def test_quality_range_is_the_models():
    assert Q.check_quality(11.5) == 11.5  # the longest ladder by default
    with pytest.raises(ValueError, match="between 1 and 10 for model m, got 11"):
        Q.check_quality(11, 10, "m")
    # The top quality of a model is its last level with weight 1 (docs/FORMAT.md: l = min(⌊q⌋, L − 1)).
    assert Q.split(10.0, 10) == (8, 1.0) and Q.split(10.0, 12) == (9, 0.0) and Q.split(11.5, 12) == (10, 0.5)
    table = torch.arange(10.0)[:, None]
    assert float(Q.interpolate(table, 9.25)[0]) == 8.25
    with pytest.raises(ValueError, match="between 1 and 10"):
        Q.interpolate(table, 10.5)


@pytest.mark.parametrize("q", [1.0, 4.5, 9.999, 10.0])
def test_gains_of_a_ten_level_model_follow_the_format(q):
    """What v2 files decode with: g = (1−t)·G[l−1] + t·G[l], l = min(⌊q⌋, 9), t = q − l, in float64."""
    model = seeded_model(GainHyperprior, levels=10)
    model.freeze_gains()
    G = model.y_gain_table.double()
    k = round(q * Q.QUALITY_SCALE)
    lower = min(k // Q.QUALITY_SCALE, 9)
    t = (k - Q.QUALITY_SCALE * lower) / Q.QUALITY_SCALE
    want = G[lower - 1] if t == 0 else (1 - t) * G[lower - 1] + t * G[lower]
    assert torch.equal(model.inference_gains(q)[0], want)


def test_remap_extrapolates_upward_and_keeps_shared_levels():
    """Ten rows linear in log λ, moved to the whole ladder: the ten stay exact, the rest continue the line."""
    old = Q.ladder(10)
    rows = [[0.5 * math.log(lam), -0.25 * math.log(lam) + 1.0] for lam in old]
    moved = Q.remap_levels(rows, old, Q.LAMBDAS)
    assert moved[:10] == rows
    for lam, (a, b) in zip(Q.LAMBDAS[10:], moved[10:], strict=True):
        assert a == pytest.approx(0.5 * math.log(lam)) and b == pytest.approx(-0.25 * math.log(lam) + 1.0)
    assert moved[11][0] > moved[10][0] > moved[9][0]


def test_a_twelve_level_model_codes_above_ten(long_codec, photo_like):
    rgb = photo_like(48, 64)
    sizes = {}
    for q in (10.0, 11.5, 12.0):
        data = encode_array(rgb, q, long_codec)
        assert bs.unpack(data).quality == q
        assert codec.decode(data, codec=long_codec).size == (64, 48)
        sizes[q] = len(data)
    assert sizes[10.0] < sizes[11.5] < sizes[12.0]  # larger gains: finer steps, more bits
    with pytest.raises(ValueError, match="between 1 and 12"):
        encode_array(rgb, 12.001, long_codec)
    # The size search covers the model's whole range: a budget nothing reaches gives its top level.
    data, fits = encode_array_to_size(rgb, 10**9, long_codec)
    assert fits and bs.unpack(data).quality == Q.LEVELS


def test_a_ten_level_model_refuses_eleven(photo_like, png, tmp_path):
    assert TEST_LEVELS == 10  # the installed test model
    with pytest.raises(ValueError, match=f"between 1 and 10 for model {TEST_MODEL_ID}, got 11"):
        codec.encode(photo_like(16, 16), quality=11)
    result = run("encode", png, "-q", "10.5", "-o", tmp_path / "x.aec")
    assert result.exit_code == 2 and not (tmp_path / "x.aec").exists()
    assert result.stderr.strip() == f"aecodec: quality must be between 1 and 10 for model {TEST_MODEL_ID}, got 10.5"
    data, fits = encode_array_to_size(photo_like(16, 16), 10**9)
    assert fits and bs.unpack(data).quality == 10.0  # the search stops at this model's top


def test_a_file_above_its_models_range_is_refused(png, tmp_path):
    """A header may hold up to the longest ladder's top; the model the file names decides."""
    good = tmp_path / "good.aec"
    assert run("encode", png, "-o", good, "-q", "10").exit_code == 0
    f = bs.unpack(good.read_bytes())
    f.quality = 11.0
    bad = tmp_path / "bad.aec"
    bad.write_bytes(bs.pack(f))
    with pytest.raises(codec.AecError, match=f"quality 11 is above the range of model {TEST_MODEL_ID} \\(1 to 10\\)"):
        codec.decode(bad.read_bytes())
    result = run("decode", bad, "-o", tmp_path / "bad.png")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "above the range" in result.stderr
    assert not (tmp_path / "bad.png").exists()


def test_models_lists_each_quality_range(tmp_path, weights_copy):
    from codec.training.export import export

    export(seeded_model(GainHyperprior, levels=Q.LEVELS), "long", weights_copy, half=False, meta={}, make_default=False)
    result = run("models")
    assert result.exit_code == 0
    listed = [line for line in result.stdout.splitlines() if not line.startswith(f"{OVERFIT_ID} ")]
    assert listed == ["long  q 1-12", f"{TEST_MODEL_ID}  q 1-10  (default)"]
    rows = {r["id"]: r for r in json.loads(run("models", "--json").stdout)}
    assert rows["long"]["qualities"] == [1, 12] and rows[TEST_MODEL_ID]["qualities"] == [1, 10]
    png = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 30)).save(png)
    assert run("encode", png, "--model", "long", "-q", "11.5", "-o", tmp_path / "a.aec").exit_code == 0
    assert bs.unpack((tmp_path / "a.aec").read_bytes()).quality == 11.5
