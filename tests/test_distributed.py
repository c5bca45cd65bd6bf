"""aecodec encode/decode --ray: a Ray Data job on a local Ray cluster that this module starts (loopback only, no
dashboard, 2 CPUs). Its outputs are byte-identical to the local command's; a killed worker is retried by Ray
without a lost or partial output; --skip-existing resumes; a bad input fails alone and is named in the table.

The plan (which files, written where) is pure and tested without Ray."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.coding import distributed, jobs
from codec.core.errors import AecError

TILE = "64"  # the largest image below is over one tile: the tiled path runs on the cluster too


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_table(folder: Path) -> list[dict]:
    with open(folder / distributed.RESULTS_NAME, newline="") as f:
        return list(csv.DictReader(f))


def aecodec_lines(stderr: str) -> list[str]:
    """Our own lines (Ray's C++ core may add log lines of its own to stderr)."""
    return [line for line in stderr.splitlines() if line.startswith("aecodec:")]


# -- the plan, no Ray ----------------------------------------------------------------------------------
def test_plan_walks_folders_and_globs_and_refuses_shared_outputs(tmp_path):
    (tmp_path / "photos" / "2024").mkdir(parents=True)
    for name in ("photos/a.png", "photos/2024/a.jpg", "photos/notes.txt", "photos/.hidden.png", "b.webp"):
        (tmp_path / name).write_bytes(b"x")
    options = jobs.EncodeOptions()
    pairs = distributed.plan([str(tmp_path / "photos"), str(tmp_path / "*.webp")], f"{tmp_path}/out/", options)
    assert [(Path(s).relative_to(tmp_path).as_posix(), Path(d).relative_to(tmp_path).as_posix()) for s, d in pairs] == [
        ("photos/a.png", "out/a.aec"),
        ("photos/2024/a.jpg", "out/2024/a.aec"),  # a walked folder keeps its structure
        ("b.webp", "out/b.aec"),
    ]
    with pytest.raises(AecError, match="would both write"):
        distributed.plan(
            [str(tmp_path / "photos/a.png"), str(tmp_path / "photos/2024/a.jpg")], f"{tmp_path}/o/", options
        )
    with pytest.raises(AecError, match="-o OUTDIR/"):
        distributed.plan([str(tmp_path / "b.webp")], str(tmp_path / "new"), options)
    with pytest.raises(AecError, match="no file matches"):
        distributed.plan([str(tmp_path / "*.gif")], f"{tmp_path}/o/", options)
    with pytest.raises(AecError, match="no .aec files found"):
        distributed.plan([str(tmp_path)], f"{tmp_path}/o/", jobs.DecodeOptions(fmt="webp"))
    (tmp_path / "x.aec").write_bytes(b"x")
    assert distributed.plan([str(tmp_path)], f"{tmp_path}/o/", jobs.DecodeOptions(fmt="webp")) == [
        (str(tmp_path / "x.aec"), f"{tmp_path}/o/x.webp")
    ]


def test_a_cluster_that_cannot_be_joined_is_one_line(png, tmp_path, monkeypatch):
    pytest.importorskip("ray")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1\n(and Ray's details)")

    monkeypatch.setattr(distributed, "connect", unreachable)
    result = run("encode", png, "--ray", "-o", f"{tmp_path}/out/")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "aecodec: cannot start or join the Ray cluster: "
        "ConnectionError: Failed to connect to Ray cluster at 127.0.0.1:1"
    ]
    assert not (tmp_path / "out").exists()


# -- on a local cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(test_weights):
    """A 2-CPU Ray cluster on the loopback. Its workers inherit this environment as it is at start: the test
    weights."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AECODEC_WEIGHTS", test_weights)
        mp.setenv("OMP_NUM_THREADS", "1")
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    distributed.connect(progress=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """8 images: RGB of several sizes, gray, RGBA, LA, palette, a JPEG, and one over a 64 px tile."""
    from conftest import make_photo_like

    folder = tmp_path_factory.mktemp("corpus")
    rgb = [make_photo_like(h, w, seed) for seed, (h, w) in enumerate([(48, 80), (64, 64), (30, 70), (100, 150)])]
    alpha = np.linspace(0, 255, 40 * 56, dtype=np.uint8).reshape(40, 56)
    images = {
        "rgb.png": Image.fromarray(rgb[0]),
        "square.png": Image.fromarray(rgb[1]),
        "thin.png": Image.fromarray(rgb[2]),
        "tiled.png": Image.fromarray(rgb[3]),
        "gray.png": Image.fromarray(rgb[1]).convert("L"),
        "alpha.png": Image.fromarray(np.dstack([rgb[0][:40, :56], alpha]), "RGBA"),
        "gray-alpha.png": Image.fromarray(np.dstack([rgb[0][:40, :56, 0], alpha]), "LA"),
        "photo.jpg": Image.fromarray(rgb[2]),
    }
    for name, image in images.items():
        image.save(folder / name)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def local_out(corpus, tmp_path_factory, test_weights) -> Path:
    """What the local command writes for the corpus."""
    out = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AECODEC_WEIGHTS", test_weights)
        result = run("encode", *corpus, "-o", out, "--tile", TILE)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def ray_out(cluster, corpus, tmp_path_factory, test_weights) -> Path:
    """What ``--ray`` writes for the corpus's folder (2 workers)."""
    out = tmp_path_factory.mktemp("ray") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AECODEC_WEIGHTS", test_weights)  # the driver resolves the default model id
        result = run("encode", corpus[0].parent, "-o", f"{out}/", "--tile", TILE, "--ray", "--workers", 2)
    assert result.exit_code == 0, result.stderr
    return out


def assert_same_files(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def aec_names(corpus: list[Path]) -> list[str]:
    return sorted(f"{p.stem}.aec" for p in corpus)


def test_ray_outputs_are_the_local_commands_bytes_and_pixels(corpus, local_out, ray_out, tmp_path):
    assert sorted(os.listdir(ray_out)) == sorted([*aec_names(corpus), distributed.RESULTS_NAME])
    assert_same_files(local_out, ray_out, aec_names(corpus))
    rows = read_table(ray_out)
    assert [Path(r["input"]).name for r in rows] == [p.name for p in corpus]
    assert all(r["error"] == "" and int(r["bytes"]) == (ray_out / Path(r["output"]).name).stat().st_size for r in rows)
    assert {float(r["quality"]) for r in rows} == {jobs.EncodeOptions().quality}
    # decode: the local command on the local files, --ray on the folder of the cluster's files
    here, there = tmp_path / "here", tmp_path / "there"
    assert run("decode", *sorted(local_out.glob("*.aec")), "-o", f"{here}/").exit_code == 0
    result = run("decode", ray_out, "-o", f"{there}/", "--ray")
    assert result.exit_code == 0, result.stderr
    for name in (p.stem + ".png" for p in corpus):
        with Image.open(here / name) as a, Image.open(there / name) as b:
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), name
    assert len(read_table(there)) == len(corpus)


def killing_worker(marker: Path) -> type:
    """An ``EncodeWorker`` whose coder exits its process at once after its first written output, before the
    batch returns, as a killed worker would; only the first (the one that creates ``marker``) dies. Defined
    here, so Ray ships the class to its workers by value; the write and everything else is the real code."""

    class KillingEncoder(jobs.Encoder):
        def write(self, dest: str, data: bytes) -> None:
            super().write(dest, data)
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                return
            os._exit(1)

    class KillingWorker(distributed._Worker):
        coder_class = KillingEncoder

    return KillingWorker


def test_a_killed_worker_is_retried_and_no_output_is_lost_or_partial(cluster, corpus, local_out, tmp_path, monkeypatch):
    """The first worker to write an output dies: Ray restarts it and retries the batch, whose output the dead
    worker had already written. The Python entry point returns the Ray Dataset of results."""
    out, marker = tmp_path / "out", tmp_path / "killed"
    monkeypatch.setattr(distributed, "EncodeWorker", killing_worker(marker))
    results = distributed.encode_paths([str(p) for p in corpus], f"{out}/", tile=int(TILE), workers=2)
    rows = results.take_all()
    assert marker.exists()  # a worker did die
    assert sorted(Path(r["output"]).name for r in rows) == aec_names(corpus)
    assert all(r["error"] == "" and not r["skipped"] for r in rows), rows
    assert sorted(os.listdir(out)) == aec_names(corpus)  # each once, and no .part left behind
    assert_same_files(local_out, out, aec_names(corpus))


def test_rerun_skips_with_skip_existing_and_refuses_without(corpus, ray_out):
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ray_out.glob("*.aec")}
    args = ("encode", corpus[0].parent, "-o", ray_out, "--tile", TILE, "--ray")
    skipped = run(*args, "--skip-existing")
    assert skipped.exit_code == 0, skipped.stderr
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ray_out.glob("*.aec")} == before
    assert all(r["skipped"] == "True" and r["error"] == "" for r in read_table(ray_out))
    assert aecodec_lines(skipped.stderr) == [
        f"aecodec: 0 written, 8 skipped, 0 failed; results in {ray_out}/aecodec-results.csv"
    ]
    refused = run(*args)
    assert refused.exit_code == 2
    lines = aecodec_lines(refused.stderr)
    assert sorted(line.split(": ")[1] for line in lines if line.endswith("exists (use --force to overwrite)")) == [
        str(p) for p in corpus
    ]
    assert lines[-1] == f"aecodec: 8 of 8 inputs failed (see {ray_out}/aecodec-results.csv)"
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ray_out.glob("*.aec")} == before


def test_a_corrupt_input_fails_alone(cluster, corpus, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(corpus[0].read_bytes()[:200])  # a truncated PNG
    out = tmp_path / "out"
    result = run("encode", *corpus[:3], bad, "-o", f"{out}/", "--tile", TILE, "--ray")
    assert result.exit_code == 2
    assert sorted(os.listdir(out)) == sorted([*aec_names(corpus[:3]), distributed.RESULTS_NAME])
    errors = {Path(r["input"]).name: r["error"] for r in read_table(out) if r["error"]}
    assert list(errors) == ["bad.png"] and errors["bad.png"].startswith(f"{bad}: damaged image")
    assert aecodec_lines(result.stderr)[-1] == f"aecodec: 1 of 4 inputs failed (see {out}/aecodec-results.csv)"
