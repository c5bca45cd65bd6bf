"""Hostile inputs, round two (issue 15): racing writers, streams as outputs, short writes on stdout,
the Pillow plugin's error contract, one-line errors for the listed cases, multi-frame and deep inputs."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, UnidentifiedImageError

import codec
from codec import api
from codec.cli import main
from codec.core.errors import AecError
from codec.format import bitstream as bs
from codec.format import files
from tests.conftest import one_error_line

CLI = [sys.executable, "-m", "codec.cli"]


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


# -- item 3: never-overwrite is atomic; streams are written into --------------------------------
@pytest.mark.parametrize("mechanism", ["renameat2", "link"])
def test_two_racing_writers_one_wins_each_file(tmp_path, monkeypatch, mechanism):
    """Both writers pass any early check (a delay holds them between writing and moving into place):
    exactly one of them writes each destination and the other is told it exists."""
    if mechanism == "link":
        monkeypatch.setattr(files, "_renameat2", lambda: None)
    move = files._move_into_place

    def slow_move(*args) -> None:
        time.sleep(0.05)
        move(*args)

    monkeypatch.setattr(files, "_move_into_place", slow_move)
    dests = [tmp_path / "out" / f"t{i}.png" for i in range(8)]
    wins: dict[int, list[Path]] = {0: [], 1: []}
    refusals: dict[int, list[str]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def writer(k: int) -> None:
        start.wait()
        for dest in dests:
            try:
                files.write_output(str(dest), f"writer {k}".encode(), force=False)
                wins[k].append(dest)
            except AecError as e:
                refusals[k].append(str(e))

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins[0] + wins[1]) == sorted(dests)  # each destination won exactly once
    assert len(refusals[0]) + len(refusals[1]) == len(dests)
    assert all("exists" in msg and ".part" not in msg for msg in refusals[0] + refusals[1])
    for k in (0, 1):
        assert all(d.read_bytes() == f"writer {k}".encode() for d in wins[k])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(d.name for d in dests)  # no temporaries


def test_force_replaces_and_no_force_refuses(tmp_path):
    dest = tmp_path / "x.png"
    dest.write_bytes(b"old")
    with pytest.raises(AecError, match="exists"):
        files.write_output(str(dest), b"new", force=False)
    assert dest.read_bytes() == b"old"
    files.write_output(str(dest), b"new", force=True)
    assert dest.read_bytes() == b"new"


@pytest.mark.parametrize("force", [False, True])
def test_fifo_is_written_into_not_replaced(tmp_path, force):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    files.write_output(str(fifo), b"x" * 200_000, force=force)  # more than a pipe buffer
    reader.join(timeout=120)  # a hang guard only
    assert got == [b"x" * 200_000]
    assert fifo.is_fifo()


@pytest.mark.parametrize("force", [False, True])
def test_symlink_to_a_descriptor_is_written_through(tmp_path, force):
    """``out.png -> /proc/self/fd/N`` writes to descriptor N and the link stays a link."""
    r, w = os.pipe()
    link = tmp_path / "out.png"
    link.symlink_to(f"/proc/self/fd/{w}")
    try:
        files.write_output(str(link), b"through", force=force)
        os.close(w)
        assert os.read(r, 100) == b"through"
    finally:
        os.close(r)
    assert link.is_symlink()


@pytest.mark.slow
def test_dev_null_and_dev_stdout_need_no_force(aec_file, tmp_path):
    assert run("decode", aec_file, "-o", "/dev/null").exit_code == 0  # a character device: written into
    proc = subprocess.run([*CLI, "decode", str(aec_file), "-o", "/dev/stdout"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"\x89PNG")
    assert files.descriptor_of("/dev/stdout") == 1
    assert files.descriptor_of(str(tmp_path / "plain.png")) is None


# -- item 4: stdout ---------------------------------------------------------------------------------
def test_short_write_is_an_error(monkeypatch):
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(OSError, match="short write"):
        files._write_all(99, b"data")


@pytest.mark.slow
def test_closed_stdout_and_broken_pipe_exit_2(aec_file):
    closed = subprocess.run(
        [*CLI, "decode", str(aec_file), "-o", "-"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),
    )
    one_error_line(closed, "stdout: cannot write", "Bad file descriptor")
    proc = subprocess.Popen([*CLI, "decode", str(aec_file), "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before anything is written, as `| head -c 0` would
    proc.wait(timeout=120)
    proc.stdout = None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, None, proc.stderr.read())
    one_error_line(result, "stdout: cannot write", "Broken pipe")


def test_reader_that_leaves_early_is_a_failed_write(tmp_path, photo_like):
    """``aecodec decode big.aec -o - --format ppm | head -c 10``: 270 kB, more than a pipe holds, so the
    reader's leaving is seen."""
    big = tmp_path / "big.aec"
    big.write_bytes(codec.encode(photo_like(300, 300), quality=4))
    args = [*CLI, "decode", str(big), "-o", "-", "--format", "ppm"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    proc.wait(timeout=120)
    proc.stdout = None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, None, proc.stderr.read())
    one_error_line(result, "stdout: cannot write", "Broken pipe")


@pytest.mark.parametrize("command", ["info", "models"])
def test_text_output_to_a_closed_or_full_stdout_is_one_line(aec_file, command):
    """``info`` and ``models`` print text: lost output is an error too (it was exit 0, or a traceback)."""
    args = [*CLI, command, *([str(aec_file)] if command == "info" else [])]
    closed = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    one_error_line(closed, "stdout: cannot write", "Bad file descriptor")
    if Path("/dev/full").exists():
        with open("/dev/full", "wb") as full:
            one_error_line(subprocess.run(args, stdout=full, stderr=subprocess.PIPE), "No space left")


def test_binary_is_not_written_to_a_terminal(aec_file, monkeypatch):
    monkeypatch.setattr(os, "isatty", lambda fd: fd == 1)
    one_error_line(run("decode", aec_file, "-o", "-"), "terminal")
    one_error_line(run("decode", "-", input=aec_file.read_bytes()), "terminal")
    assert run("decode", aec_file, "-o", "-", "--force").exit_code == 0


# -- item 9: the Pillow plugin keeps Pillow's contract ---------------------------------------------
def _resized(data: bytes, width: int, height: int) -> bytes:
    """The same file claiming another size (CRC recomputed)."""
    return bs.pack(dataclasses.replace(bs.unpack(data, max_pixels=bs.NO_LIMIT), width=width, height=height))


@pytest.mark.parametrize("damage", ["crc", "truncated", "magic only"])
def test_damaged_aec_is_unidentified_not_format_error(aec_file, damage):
    data = aec_file.read_bytes()
    bad = {
        "crc": data[:-1] + bytes([data[-1] ^ 1]),
        "truncated": data[: len(data) // 2],
        "magic only": data[: len(bs.MAGIC)],
    }[damage]
    with pytest.raises(UnidentifiedImageError):  # an OSError, which imageio and ImageFolder catch
        Image.open(io.BytesIO(bad))


def test_decoding_failure_on_load_is_an_oserror(aec_file, monkeypatch):
    data = aec_file.read_bytes()
    f = bs.unpack(data)
    im = Image.open(io.BytesIO(bs.pack(dataclasses.replace(f, model_id="no-such-model"))))
    with pytest.raises(OSError, match="no-such-model"):
        im.load()


def test_max_image_pixels_is_pillows(aec_file, monkeypatch):
    """Pillow's own thresholds decide, whatever ours: warning above MAX_IMAGE_PIXELS, error above twice it."""
    data = aec_file.read_bytes()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(_resized(data, 15, 10)))  # 150 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_resized(data, 15, 14)))  # 210 > 2 x 100
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(io.BytesIO(_resized(data, 20000, 20000))) as im:  # over our own 2^27: Pillow's word holds
        assert im.size == (20000, 20000)


# -- item 8: each listed failure is one line, exit 2 (130 for Ctrl-C), naming the user's path ---------
@pytest.mark.parametrize("damage", ["list", "models list", "manifest folder", "weights folder"])
def test_broken_weights_setup_is_one_line(weights_copy, png, tmp_path, damage):
    manifest = weights_copy / "manifest.json"
    if damage == "list":
        manifest.write_text("[]")
    elif damage == "models list":
        manifest.write_text('{"models": []}')
    elif damage == "manifest folder":
        manifest.unlink()
        manifest.mkdir()
    else:
        entry = json.loads(manifest.read_text())
        weights = weights_copy / entry["models"][entry["default"]]["file"]
        weights.unlink()
        weights.mkdir()
    one_error_line(
        run("encode", png, "-o", tmp_path / "x.aec"), "manifest" if damage != "weights folder" else "not a file"
    )


def test_infinite_target_bpp(png, tmp_path):
    one_error_line(run("encode", png, "--target-bpp", "inf", "-o", tmp_path / "x.aec"), "finite")
    with pytest.raises(AecError, match="finite"):
        codec.encode(Image.open(png), target_bpp=float("inf"))


def test_unwritable_folder_names_the_output_not_the_temporary(aec_file, tmp_path, monkeypatch):
    """As root a read-only folder is writable, so the refusal the kernel would give is simulated."""
    real_open = os.open

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith(".part"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    dest = tmp_path / "ro" / "x.png"
    line = one_error_line(run("decode", aec_file, "-o", dest), f"{dest}: cannot write (Permission denied)")
    assert ".part" not in line


def test_overlong_name(aec_file, tmp_path):
    dest = tmp_path / ("x" * 300 + ".png")
    line = one_error_line(run("decode", aec_file, "-o", dest), "File name too long")
    assert ".part" not in line and str(dest) in line


def test_output_under_a_file_is_one_line(aec_file, tmp_path):
    blocker = tmp_path / "file.png"
    blocker.write_bytes(b"x")
    one_error_line(run("decode", aec_file, "-o", f"{blocker}/"), f"cannot write ({blocker} is not a folder)")
    assert blocker.read_bytes() == b"x"


def test_ctrl_c_while_loading_is_130(png, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("codec.coding.encoding.load_codec", interrupted)  # the encode path's loader
    one_error_line(run("encode", png, "-o", tmp_path / "x.aec"), "interrupted", code=130)


#: A fresh interpreter that starts the command as its console script does, with a SIGINT arriving while
#: ``codec.cli`` (whose own handler is not installed yet) is being imported.
CTRL_C_WHILE_STARTING = """
import importlib.abc, os, signal, sys, time
import _aecodec_start

class SlowCli(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "codec.cli":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        return None

sys.meta_path.insert(0, SlowCli())
sys.argv = ["aecodec", "--version"]
_aecodec_start.main()
"""


def test_ctrl_c_while_the_command_starts_is_130():
    proc = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_STARTING], capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "aecodec: interrupted\n")


# -- item 7: frames beyond the first are named; deep samples are scaled, not clipped --------------
def _frames(photo_like, n: int = 3) -> list[Image.Image]:
    return [Image.fromarray(photo_like(24, 32, seed=k)) for k in range(n)]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_multi_frame_input_warns_with_the_frame_count(tmp_path, photo_like, fmt):
    first, *rest = _frames(photo_like)
    src = tmp_path / f"anim.{fmt.lower()}"
    first.save(src, format=fmt, save_all=True, append_images=rest)
    assert Image.open(src).n_frames == 3
    result = run("encode", src, "-o", tmp_path / "x.aec")
    assert result.exit_code == 0, result.stderr
    assert f"aecodec: warning: {src}: has 3 frames" in result.stderr
    assert codec.decode((tmp_path / "x.aec").read_bytes()).size == (32, 24)


def test_single_frame_input_does_not_warn(png, tmp_path):
    result = run("encode", png, "-o", tmp_path / "x.aec")
    assert result.exit_code == 0 and "warning" not in result.stderr


def _coded_grey(image: Image.Image) -> np.ndarray:
    """The 8-bit grey the codec codes for ``image`` (before the network)."""
    rgb, extra = api.to_planes(image)
    assert extra["layout"] == bs.LAYOUT_GRAY
    return rgb[..., 0]


def test_float_image_in_unit_range_is_scaled():
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :].repeat(4, axis=0)
    assert np.array_equal(_coded_grey(Image.fromarray(ramp, "F"))[0], np.arange(256))
    big = ramp * 255  # data on Pillow's 0-255 scale stays there
    assert np.array_equal(_coded_grey(Image.fromarray(big, "F"))[0], np.arange(256))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 0x8000, 0xFFFF], [0, 128, 255]),  # 16-bit samples in mode I (a 16-bit PNG)
        ([0, 1 << 30, (1 << 31) - 1], [0, 128, 255]),  # 32-bit, not clipped to white
        ([-(1 << 31), 0, (1 << 31) - 1], [0, 128, 255]),  # signed 32-bit
    ],
)
def test_32_bit_integer_image_is_scaled(values, expected):
    arr = np.array([values], dtype=np.int32)
    assert _coded_grey(Image.fromarray(arr, "I"))[0].tolist() == expected


def test_32_bit_and_float_tiff_files(tmp_path):
    """As files: what the command reads from a float or 32-bit TIFF is the scaled ramp (the test network is
    untrained, so the decoded pixels say nothing about the input; the coded planes do)."""
    ramp = np.linspace(0, 1, 64, dtype=np.float32)[None, :].repeat(16, axis=0)
    for mode, arr in (("F", ramp), ("I", (ramp * ((1 << 31) - 1)).astype(np.int32))):
        src = tmp_path / f"{mode}.tif"
        Image.fromarray(arr, mode).save(src)
        coded = _coded_grey(files.open_image(src.read_bytes(), str(src)))
        assert coded[0, 0] == 0 and coded[0, -1] == 255 and abs(coded.mean() - 127.5) < 1, mode
        assert run("encode", src, "-o", tmp_path / f"{mode}.aec").exit_code == 0


# -- item 5: ICC profiles an output format cannot carry are refused, not dropped ------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_icc_over_the_format_limit_is_refused(photo_like, fmt):
    limit = files.ICC_LIMITS[fmt]
    image = Image.fromarray(photo_like(8, 8))
    image.info["icc_profile"] = b"\0" * (limit + 1)
    with pytest.raises(AecError, match=f"ICC profile \\({limit + 1} bytes\\) is over"):
        files.image_bytes(image, f"x.{fmt.lower()}", fmt)
    image.info["icc_profile"] = b"\0" * limit  # at the limit: written, and read back whole
    with Image.open(io.BytesIO(files.image_bytes(image, f"x.{fmt.lower()}", fmt))) as back:
        back.load()
        assert len(back.info["icc_profile"]) == limit


# -- item 6: info maps the file instead of reading it --------------------------------------------
@pytest.mark.parametrize("where", ["stream", "icc", "extra"])
def test_info_allocates_nothing_the_size_of_the_file(aec_file, tmp_path, where, monkeypatch):
    """Nor of any chunk: a 64 MB stream, ICC profile or unknown chunk stays in the mapped file."""
    f = bs.unpack(aec_file.read_bytes())
    big = tmp_path / "big.aec"
    blob = b"\0" * (64 << 20)
    fields = {
        "stream": {"streams": [[f.streams[0][0], blob]]},
        "icc": {"icc": blob[: bs.MAX_METADATA]},
        "extra": {"extra": {b"junk": blob}},
    }[where]
    big.write_bytes(bs.pack(dataclasses.replace(f, **fields)))
    del blob
    monkeypatch.setattr(files, "isolated", lambda fn, what: fn())  # measured here, not in info's child
    tracemalloc.start()
    try:
        result = run("info", big, "--json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["bytes"] == big.stat().st_size
    assert peak < 4 << 20, peak  # Python allocations during the call: 1/16 of the file (it was 5x the file)
