"""The command line as a new user meets it (issue 16): start-up cost, output names, messages, honest
targets, decoded formats, info/models."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.coding import distributed
from codec.format import bitstream as bs
from tests.conftest import one_error_line

CLI = [sys.executable, "-m", "codec.cli"]


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def aec(png, tmp_path) -> Path:
    out = tmp_path / "img.aec"
    assert run("encode", png, "-o", out, "-q", "5").exit_code == 0
    return out


# -- start-up -------------------------------------------------------------------------------------
def _imported(args: list[str], cwd: Path) -> set[str]:
    """Top-level packages a CLI run imported (``-X importtime`` lists every module on stderr)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "codec.cli", *args], capture_output=True, cwd=cwd)
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["info", "AEC"],
        ["encode", "x.png", "-q", "3", "--max-bytes", "9"],
        ["encode", "x.png", "-q", "11"],  # above the model's range, read from the manifest
        ["decode"],
        ["import", "compressai", "mbt2018"],  # refused with its reason before the network stack loads
        ["import", "compressai", "mbt2018-mean", "-q", "one"],
    ],
)
def test_light_commands_import_no_network(args, aec, tmp_path):
    """Help, version, info and usage errors never import torch or CompressAI (each costs seconds)."""
    args = [str(aec) if a == "AEC" else a for a in args]
    names = _imported(args, tmp_path)
    assert "click" in names  # the listing worked
    assert not names & {"torch", "compressai", "numpy", "tqdm"}, names & {"torch", "compressai", "numpy", "tqdm"}


@pytest.mark.slow
def test_plain_encode_and_decode_never_import_ray(png, tmp_path):
    """Ray (an optional extra) is loaded by --ray only."""
    aec = tmp_path / "x.aec"
    for args in (["encode", str(png), "-o", str(aec)], ["decode", str(aec), "-o", str(tmp_path / "x.png")]):
        names = _imported(args, tmp_path)
        assert "torch" in names and not names & {"ray", "pyarrow", "pandas"}, names & {"ray", "pyarrow", "pandas"}
    assert (tmp_path / "x.png").exists()


def test_ray_options_without_ray_installed_or_without_ray(png, tmp_path):
    """--ray where Ray is not installed is one line saying how to install it; --workers alone is a usage error."""
    code = "import sys; sys.modules['ray'] = None; from codec.cli import main; main()"
    args = ["encode", str(png), "--ray", "-o", f"{tmp_path}/out/"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    hint = distributed.install_hint()
    assert proc.stderr.splitlines() == [f"aecodec: --ray needs Ray, which is not installed: {hint}"]
    assert not (tmp_path / "out").exists()
    one_error_line(run("decode", png, "--workers", "2"), "--ray-address and --workers need --ray")


@pytest.mark.slow
def test_import_codec_is_light_until_used():
    code = (
        "import sys, codec; assert 'torch' not in sys.modules, 'torch at import'; "
        "f = codec.encode; assert 'torch' in sys.modules and f.__module__ == 'codec.api'; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_lean_compressai_skips_datasets_but_loads_them_on_use():
    code = (
        "import sys; from codec.core.lean import import_compressai_lean; import_compressai_lean(); "
        "import codec.api; assert 'torch_geometric' not in sys.modules and 'torchvision' not in sys.modules; "
        "import compressai.datasets as d; assert d.ImageFolder.__name__ == 'ImageFolder'; "
        "from compressai.entropy_models import GaussianConditional as G; "
        "assert abs(G._standardized_quantile(0.5)) < 1e-9; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


# -- output names ---------------------------------------------------------------------------------
def test_collisions_refused_before_anything_is_written(tmp_path, photo_like):
    for name in ("a.png", "a.jpg"):
        Image.fromarray(photo_like(16, 16)).save(tmp_path / name)
    out = tmp_path / "out"
    one_error_line(run("encode", tmp_path / "a.png", tmp_path / "a.jpg", "-o", f"{out}/"), "a.png", "a.jpg", "a.aec")
    assert not out.exists()
    one_error_line(run("encode", tmp_path / "a.png", tmp_path / "a.jpg", "--force"), "a.png", "a.jpg")
    assert not (tmp_path / "a.aec").exists()


def test_several_inputs_need_a_folder(tmp_path, png, photo_like):
    other = tmp_path / "b.png"
    Image.fromarray(photo_like(16, 16)).save(other)
    one_error_line(run("encode", png, other, "-o", tmp_path / "both.aec"), "-o", "folder")
    assert not (tmp_path / "both.aec").exists()
    (tmp_path / "dir").mkdir()
    assert run("encode", png, other, "-o", tmp_path / "dir").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["b.aec", "img.aec"]


# -- messages -------------------------------------------------------------------------------------
def test_verbose_summary_and_quiet(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "v.aec", "-v", "-q", "4")
    assert result.exit_code == 0
    (line,) = result.stderr.strip().splitlines()
    size = (tmp_path / "v.aec").stat().st_size
    assert f"{size} bytes" in line and f"{size * 8 / (80 * 48):.4f} bpp" in line and "quality 4" in line, line
    assert run("encode", png, "-o", tmp_path / "q.aec", "--quiet").stderr == ""
    one_error_line(run("encode", png, "-v", "--quiet"), "-v", "--quiet")
    result = run("decode", tmp_path / "v.aec", "-o", tmp_path / "v.png", "-v")
    assert "v.png" in result.stderr and "80x48 RGB" in result.stderr and "quality 4" in result.stderr


def test_redirected_run_has_no_bar_and_counts_failures(tmp_path, mixed_inputs):
    """stderr to a file: no progress bar, each error on its own line, the failure count last."""
    log = tmp_path / "log"
    with open(log, "wb") as err:
        proc = subprocess.run([*CLI, "encode", *mixed_inputs, "-o", f"{tmp_path}/out/"], stderr=err)
    assert proc.returncode == 2
    text = log.read_text()
    assert "\r" not in text and "it/s" not in text and "MP" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 2 and "bad.png" in lines[0] and lines[0].startswith("aecodec: ")
    assert lines[1] == "aecodec: 1 of 3 inputs failed (see above)"


# -- honest targets -------------------------------------------------------------------------------
def test_unreachable_target_bpp_fails_and_says_what_was_reached(tmp_path, photo_like):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(photo_like(3, 3)).save(tiny)
    line = one_error_line(run("encode", tiny, "--target-bpp", "8"), "tiny.png", "not reached", "bpp")
    assert not tiny.with_suffix(".aec").exists()
    reached = float(line.split("gives ")[1].split(" bpp")[0])
    assert reached > 8


def test_reachable_targets_are_met(png, tmp_path):
    out = tmp_path / "t.aec"
    result = run("encode", png, "-o", out, "--target-bpp", "3", "-v")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size * 8 / (80 * 48) <= 3
    assert f"quality {bs.unpack(out.read_bytes()).quality:g}" in result.stderr  # the chosen quality is shown
    line = one_error_line(run("encode", png, "-o", tmp_path / "m.aec", "--max-bytes", "20"), "20 bytes", "needs")
    assert re.search(r"needs \d+ bytes$", line), line  # the unit, as --target-bpp's message gives it
    assert not (tmp_path / "m.aec").exists()


@pytest.mark.parametrize("search", [["--max-bytes", "50000"], ["--target-bpp", "1"]])
def test_quality_with_a_search_is_a_usage_error(png, search):
    one_error_line(run("encode", png, "-q", "3", *search), "-q")
    assert not png.with_suffix(".aec").exists()


# -- decoded formats ------------------------------------------------------------------------------
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def test_lossy_outputs_use_high_quality(aec, tmp_path):
    assert run("decode", aec, "-o", tmp_path / "ref.png").exit_code == 0
    ref = np.asarray(Image.open(tmp_path / "ref.png"))
    default = tmp_path / "d.webp"
    assert run("decode", aec, "-o", default).exit_code == 0
    assert run("decode", aec, "-o", tmp_path / "p.webp", "--out-quality", "80").exit_code == 0  # Pillow's default
    assert _psnr(np.asarray(Image.open(default)), ref) > _psnr(np.asarray(Image.open(tmp_path / "p.webp")), ref)


def test_alpha_is_not_dropped_silently(tmp_path, photo_like):
    src = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([photo_like(16, 24), np.full((16, 24), 90, np.uint8)]), "RGBA").save(src)
    assert run("encode", src).exit_code == 0
    aec = src.with_suffix(".aec")
    for ext in (".jpg", ".ppm", ".bmp"):
        one_error_line(run("decode", aec, "-o", tmp_path / f"x{ext}"), "alpha", "--drop-alpha")
        assert not (tmp_path / f"x{ext}").exists()
    assert run("decode", aec, "-o", tmp_path / "x.jpg", "--drop-alpha").exit_code == 0
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.mode == "RGB" and im.size == (24, 16)


@pytest.mark.parametrize("ext", ["ppm", "bmp"])
def test_ppm_bmp_and_stdout_format(aec, tmp_path, ext):
    assert run("decode", aec, "-o", tmp_path / f"x.{ext}").exit_code == 0
    with Image.open(tmp_path / f"x.{ext}") as im:
        assert im.format == ext.upper() and im.size == (80, 48)
    proc = subprocess.run([*CLI, "decode", aec, "-o", "-", "--format", ext], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    with Image.open(io.BytesIO(proc.stdout)) as im:
        assert im.format == ext.upper() and im.size == (80, 48)


def test_unknown_output_format_refused_up_front(aec, tmp_path):
    one_error_line(run("decode", aec, "-o", tmp_path / "x.xyz"), "x.xyz", "--format")


# -- info, models ---------------------------------------------------------------------------------
def test_info_several_files_and_json(aec, tmp_path, photo_like):
    second = tmp_path / "second.aec"
    Image.fromarray(photo_like(20, 30)).save(tmp_path / "s.png")
    assert run("encode", tmp_path / "s.png", "-o", second, "-q", "2").exit_code == 0
    result = run("info", aec, second, "--json")
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert [(r["file"], r["size"], r["quality"]) for r in records] == [
        (str(aec), "80x48", 5.0),
        (str(second), "30x20", 2.0),
    ]
    assert records[1]["bytes"] == second.stat().st_size
    missing = tmp_path / "missing.aec"
    result = run("info", aec, missing)
    assert result.exit_code == 2 and "80x48" in result.stdout and str(missing) in result.stderr


def test_models_and_unknown_model(png, test_weights):
    result = run("models")
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines() == [
        "overfit  q 1-12  (per image: no weights, each file carries its decoder)",
        "test-model  q 1-10  (default)",
    ]
    fitted, row = json.loads(run("models", "--json").stdout)
    assert row["id"] == "test-model" and row["default"] and row["present"]
    assert fitted["id"] == "overfit" and fitted["file"] is None and fitted["present"] and not fitted["experimental"]
    one_error_line(run("encode", png, "--model", "nope"), "'nope'", "test-model")
    assert run("encode", png, "--model", "test-model", "--threads", "1").exit_code == 0


def test_failed_write_is_exit_2_with_one_line(png, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    one_error_line(run("encode", png, "-o", blocker / "x.aec"), "x.aec", "cannot write")


def on_terminal(args: list, columns: int = 100) -> tuple[int, str]:
    """Run the command with stderr on a pty of ``columns`` columns: (exit status, what the terminal got)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.run([*CLI, *map(str, args)], stderr=slave, timeout=300)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_bar_on_a_terminal_with_errors_on_their_own_lines(tmp_path, mixed_inputs):
    """stderr on a terminal (a pty): the progress bar shows MP/s, and the error is a whole line of its own."""
    code, text = on_terminal(["encode", *mixed_inputs, "-o", f"{tmp_path}/out/"])
    assert code == 2
    assert "MP/s" in text and "MPps" not in text, text
    lines = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    assert any(line.startswith(f"aecodec: {mixed_inputs[1]}: not a readable image") for line in lines), lines


def test_no_bar_and_no_empty_line_on_a_terminal_without_columns(tmp_path, mixed_inputs):
    """A terminal of 0 columns (a detached pty) gets the messages alone: no bar, no empty lines."""
    code, text = on_terminal(["encode", *mixed_inputs, "-o", f"{tmp_path}/out/"], columns=0)
    assert code == 2
    text = text.replace("\r\n", "\n")  # the pty's line ends
    lines = text.split("\n")
    assert len(lines) == 3 and lines[2] == "" and "\r" not in text, repr(text)  # two lines, nothing else
    assert (
        lines[0].startswith(f"aecodec: {mixed_inputs[1]}: ") and lines[1] == "aecodec: 1 of 3 inputs failed (see above)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_one_tiled_image_shows_its_progress_on_a_terminal(tmp_path, photo_like, command):
    """A single large image: a bar over its tiles on a terminal (none in a log: see the redirected test)."""
    Image.fromarray(photo_like(130, 200)).save(tmp_path / "big.png")
    assert run("encode", tmp_path / "big.png", "--tile", "64", "-o", tmp_path / "big.aec").exit_code == 0
    args = ["encode", tmp_path / "big.png", "--tile", "64"] if command == "encode" else ["decode", tmp_path / "big.aec"]
    code, text = on_terminal([*args, "-o", f"{tmp_path}/out/"])
    assert code == 0, text
    assert ("/12" if command == "encode" else "/3") in text and "tile" in text, repr(text)  # 4 x 3 tiles, 3 rows
    code, quiet = on_terminal([*args, "-o", f"{tmp_path}/quiet/", "--quiet"])
    assert code == 0 and quiet == "", repr(quiet)


# -- issue 28: usage errors, output names, what -v and info say -----------------------------------
@pytest.mark.parametrize(
    "args, needle",
    [
        (["encode", "PNG", "-q", "abc"], "aecodec: -q/--quality: 'abc' is not a number"),
        (["encode", "PNG", "--threads", "0"], "aecodec: --threads: 0 is not in the range"),
        (["decode", "AEC", "--out-quality", "150"], "aecodec: --out-quality: 150"),
        (["decode", "AEC", "--format", "gif"], "aecodec: --format: 'gif' is not one of"),
        (["encod", "PNG"], "aecodec: No such command 'encod'"),
        (["bench", "nosuchdir"], "nosuchdir"),
        (["encode"], "Missing argument"),
        (["encode", "PNG", "--bogus"], "No such option '--bogus'"),
        (["--bogus"], "No such option '--bogus'"),
        (["encode", "PNG", "--tile"], "'--tile' requires an argument"),
    ],
)
def test_usage_errors_are_one_line(args, needle, png, aec):
    """click's Usage / Try / blank / Error block becomes one line, exit 2 (the exact line for a non-number)."""
    result = run(*[png if a == "PNG" else aec if a == "AEC" else a for a in args])
    line = one_error_line(result)
    assert line.startswith(needle) if needle.startswith("aecodec: ") else needle in line, line
    assert result.stdout == ""


def test_bare_command_still_shows_the_help():
    result = run()
    assert "Commands:" in result.output and "encode" in result.output


@pytest.mark.parametrize("name", ["x.png", "x.JPG", "x.webp", "x.gif"])
def test_encode_refuses_an_image_name_for_its_output(png, tmp_path, name):
    one_error_line(run("encode", png, "-o", tmp_path / name), name, ".aec")
    assert not (tmp_path / name).exists()
    assert run("encode", png, "-o", tmp_path / "x.data").exit_code == 0  # other names are the user's choice


@pytest.mark.parametrize("command", ["encode", "decode", "compare", "bench"])
def test_empty_output_name_is_a_usage_error(command, png, aec, tmp_path):
    src = {"encode": png, "decode": aec, "compare": png, "bench": tmp_path}[command]
    one_error_line(run(command, src, "-o", ""), "-o/--output", "empty")
    one_error_line(run(command, src, "-o", "", "-f"), "-o/--output", "empty")


def test_verbose_size_is_the_coded_one_after_exif_rotation(tmp_path, photo_like):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: an 80x48 file shows as 48x80
    Image.fromarray(photo_like(48, 80)).save(tmp_path / "rot.png", exif=exif.tobytes())
    result = run("encode", tmp_path / "rot.png", "-v")
    assert result.exit_code == 0 and ": 48x80, " in result.stderr, result.stderr
    assert "48x80" in run("info", tmp_path / "rot.aec").stdout


def test_info_failures_print_nothing_on_stdout_and_are_counted(aec, tmp_path):
    result = run("info", tmp_path / "missing.aec")
    assert result.exit_code == 2 and result.stdout == ""
    result = run("info", tmp_path / "missing.aec", aec, tmp_path / "gone.aec")
    assert result.exit_code == 2 and "80x48" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == "aecodec: 2 of 3 inputs failed (see above)", lines


# -- issue 28: a model whose weights are in the companion distribution --------------------------------
def test_a_model_of_the_companion_is_named_with_its_package_and_found_once_installed(
    weights_copy, png, tmp_path, monkeypatch
):
    """A non-default model whose file this installation lacks: one line naming the model and the package that
    has it; once that package (``aecodec_models``) is importable, the same loader finds the file there."""
    from codec.weights.shipping import COMPANION, COMPANION_HINT, COMPANION_MODULE
    from codec.weights.store import _load

    manifest = json.loads((weights_copy / "manifest.json").read_text())
    entry = manifest["models"][manifest["default"]]
    manifest["models"]["old-model"] = {**entry, "file": "old-model.safetensors"}
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    line = one_error_line(run("encode", png, "--model", "old-model", "-o", tmp_path / "x.aec"), "'old-model'")
    assert line.endswith(f"in the package {COMPANION}; {COMPANION_HINT}")
    assert "not installed" in run("models").stdout

    package = tmp_path / "site" / COMPANION_MODULE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(weights_copy / entry["file"], package / "old-model.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _load.cache_clear()
    assert run("encode", png, "--model", "old-model", "-o", tmp_path / "x.aec").exit_code == 0
    assert bs.unpack((tmp_path / "x.aec").read_bytes()).model_id == "old-model"


def test_install_hints_name_commands_that_work(monkeypatch):
    """No package index has aecodec nor aecodec-models: the hints name what works. Ray's: the [ray] extra's own
    requirements (as pyproject.toml has them), or a checkout's editable install; the companion's: the checkout
    folder its wheel is built from (tests/test_packaging.py builds it so)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    from codec.weights.shipping import COMPANION, COMPANION_HINT

    root = Path(__file__).resolve().parents[1]
    (line,) = re.findall(r"(?m)^ray = \[(.*)\]$", (root / "pyproject.toml").read_text())  # no tomllib on 3.10
    extra = re.findall(r'"([^"]+)"', line)
    hint = distributed.install_hint()
    named = re.findall(r"'([^']+)'", hint.split(" (")[0])

    def key(req: str) -> tuple:
        r = Requirement(req)
        return r.name, frozenset(r.extras), r.specifier

    assert hint.startswith("pip install '") and sorted(map(key, named), key=str) == sorted(map(key, extra), key=str)
    assert hint.endswith("(in a checkout of aecodec: pip install -e '.[ray]')")

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", missing)
    assert distributed.install_hint() == "in a checkout of aecodec: pip install -e '.[ray]'"
    command = re.search(r"\((pip wheel --no-deps (\S+))\)", COMPANION_HINT)
    assert command and (root / command.group(2) / "pyproject.toml").is_file()
    assert f'name = "{COMPANION}"' in (root / command.group(2) / "pyproject.toml").read_text()
    assert "pip install -e ." in COMPANION_HINT and f"pip install {COMPANION}" not in COMPANION_HINT


def test_help_states_the_measured_rate_of_the_lowest_quality():
    """``encode --help``'s bits at -q 1 are the Kodak mean of benchmarks/results/kodak/rd.csv (default model)."""
    import csv

    rd = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kodak" / "rd.csv"
    with open(rd, newline="") as f:
        (row,) = [r for r in csv.DictReader(f) if r["codec"] == "aecodec" and float(r["quality"]) == 1]
    text = " ".join(run("encode", "--help").stdout.split())
    assert f"1 (fewest bits: {float(row['bpp']):.2f} bpp on Kodak with the default model)" in text


def test_shell_completion_as_the_readme_says():
    """``_AECODEC_COMPLETE=bash_source aecodec`` prints the script; the script's requests complete commands."""
    script = CliRunner().invoke(main, [], prog_name="aecodec", env={"_AECODEC_COMPLETE": "bash_source"})
    assert script.exit_code == 0 and "_aecodec_completion" in script.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert '"$(_AECODEC_COMPLETE=bash_source aecodec)"' in readme
    env = {"_AECODEC_COMPLETE": "bash_complete", "COMP_WORDS": "aecodec enc", "COMP_CWORD": "1"}
    words = CliRunner().invoke(main, [], prog_name="aecodec", env=env)
    assert words.stdout.splitlines() == ["plain,encode"]  # click's bash protocol: type,value per line
