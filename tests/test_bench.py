"""Benchmarks: RD and speed smoke runs on tiny images, BD-rate, metrics, and the Kodak fetcher's checksums."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from codec.bench.bdrate import bd_rate
from codec.bench.metrics import ms_ssim, ms_ssim_db
from codec.weights.store import read_manifest

REPO = Path(__file__).resolve().parent.parent
ANCHORS = REPO.parent / "shared" / "anchors" / "kodak"
KODAK = REPO.parent / "shared" / "data" / "kodak"


# -- RD benchmark ------------------------------------------------------------------------------
@pytest.mark.slow
def test_rd_smoke(tiny_dir, tmp_path):
    from benchmarks import rd

    out = tmp_path / "out"
    args = [
        "--data",
        str(tiny_dir),
        "--out",
        str(out),
        "--limit",
        "2",
        "--qualities",
        "1,8",
        "--device",
        "cpu",
        "--name",
        "kodak-smoke",
        "--anchors",
        str(ANCHORS if ANCHORS.is_dir() else tmp_path / "none"),
        "--record",
    ]
    result = CliRunner().invoke(rd.main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    for f in ("rd.json", "rd.csv", "rd_per_image.csv", "rd.png", "bdrate.md"):
        assert (out / f).stat().st_size > 0, f

    data = json.loads((out / "rd.json").read_text())
    assert data["images"] == ["im0.png", "im1.png"]
    codecs = data["codecs"]
    assert {"aecodec", "jpeg", "jpeg-optimize", "jpeg-444", "webp"} <= set(codecs)
    aec = codecs["aecodec"]["results"]
    assert aec["quality"] == [1.0, 8.0]
    manifest = read_manifest()
    recorded = manifest["models"][manifest["default"]]["kodak-smoke"]  # --record
    assert recorded["bpp"] == aec["bpp"] and recorded["psnr-rgb"] == aec["psnr-rgb"]
    assert all(b > 0 for b in aec["bpp"]) and all(math.isfinite(p) for p in aec["psnr-rgb"])
    assert all(v is None for v in aec["ms-ssim-rgb"])  # 64 px images: MS-SSIM undefined, written as null
    assert all(t > 0 for t in aec["encoding_time"] + aec["decoding_time"])
    jpeg = codecs["jpeg"]["results"]
    assert jpeg["quality"] == [float(q) for q in range(5, 100, 5)]
    assert all(a < b for a, b in zip(jpeg["bpp"], jpeg["bpp"][1:], strict=False)), "JPEG bpp must grow with quality"
    assert jpeg["psnr-rgb"][-1] > jpeg["psnr-rgb"][0] + 5
    assert sum(codecs["jpeg-optimize"]["results"]["bpp"]) < sum(jpeg["bpp"])

    with open(out / "rd.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(c["results"]["bpp"]) for c in codecs.values())
    with open(out / "rd_per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(rows)

    md = (out / "bdrate.md").read_text()
    assert "Against JPEG" in md and "| webp |" in md and "MS-SSIM" in md
    if ANCHORS.is_dir():
        assert "(published)" in md

    # A second run measures aecodec only (another quality) and takes the Pillow curves from the first.
    again = tmp_path / "again"
    args2 = ["--data", str(tiny_dir), "--out", str(again), "--limit", "2", "--qualities", "2,8", "--device", "cpu"]
    args2 += ["--codecs", "aecodec", "--reuse", str(out / "rd.json")]
    result = CliRunner().invoke(rd.main, args2)
    assert result.exit_code == 0, result.output + repr(result.exception)
    second = json.loads((again / "rd.json").read_text())
    assert second["codecs"]["aecodec"]["results"]["quality"] == [2.0, 8.0]
    assert second["codecs"]["webp"] == codecs["webp"]
    assert any("reused" in n for n in second["notes"])
    bad = CliRunner().invoke(rd.main, [*args2[:-4], "--codecs", "aecodec,nope"])
    assert bad.exit_code == 2 and "nope" in bad.output

    from benchmarks import versus

    same = CliRunner().invoke(versus.main, [str(out / "rd.json"), str(out / "rd.json")])
    assert same.exit_code == 0 and "+0.00 %" in same.output
    fewer = CliRunner().invoke(versus.main, [str(out / "rd.json"), str(out / "rd.json"), "--codec", "nope"])
    assert fewer.exit_code == 2


def test_rd_effort_levels(tiny_dir, tmp_path):
    """``--effort 0,1``: one aecodec curve per level and their table against effort 0; bad levels refused."""
    from benchmarks import rd

    out = tmp_path / "effort"
    args = ["--data", str(tiny_dir), "--out", str(out), "--limit", "1", "--qualities", "2,5,8", "--device", "cpu"]
    result = CliRunner().invoke(rd.main, [*args, "--codecs", "aecodec", "--effort", "0,1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    codecs = json.loads((out / "rd.json").read_text())["codecs"]
    assert set(codecs) == {"aecodec", "aecodec-effort1"}
    assert codecs["aecodec-effort1"]["results"]["quality"] == [2.0, 5.0, 8.0]
    md = (out / "bdrate.md").read_text()
    assert "## aecodec encoder effort against effort 0" in md and "| aecodec-effort1 | " in md
    assert "## aecodec against each measured codec" not in md  # effort levels are not other codecs
    bad = CliRunner().invoke(rd.main, [*args, "--codecs", "aecodec", "--effort", "0,9"])
    assert bad.exit_code == 2 and "effort" in bad.output


def test_learning_curve_rows():
    """BD-rate per shipped version: a version with 20 % fewer bits at every point gains 20 points."""
    from benchmarks.learning_curve import markdown, rows

    anchor = {"bpp": RATE, "psnr-rgb": PSNR}
    better = {"bpp": [r * 0.8 for r in RATE], "psnr-rgb": PSNR, "ms-ssim-rgb": [0.9] * 5, "quality": [1, 2, 3, 4, 5]}
    same = {**better, "bpp": RATE}
    manifest = {
        "models": {
            "b": {"kodak": better, "training": {"steps": 20, "seconds": 600, "device": "cpu"}},
            "a": {"kodak": same, "training": {"steps": 10, "seconds": 60, "device": "cpu"}},
            "untested": {"training": {"steps": 5}},
        }
    }
    table = rows(manifest, {"jpeg": anchor, "webp": anchor})
    assert [r["model"] for r in table] == ["a", "b"]
    assert table[0]["bd"]["jpeg"] == pytest.approx(0.0, abs=0.01)
    assert table[1]["bd"]["webp"] == pytest.approx(-20.0, abs=0.01)
    text = markdown(table, "b")
    assert "**b** (default)" in text and "| 10 |" in text


# -- BD-rate ---------------------------------------------------------------------------------
RATE = [0.2, 0.35, 0.6, 1.0, 1.6]
PSNR = [28.0, 30.5, 33.0, 35.5, 38.0]


@pytest.mark.parametrize("scale, expected", [(0.8, -20.0), (1.25, 25.0), (1.0, 0.0)])
def test_bd_rate_scaled_curve(scale, expected):
    assert bd_rate(RATE, PSNR, [r * scale for r in RATE], PSNR) == pytest.approx(expected, abs=1e-6)


def test_bd_rate_short_and_dirty_curves():
    # Three points (PCHIP fallback), NaNs and unsorted input are all handled.
    assert bd_rate(RATE[:3], PSNR[:3], [r * 0.8 for r in RATE[:3]], PSNR[:3]) == pytest.approx(-20.0, abs=1e-6)
    test_r = [r * 0.8 for r in RATE][::-1] + [0.5]
    test_d = PSNR[::-1] + [float("nan")]
    assert bd_rate(RATE, PSNR, test_r, test_d) == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_undefined():
    assert math.isnan(bd_rate(RATE, PSNR, RATE, [p + 20 for p in PSNR]))  # no overlap
    assert math.isnan(bd_rate(RATE, PSNR, [0.5], [31.0]))  # one point
    assert math.isnan(bd_rate(RATE, [float("nan")] * 5, RATE, PSNR))


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="published anchors not present")
@pytest.mark.parametrize("name, expected", [("webp", -36.6), ("av1", -62.7), ("vtm", -67.8)])
def test_bd_rate_published_anchors(name, expected):
    """The figures quoted in ../shared/anchors/README.md."""
    jpeg = json.loads((ANCHORS / "jpeg.json").read_text())["results"]
    test = json.loads((ANCHORS / f"{name}.json").read_text())["results"]
    value = bd_rate(jpeg["bpp"], jpeg["psnr-rgb"], test["bpp"], test["psnr-rgb"])
    assert value == pytest.approx(expected, abs=0.05)


# -- metrics ---------------------------------------------------------------------------------
def test_ms_ssim(photo_like):
    a = photo_like(176, 176)
    assert math.isnan(ms_ssim(a[:160], a[:160]))
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = (a.astype(int) + np.random.default_rng(1).integers(-20, 21, a.shape)).clip(0, 255).astype(np.uint8)
    v = ms_ssim(a, noisy)
    assert 0.5 < v < 1.0
    assert ms_ssim_db(v) == pytest.approx(-10 * math.log10(1 - v))
    assert ms_ssim_db(1.0) == math.inf and math.isnan(ms_ssim_db(float("nan")))


# -- speed benchmark and CompressAI's reference path ----------------------------------------
def test_reference_path_decodes_like_engine(photo_like):
    from benchmarks.speed import reference_compress, reference_decompress
    from codec import api
    from codec.core.tensors import psnr, to_tensor, to_uint8
    from codec.weights.store import load_codec

    codec = load_codec(device="cpu")
    rgb = photo_like(64, 96, seed=3)
    ref = reference_compress(codec.model, to_tensor(rgb, codec.model.stride), 4.0)
    ours = to_uint8(reference_decompress(codec.model, ref["strings"], ref["shape"], 4.0), 64, 96)
    # Same network and symbols; scale indexes differ only where the float and exact hyper-synthesis disagree.
    assert psnr(ours, np.asarray(api.decode(api.encode(rgb, 4.0, codec=codec), codec=codec))) > 35


@pytest.mark.slow
def test_speed_smoke(tiny_dir, tmp_path):
    from benchmarks import speed

    result = speed.run(tiny_dir, tmp_path / "sp", limit=2, repeats=1, device="cpu", quality=4.0, batch=2)
    saved = json.loads((tmp_path / "sp" / "speed.json").read_text())
    assert saved["images"] == ["im0.png", "im1.png"]
    assert {"aecodec-cpu", "compressai-ref-cpu", "jpeg", "webp"} <= set(saved["summary"])
    for s in saved["summary"].values():
        assert s["encode_ms"] > 0 and s["decode_mps"] > 0 and s["bpp"] > 0 and s["peak_rss_mb"] >= 0
    assert result["reference_psnr_db"]["cpu"] > 30  # inf (JSON null) when bit-identical
    assert saved["ratios"]["cpu"]["encode_time_ratio"] > 0
    assert saved["batched"]["cpu"]["images"] == 2 and saved["batched"]["cpu"]["encode_mps"] > 0
    assert saved["file_to_file"]["cpu"]["images"] == 2 and saved["file_to_file"]["cpu"]["decode_mps"] > 0
    md = (tmp_path / "sp" / "speed.md").read_text()
    assert "CompressAI stock" in md and "Folder throughput" in md and "file to file" in md
    start = saved["start_up"]["cpu"]
    assert start["encode_command_s"] > start["encode_in_process_s"] > 0 and start["import_torch_s"] > 0
    assert start["decode_start_up_s"] == pytest.approx(start["decode_command_s"] - start["decode_in_process_s"])
    assert "import torch" in md
    assert result["summary"].keys() == saved["summary"].keys()


def test_speed_times_no_reference_for_another_network(monkeypatch):
    """CompressAI's stock path is the plain hyperprior: for the context model it would time a different
    network, so the benchmark offers no reference (and no ratio) there."""
    from benchmarks import speed
    from codec.models.context import ContextModel
    from codec.models.hyperprior import Arch, GainHyperprior
    from codec.weights.store import load_codec

    assert speed.reference_applies(GainHyperprior(Arch(N=16, M=24)))
    assert not speed.reference_applies(ContextModel(Arch(N=16, M=24)))
    codec = dataclasses.replace(load_codec(device="cpu"), model=ContextModel(Arch(N=16, M=24)))
    monkeypatch.setattr("codec.weights.store.load_codec", lambda **kw: codec)
    assert [m.name for m in speed.aecodec_methods("cpu", 4.0)] == ["aecodec-cpu"]


def test_model_ratios_divide_by_the_default_model():
    from benchmarks import speed

    row = {"encode_mps": 1.0, "decode_mps": 1.0, "bpp": 1.0, "peak_rss_mb": 1.0, "peak_cuda_mb": None}
    summary = {
        "aecodec-cpu": {**row, "encode_ms": 400.0, "decode_ms": 500.0},
        "aecodec-cpu other": {**row, "encode_ms": 500.0, "decode_ms": 550.0},
    }
    r = speed.model_ratios(summary, ["cpu"], ("other",))
    assert r == {"cpu other": {"encode_time_ratio": 1.25, "decode_time_ratio": pytest.approx(1.1)}}
    assert speed.model_ratios(summary, ["cpu"], ()) == {}


# -- Kodak download script -------------------------------------------------------------------
def test_get_kodak_fetch_without_network(tmp_path, monkeypatch, script):
    mod = script("get_kodak")
    assert len(mod.SHA256) == 24
    monkeypatch.setitem(mod.SHA256, "fake.png", hashlib.sha256(b"right").hexdigest())
    calls = []

    def get(url):
        calls.append(url)
        return b"right"

    assert mod.fetch("fake.png", tmp_path, "http://example.invalid/{name}", get) == "downloaded"
    assert calls == ["http://example.invalid/fake.png"] and (tmp_path / "fake.png").read_bytes() == b"right"
    assert mod.fetch("fake.png", tmp_path, "http://example.invalid/{name}", get) == "kept"
    assert len(calls) == 1
    (tmp_path / "fake.png").write_bytes(b"damaged")
    status = mod.get_kodak(tmp_path, get=lambda url: b"wrong", names=["fake.png"])
    assert status["fake.png"].startswith("error: fake.png: checksum mismatch")
    assert (tmp_path / "fake.png").read_bytes() == b"damaged" and not list(tmp_path.glob("*.part"))


@pytest.mark.skipif(not KODAK.is_dir(), reason="local Kodak copy not present")
def test_get_kodak_against_local_copy(tmp_path, script):
    mod = script("get_kodak")
    sums = dict(line.split()[::-1] for line in (KODAK / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert sums == mod.SHA256
    target = tmp_path / "kodak"
    target.mkdir()
    for name in ("kodim01.png", "kodim02.png"):
        shutil.copy(KODAK / name, target / name)
    (target / "kodim03.png").write_bytes(b"truncated")

    def no_network(url):
        raise AssertionError(f"unexpected download of {url}")

    assert mod.get_kodak(target, get=no_network, names=["kodim01.png", "kodim02.png"]) == {
        "kodim01.png": "kept",
        "kodim02.png": "kept",
    }
    # A damaged file is fetched again; a file:// URL stands in for the web server.
    status = mod.get_kodak(target, url_template=KODAK.as_uri() + "/{name}", names=["kodim03.png"])
    assert status == {"kodim03.png": "downloaded"}
    assert mod.is_valid(target / "kodim03.png", "kodim03.png")


# -- huge-image benchmark ----------------------------------------------------------------------
@pytest.mark.slow
def test_huge_memory_and_tiling_smoke():
    from benchmarks import huge

    mem = huge.memory(size=200, quality=3.0, tile=64, source=None)
    # The test network is random: the decode is the right size (psnr() checks) but not a good image.
    assert mem["size"] == "200x200" and mem["bpp"] > 0 and math.isfinite(mem["psnr"])
    # Each figure is that child's own peak (a CLI process that imported torch: tens of MB at least).
    assert 30 < mem["encode_peak_rss_mb"] < 4000 and 30 < mem["decode_peak_rss_mb"] < 4000
    hostile = huge.hostile(size=256, tile=64)  # 16 tiles of empty streams, built with codec.format.bitstream
    assert hostile["file_bytes"] < 300 and 30 < hostile["decode_peak_rss_mb"] < 4000 and hostile["decode_s"] > 0
    cmp = huge.compare(size=192, tile=64, quality=3.0, source=None)
    assert cmp["tiled"]["tile"] == 64 and cmp["untiled"]["tile"] > 192
    assert math.isfinite(cmp["delta_psnr_db"]) and cmp["tiled"]["bpp"] > 0 and cmp["untiled"]["bpp"] > 0


def test_ceiling_bounds_every_quality(tiny_dir, monkeypatch):
    """With the shipped default weights, no quality decodes better than the transforms reconstruct an
    unquantized latent, and finer steps come closer to it; the command prints both beside the manifest's
    recorded top quality."""
    from benchmarks.ceiling import ceiling_psnr, main
    from codec import api
    from codec.core.tensors import psnr
    from codec.training.data import load_rgb
    from codec.weights.store import load_codec

    monkeypatch.setenv("AECODEC_WEIGHTS", str(Path(__file__).parent.parent / "weights"))
    codec = load_codec(device="cpu")
    rgb = load_rgb(tiny_dir / "im0.png")
    top = codec.model.levels
    decoded = [psnr(rgb, np.asarray(api.decode(api.encode(rgb, q, codec=codec), codec=codec))) for q in (1, top)]
    finer = ceiling_psnr(codec.model, rgb, top, 4.0)
    assert decoded[0] < decoded[1] < finer < ceiling_psnr(codec.model, rgb)
    assert abs(ceiling_psnr(codec.model, rgb, top) - decoded[1]) < 0.3  # the coder rounds about its means
    result = CliRunner().invoke(main, ["--data", str(tiny_dir)])
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[-1].split("|")
    assert row[1].strip() == codec.model_id and row[2].strip() == "3"
    assert f"q{top}:" in row[5]
