"""The GPU sprint, dry-run on the CPU: prepare a pack, train a few steps into pieces, collect a model that codes;
the pieces survive a kill at any moment; gpu_check on the shipped fixtures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.training import sprint
from tests.support import TEST_MODEL_ID, seeded_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    res = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((80 + 8 * i, 96, 3)) * 255).astype("uint8")).save(folder / f"p{i}.jpg", quality=95)
    (folder / "README.md").write_text("not an image")
    return folder


def test_pack_holds_what_fits_and_decodes(photos, tmp_path):
    files = sorted(photos.glob("*.jpg"))
    in_tar = {f: 512 + -(-f.stat().st_size // 512) * 512 for f in files}  # header + data blocks
    budget = 1024 + sum(in_tar.values()) // 2
    chosen = sprint.choose_pack(files, budget)
    assert 1 <= len(chosen) < len(files)
    size = sprint.write_pack(chosen, tmp_path / "pack.tar")
    assert size <= budget and all(in_tar[f] > budget - size for f in files if f not in chosen)  # as many as fit
    images = sprint.read_pack(tmp_path / "pack.tar")
    by_name = {f.name: f for f in files}
    assert [im.shape for im in images] == [np.asarray(Image.open(by_name[f.name])).shape for f in chosen]


def _checkpoint(seed: int) -> dict:
    from codec.models.hyperprior import Arch, GainHyperprior

    torch.manual_seed(seed)
    model = GainHyperprior(Arch(N=16, M=24, levels=4))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + 0.01 * torch.randn_like(v) for k, v in sd.items() if k.startswith("g_a.0")}
    return {"model": sd, "ema": ema, "state": {"step": seed}, "kind": model.kind, "arch": model.arch_dict()}


def test_compact_checkpoint_keeps_the_average_in_fp16_and_the_raw_weights_closely():
    ck = _checkpoint(1)
    back = sprint.expand(sprint.deserialize(sprint.compact_blob(ck, ("g_a.", "g_s."))[0]))
    w = "g_a.0.weight"
    assert torch.equal(back["ema"][w], ck["ema"][w].half().float())  # what an fp16 export ships
    delta = (ck["model"][w] - back["ema"][w]).abs().max()
    assert (back["model"][w] - ck["model"][w]).abs().max() <= delta * 2**-10  # raw = avg + fp16 delta
    assert torch.equal(back["model"]["log_y_gain"], ck["model"]["log_y_gain"])  # not averaged, not halved
    assert back["optimizer"] is None and back["state"] == {"step": 1}


def test_a_kill_at_any_moment_leaves_a_complete_generation(tmp_path, monkeypatch):
    blobs = [sprint.serialize(sprint.compact(_checkpoint(s), ("g_a.",))) for s in (1, 2)]
    monkeypatch.setattr(sprint, "PIECE_BYTES", len(blobs[0]) // 3 + 1)  # three pieces, as the real sizes give
    monkeypatch.setattr(sprint, "MAX_RETURN", 4 * len(blobs[0]))
    n = sprint.blob_pieces(len(blobs[0]))
    assert n == 3
    sprint.write_generation(tmp_path, 0, blobs[0], {"step": 1})
    # Killed while writing generation 1: its index missing, or a piece cut short after it.
    (tmp_path / "sprint-0001-0.part").write_bytes(blobs[1][:100])
    assert sprint.read_newest([tmp_path])[1]["step"] == 1
    names = sprint.write_generation(tmp_path, 1, blobs[1], {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names) and len(names) <= sprint.MAX_FILES
    (tmp_path / names[1]).write_bytes(b"damaged")  # a damaged piece: no complete generation is left
    with pytest.raises(FileNotFoundError):
        sprint.read_newest([tmp_path])

    seen = []

    def spy(path: Path, data: bytes) -> None:  # every moment of a write: count files, newest complete one
        real(path, data)
        try:
            step = sprint.read_newest([tmp_path])[1]["step"]
        except FileNotFoundError:
            step = None
        seen.append((len(list(tmp_path.iterdir())), step))

    real = sprint._write_atomic
    monkeypatch.setattr(sprint, "_write_atomic", spy)
    for gen, blob in enumerate(blobs * 2, start=2):
        sprint.write_generation(tmp_path, gen, blob, {"step": gen})
    steps = [step for _, step in seen]
    assert None not in steps[steps.index(2) :] and steps[-1] == 5  # once one is complete, one always is
    assert max(count for count, _ in seen) <= 2 * (n + 1) <= sprint.MAX_FILES


#: The sprint's peak LR in the dry run: its warm-up (``TrainConfig.warmup_steps``) makes the first three steps'
#: LR 0.001, 0.002, 0.003, enough to move the loss measurably (the default 5e-4 moves it by 0.01 %).
SPRINT_LR = 0.3


def rd_cost(model, images: list[np.ndarray]) -> float:
    """The training loss (rate + λ·distortion) of ``model`` on the top-left 64x64 of each image, qualities
    spread over 1..10, without noise (eval mode): the same number for the same weights."""
    from codec.training.train import lambdas_for, rd_loss

    x = torch.stack([torch.as_tensor(np.asarray(im)[:64, :64]) for im in images]).permute(0, 3, 1, 2).float() / 255
    q = torch.linspace(1, 10, len(images))
    model.eval()
    with torch.no_grad():
        return rd_loss(model(x, q), x, lambdas_for(q), "mse")["loss"].item()


@pytest.mark.slow
def test_dry_run_prepare_run_collect_gives_a_model_that_codes(photos, tmp_path, test_weights):
    """The whole path on the CPU with the small test network: the CI version of a GPU sprint."""
    sp, out, w = tmp_path / "sp", tmp_path / "out", tmp_path / "w"
    env = {"AECODEC_WEIGHTS": test_weights}
    res = script("gpu_sprint.py", "prepare", "--out", str(sp), "--train", str(photos), "--no-wheels", env=env)
    assert "python3 scripts/gpu_sprint.py run" in res.stdout
    info = json.loads((sp / "sprint.json").read_text())
    assert info["start"]["init"] == TEST_MODEL_ID and info["pack"]["images"] == 6
    script(
        "gpu_sprint.py",
        *("run", "--sprint", str(sp), "--out", str(out), "--device", "cpu", "--minutes", "3"),
        *("--steps", "3", "--batch", "2", "--crop", "64", "--every", "0", "--log-every", "1"),
        *("--lr", str(SPRINT_LR)),
    )
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= sprint.MAX_FILES and any(f.endswith(".json") for f in files)
    index = json.loads(next(out.glob("sprint-*.json")).read_text())
    assert index["steps_this_sprint"] == 3 and index["raw_weights"]
    w.mkdir()
    (w / "manifest.json").write_text(json.dumps({"format": 1, "default": TEST_MODEL_ID, "models": {}}))
    script(
        "gpu_sprint.py",
        *(
            "collect",
            str(out),
            "--no-measure",
            "--weights-dir",
            str(w),
            "--name",
            "dry",
            "--run-dir",
            str(tmp_path / "r"),
        ),
    )
    manifest = json.loads((w / "manifest.json").read_text())
    assert manifest["default"] == TEST_MODEL_ID and manifest["models"]["dry"]["training"]["steps"] == index["step"]
    from codec.api import decode_array, encode_array
    from codec.core.tensors import psnr
    from codec.models.hyperprior import GainHyperprior
    from codec.training.export import model_from_checkpoint
    from codec.weights.store import load_codec

    pack = sprint.read_pack(sp / "pack.tar")
    trained, _ = model_from_checkpoint(tmp_path / "r" / "last.pt", raw=True)
    start, after = rd_cost(seeded_model(GainHyperprior), pack), rd_cost(trained, pack)
    assert after < 0.97 * start, (start, after)  # the three steps trained: measured 836.5 -> 761.9
    rgb = pack[0]

    def coded_psnr(model_id: str) -> float:
        codec = load_codec(model_id, "cpu")
        return psnr(rgb, decode_array(encode_array(rgb, 4.0, codec), codec))

    start_psnr = coded_psnr(TEST_MODEL_ID)
    os.environ["AECODEC_WEIGHTS"] = str(w)  # restored by the autouse fixture's monkeypatch
    # The export is the weight average, still the start's after three steps: it codes as the start did.
    assert abs(coded_psnr("dry") - start_psnr) < 0.5
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)  # resumable: train --from-checkpoint
    assert ck["state"]["step"] == index["step"] and ck["ema"]

    # Measured against the default on two folders (here the tiny photos twice); ships only if both are better.
    shutil.copytree(test_weights, tmp_path / "w2")
    res = script(
        "gpu_sprint.py",
        *("collect", str(out), "--weights-dir", str(tmp_path / "w2"), "--name", "measured", "--qualities", "2,5,8"),
        *(
            "--val",
            str(photos),
            "--kodak",
            str(photos),
            "--scratch",
            str(tmp_path / "s"),
            "--run-dir",
            str(tmp_path / "r2"),
        ),
    )
    bd = [float(line.split(": ")[1].split(" %")[0]) for line in res.stdout.splitlines() if line.startswith("BD-rate")]
    shipped = json.loads((tmp_path / "w2" / "manifest.json").read_text())["default"] == "measured"
    assert len(bd) == 2 and shipped == all(v < 0 for v in bd), res.stdout


def test_gpu_check_on_the_cpu_decodes_the_fixtures_as_recorded(tmp_path):
    model = json.loads((ROOT / "weights" / "manifest.json").read_text())["default"]
    env = {"AECODEC_WEIGHTS": str(ROOT / "weights")}
    args = ("--sprint", str(tmp_path / "none"), "--device", "cpu", "--out", str(tmp_path), "--fixtures", model)
    script("gpu_check.py", *args, "--sizes", "64x64", "--batch", "2", env=env)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["symbols_all_as_recorded"] and len(report["fixtures"]) >= 4
    assert all(f["device_encoding_symbols_cpu_equal_device"] for f in report["fixtures"])
    assert all(f["pixels_max_abs_diff"] <= 2 for f in report["fixtures"])
    assert report["throughput"]["64x64"]["decode_mp_per_s"] > 0


def _sprint_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_sprint", SCRIPTS / "gpu_sprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_aside_shrinks_what_travels_and_restores_every_byte(tmp_path):
    gs = _sprint_script()
    repo = tmp_path / "repo"
    (repo / "weights").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    blobs = {f"weights/m{i}.safetensors": os.urandom(4096 + i) for i in range(2)}
    for name, blob in blobs.items():
        (repo / name).write_bytes(blob)
    (repo / "weights" / "manifest.json").write_text("{}\n")
    (repo / ".gitignore").write_text(f"/{gs.ASIDE}/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    before = gs.travelling_bytes(repo)

    assert sorted(gs.set_aside(repo)) == sorted(blobs)
    assert gs.travelling_bytes(repo) == before - sum(map(len, blobs.values()))  # the ignored .aside/ stays behind
    assert (repo / "weights" / "manifest.json").exists()

    (repo / "weights" / "m1.safetensors").write_bytes(b"someone else's")  # a file in the way is never overwritten
    assert gs.restore_aside(repo) == ["weights/m0.safetensors"]
    assert (repo / gs.ASIDE / "weights" / "m1.safetensors").read_bytes() == blobs["weights/m1.safetensors"]
    (repo / "weights" / "m1.safetensors").unlink()
    assert gs.restore_aside(repo) == ["weights/m1.safetensors"]
    assert all((repo / name).read_bytes() == blob for name, blob in blobs.items())
    assert gs.travelling_bytes(repo) == before and gs.restore_aside(repo) == []
