"""The aecodec command line: outputs, overwrite rules, stdin/stdout, exit codes, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.format import bitstream as bs
from tests.conftest import one_error_line


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_encode_decode_default_names(png):
    assert run("encode", png).exit_code == 0
    aec = png.with_suffix(".aec")
    assert aec.exists()
    png.rename(png.with_name("orig.png"))
    assert run("decode", aec).exit_code == 0
    with Image.open(png) as im:
        assert im.size == (80, 48)


def test_output_option_and_formats(png, tmp_path):
    aec = tmp_path / "x.aec"
    assert run("encode", png, "-o", aec, "-q", "6.5").exit_code == 0
    for name in ("a.jpg", "b.webp", "c.tif", "d.png"):
        assert run("decode", aec, "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            assert im.size == (80, 48)
    one_error_line(run("decode", aec, "-o", tmp_path / "e.xyz"))


def test_no_overwrite_without_force(png):
    out = png.with_suffix(".aec")
    out.write_bytes(b"precious")
    one_error_line(run("encode", png))
    assert out.read_bytes() == b"precious"
    assert run("encode", png, "--force").exit_code == 0
    assert out.read_bytes()[:4] == bs.MAGIC


def test_never_overwrites_input(tmp_path, png):
    one_error_line(run("encode", png, "-o", png, "--force"))
    with Image.open(png) as im:
        assert im.size == (80, 48)


def test_many_inputs_to_folder_with_one_bad(tmp_path, mixed_inputs):
    out = tmp_path / "out"
    result = run("encode", *mixed_inputs, "-o", f"{out}/")  # a trailing / names a folder to create
    assert result.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["img.aec", "two.aec"]
    assert "bad.png" in result.stderr


@pytest.mark.parametrize("batch", ["1", "3"])
def test_batched_folder_run_matches_one_at_a_time(tmp_path, png, photo_like, batch):
    """--batch groups same-size inputs into one network pass; a bad input or an existing output
    fails alone, and every written file decodes like the one-image API's."""
    from codec.api import decode, encode

    srcs = [png]
    for i, (h, w) in enumerate([(48, 80), (30, 70), (48, 80), (64, 64)]):
        srcs.append(tmp_path / f"p{i}.png")
        Image.fromarray(photo_like(h, w, seed=10 + i)).save(srcs[-1])
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p1.aec").write_bytes(b"precious")
    result = run("encode", *srcs[:3], bad, *srcs[3:], "-o", out, "--batch", batch, "-q", "4")
    assert result.exit_code == 2
    assert "bad.png" in result.stderr and "p1.aec: exists" in result.stderr
    assert (out / "p1.aec").read_bytes() == b"precious"
    written = sorted(p.name for p in out.iterdir())
    assert written == ["img.aec", "p0.aec", "p1.aec", "p2.aec", "p3.aec"]
    decoded = tmp_path / "decoded"
    aecs = [out / n for n in written if n != "p1.aec"]
    assert run("decode", *aecs, "-o", f"{decoded}/", "--batch", batch).exit_code == 0
    for aec in aecs:
        src = png if aec.stem == "img" else tmp_path / f"{aec.stem}.png"
        with Image.open(src) as im:
            ref = np.asarray(decode(encode(im, 4)), dtype=int)
        with Image.open(decoded / f"{aec.stem}.png") as got:
            assert np.abs(np.asarray(got, dtype=int) - ref).max() <= 1


def test_bad_batch_size(png):
    one_error_line(run("encode", png, "--batch", "-1"))


def test_info(png, tmp_path):
    aec = tmp_path / "x.aec"
    run("encode", png, "-o", aec, "-q", "2.5")
    result = run("info", aec)
    assert result.exit_code == 0
    assert "80x48" in result.output and re.search(r"quality:\s+2.5\n", result.output) and "RGB" in result.output
    assert re.search(r"model kind:\s+gain-msh\n", result.output) and re.search(r"streams:\s+2 per tile", result.output)


@pytest.mark.parametrize("q", ["0.5", "10.5"])
def test_quality_out_of_range(png, q):
    one_error_line(run("encode", png, "-q", q))


@pytest.mark.parametrize("kind", ["magic", "version", "truncated", "crc", "weights", "empty", "missing"])
def test_malformed_files_exit_2(tmp_path, png, kind):
    aec = tmp_path / "x.aec"
    run("encode", png, "-o", aec)
    data = aec.read_bytes()
    f = bs.unpack(data)
    bad = tmp_path / "bad.aec"
    if kind == "magic":
        bad.write_bytes(b"GIF8" + data[4:])
    elif kind == "version":
        body = bytearray(data[:-4])
        body[4] = 99
        import struct
        import zlib

        bad.write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(bytes(body))))
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "crc":
        bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif kind == "weights":
        f.weights_hash = b"\xff" * 8
        bad.write_bytes(bs.pack(f))
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        bad = tmp_path / "nope.aec"
    result = run("decode", bad, "-o", tmp_path / "out.png")
    one_error_line(result)
    assert not (tmp_path / "out.png").exists()
    if kind == "weights":
        assert "does not have" in result.stderr
    one_error_line(run("info", bad)) if kind not in ("weights",) else None


def test_text_file_named_png(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    one_error_line(run("encode", fake))
    assert not fake.with_suffix(".aec").exists()


@pytest.mark.slow
def test_stdin_stdout_subprocess(png, tmp_path):
    """Real process: bytes through pipes, exit codes as the shell sees them."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "codec.cli"]
    enc = subprocess.run(cmd + ["encode", "-", "-q", "3"], input=png.read_bytes(), capture_output=True, env=env)
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:4] == bs.MAGIC
    dec = subprocess.run(cmd + ["decode", "-"], input=enc.stdout, capture_output=True, env=env)
    assert dec.returncode == 0, dec.stderr
    out = tmp_path / "piped.png"
    out.write_bytes(dec.stdout)
    with Image.open(out) as im:
        assert im.size == (80, 48)
    empty = subprocess.run(cmd + ["decode", "-"], input=b"", capture_output=True, env=env)
    assert empty.returncode == 2
    assert empty.stderr.decode().strip().count("\n") == 0 and b"Traceback" not in empty.stderr


def test_decoded_pixels_match_api(png, tmp_path):
    import codec

    aec = tmp_path / "x.aec"
    run("encode", png, "-o", aec, "-q", "5")
    run("decode", aec, "-o", tmp_path / "x.png")
    with Image.open(png) as src:
        api = np.asarray(codec.decode(codec.encode(src, quality=5)))
    with Image.open(tmp_path / "x.png") as im:
        assert np.array_equal(np.asarray(im), api)


def test_skip_existing_resumes_a_stopped_run(tmp_path, mixed_inputs):
    """--skip-existing leaves existing outputs alone and codes the rest; without it they are refused, one line
    each, as before."""
    good, bad, other = mixed_inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "img.aec").write_bytes(b"precious")  # as if an earlier run had written it
    result = run("encode", good, other, "-o", out, "--skip-existing", "-v")
    assert result.exit_code == 0, result.stderr
    assert (out / "img.aec").read_bytes() == b"precious"
    assert (out / "two.aec").read_bytes()[:4] == bs.MAGIC
    assert "img.aec: skipped, the output exists" in result.stderr
    before = (out / "two.aec").stat().st_mtime_ns
    again = run("encode", good, other, "-o", out, "--skip-existing")
    assert again.exit_code == 0 and again.stderr == "" and (out / "two.aec").stat().st_mtime_ns == before
    refused = run("encode", good, bad, other, "-o", out)
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert sum("exists (use --force to overwrite)" in line for line in lines) == 2
    assert lines[-1] == "aecodec: 3 of 3 inputs failed (see above)"
    decoded = tmp_path / "dec"
    assert run("decode", out / "two.aec", "-o", f"{decoded}/", "--skip-existing").exit_code == 0
    assert run("decode", out / "two.aec", "-o", f"{decoded}/", "--skip-existing").exit_code == 0
    assert run("decode", out / "two.aec", "-o", f"{decoded}/").exit_code == 2


def test_folders_and_globs_are_walked_as_with_ray(tmp_path, photo_like):
    """``encode FOLDER`` (or a quoted glob) codes the images below it without --ray, as --ray walks them: beside
    each file, or under ``-o DIR/`` keeping subfolders; ``decode`` walks ``.aec`` files the same way. Names
    that are not regular files (a FIFO, which a read would wait on forever) and hidden ones are skipped."""
    from codec.coding import jobs

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name, seed in (("a.png", 1), ("sub/b.png", 2), (".hidden.png", 3)):
        Image.fromarray(photo_like(16, 24, seed)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    os.mkfifo(photos / "pipe.png")
    os.mkfifo(photos / "sub" / "pipe.aec")
    walked = [(os.path.relpath(s, photos), n) for s, n in jobs.walk([str(photos)], jobs.EncodeOptions())]
    assert walked == [("a.png", "a"), ("sub/b.png", "sub/b")]  # the FIFO is not read: no hang below

    assert run("encode", photos).exit_code == 0
    assert (photos / "a.aec").read_bytes()[:4] == bs.MAGIC and (photos / "sub" / "b.aec").exists()
    result = run("decode", photos, "-o", f"{tmp_path}/out/")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a.png",
        "sub/b.png",
    ]
    globbed = run("encode", photos / "*.png", "-o", f"{tmp_path}/g/")  # quoted: the command expands it
    assert globbed.exit_code == 0 and os.listdir(tmp_path / "g") == ["a.aec"]
    one_error_line(run("encode", photos, "-o", tmp_path / "one.aec"))
    assert "-o must be a folder" in run("encode", photos, "-o", tmp_path / "one.aec").stderr
    one_error_line(run("decode", tmp_path / "g" / "*.txt"))
