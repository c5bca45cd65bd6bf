"""aecodec encode/decode --ray: a Ray Data job on a local Ray cluster that this module starts (loopback only, no
dashboard, 2 CPUs). Its outputs are byte-identical to the local command's; a killed worker is retried by Ray
without a lost or partial output; --skip-existing resumes; a bad input fails alone and is named in the table.

The plan (which files, written where) is pure and tested without Ray."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
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


@pytest.fixture
def no_ray_start(monkeypatch):
    """Ray importable, but a test that reaches ``connect`` fails: the refusals below come before Ray starts."""
    pytest.importorskip("ray")

    def started(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(distributed, "connect", started)


def test_output_folders_that_cannot_hold_the_results_are_one_line_before_ray_starts(png, tmp_path, no_ray_start):
    """``-o afile/`` (a file), ``-o loop/`` (a symlink loop), ``-o /proc/x/``, or OUTDIR/aecodec-results.csv taken
    by a folder: one line and exit 2, as the local command gives, not a stopped job and a traceback at its end."""
    (tmp_path / "afile").write_bytes(b"a file")
    os.symlink("loop", tmp_path / "loop")
    (tmp_path / "out" / distributed.RESULTS_NAME).mkdir(parents=True)
    cases = {
        f"{tmp_path}/afile/": "cannot make or use this output folder (not a folder)",
        f"{tmp_path}/loop/": "cannot make or use this output folder (too many levels of symbolic links",
        "/proc/x/": "cannot make or use this output folder (",
        f"{tmp_path}/out/": f"{tmp_path}/out/{distributed.RESULTS_NAME}: not a file",
    }
    for output, says in cases.items():
        result = run("encode", png, "--ray", "-o", output)
        assert result.exit_code == 2, (output, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith("aecodec: ") and says in line, (output, line)
    assert (tmp_path / "afile").read_bytes() == b"a file" and not os.listdir(
        tmp_path / "out" / distributed.RESULTS_NAME
    )


def test_ctrl_c_still_writes_the_table_of_what_finished(png, tmp_path, monkeypatch):
    """Ctrl-C during a ``--ray`` job: "interrupted", exit 130, and OUTDIR/aecodec-results.csv with the rows that
    came back (the others: not coded)."""
    pytest.importorskip("ray")
    other = tmp_path / "other.png"
    other.write_bytes(png.read_bytes())
    out = tmp_path / "out"

    def interrupted(results):
        yield jobs.Outcome(str(png), f"{out}/img.aec", bytes=99, summary="done")
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "connect", lambda *args, **kwargs: None)
    monkeypatch.setattr(distributed, "job", lambda *args: None)
    monkeypatch.setattr(distributed, "outcomes", interrupted)
    result = run("encode", png, other, "--ray", "-o", f"{out}/")
    assert result.exit_code == 130 and aecodec_lines(result.stderr) == ["aecodec: interrupted"]
    rows = read_table(out)
    assert [(Path(r["input"]).name, r["bytes"], r["error"]) for r in rows] == [
        (png.name, "99", ""),
        ("other.png", "0", f"{other}: not coded, the job stopped"),
    ]


def test_without_ray_lines_drops_what_is_written_to_fd_2_and_keeps_our_lines(tmp_path):
    """What ``--quiet`` does to Ray's C++ log lines (written to descriptor 2 directly): dropped, while the
    command's own lines (``sys.stderr``) still reach stderr, and descriptor 2 is back afterwards."""
    code = (
        "import os, sys\n"
        "from codec.coding.distributed import without_ray_lines\n"
        "with without_ray_lines():\n"
        "    os.write(2, b'[2026 E 1 1] core_worker.cc:2465: a line of Ray\\n')\n"
        "    print('aecodec: ours', file=sys.stderr)\n"
        "os.write(2, b'after\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0 and proc.stderr == "aecodec: ours\nafter\n", proc.stderr


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
    assert {float(r["quality"]) for r in rows} == {jobs.EncodeOptions().checked().quality}
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


@pytest.mark.slow
def test_link_outputs_exist_and_a_fifo_in_a_walked_folder_is_skipped(cluster, corpus, local_out, tmp_path):
    """Outputs that are a dangling symlink or a symlink loop "exist" (exit 2), as for the local command; with
    --force the link itself is replaced. A FIFO named ``*.aec`` in the walked folder is skipped, not read
    (which would wait forever)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    names = aec_names(corpus)[:2]
    for name in names:
        (src / name).write_bytes((local_out / name).read_bytes())
    os.mkfifo(src / "pipe.aec")
    out.mkdir()
    dangling, loop = (out / Path(name).with_suffix(".png") for name in names)
    os.symlink(tmp_path / "nowhere", dangling)
    os.symlink(loop.name, loop)
    refused = run("decode", src, "--ray", "-o", f"{out}/")
    assert refused.exit_code == 2, refused.stderr
    errors = {Path(r["output"]).name: r["error"] for r in read_table(out)}
    assert sorted(errors) == [dangling.name, loop.name]  # the FIFO is no row
    assert all(errors[p.name].endswith(f"{p}: exists (use --force to overwrite)") for p in (dangling, loop)), errors
    forced = run("decode", src, "--ray", "-o", f"{out}/", "--force")
    assert forced.exit_code == 0, forced.stderr
    for path in (dangling, loop):
        assert not path.is_symlink() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [Path(r["input"]).name for r in read_table(out)] == names and not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_quiet_keeps_rays_own_lines_off_stderr(cluster, corpus, tmp_path, test_weights):
    """Ray's core prints ``core_worker.cc … E`` to stderr when it creates a Ray Data actor (once per process,
    past Python's logging): a command of its own, joining this module's cluster, with ``--quiet`` prints nothing."""
    import ray

    code = "from codec.cli import main; main()"
    args = ["encode", str(corpus[0]), "--ray", "-o", f"{tmp_path}/quiet/", "--tile", TILE, "--quiet"]
    env = {**os.environ, "AECODEC_WEIGHTS": test_weights, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=root, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "quiet" / f"{corpus[0].stem}.aec").exists()
