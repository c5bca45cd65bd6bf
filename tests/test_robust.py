"""Hostile and odd inputs: nothing crashes, nothing is lost (issue 7).

Decoder limits, damaged side chunks, odd image inputs, weights integrity, and outputs that survive
SIGKILL. The mutation fuzzer itself is in tests/test_fuzz.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import codec
from codec import api
from codec.cli import main
from codec.coding import tiling
from codec.core.tensors import to_uint8
from codec.format import bitstream as bs
from codec.format import files
from codec.weights.store import _load, load_codec, sha256_file
from scripts.fuzz import png_chunk, png_header_only
from tests.conftest import one_error_line


# -- helpers ------------------------------------------------------------------------------------
def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def aec(photo_like) -> bytes:
    """A valid 16×16 RGB file from the test network."""
    return codec.encode(photo_like(16, 16), quality=4)


def rebuilt(data: bytes, **fields) -> bytes:
    """The same file with some fields replaced (CRC recomputed by pack)."""
    return bs.pack(dataclasses.replace(bs.unpack(data, max_pixels=1 << 64), **fields))


def _image_bytes(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def png_16bit(width: int, height: int, color_type: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A 16-bit PNG built by hand (Pillow cannot write these) and its samples."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    samples = rng.integers(0, 1 << 16, (height, width, channels), dtype=np.uint16)
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
    return data + png_chunk(b"IEND", b""), samples


# -- decoder limits ---------------------------------------------------------------------------
def test_max_pixels_parameter(aec):
    assert codec.decode(aec).size == (16, 16)
    with pytest.raises(codec.FormatError, match="exceeds the limit of 255 pixels"):
        codec.decode(aec, max_pixels=255)
    # 16×16 passes the header limit of 256 but the network works on 64×64: that is refused too.
    with pytest.raises(codec.FormatError, match="working area of 64x64"):
        codec.decode(aec, max_pixels=256)
    assert codec.decode(aec, max_pixels=64 * 64).size == (16, 16)


@pytest.mark.parametrize("size", [(1, 1 << 27), (1 << 27, 1), (16385, 16383), (0xFFFFFFFF, 0xFFFFFFFF)])
def test_limits_are_checked_before_anything_is_allocated(aec, monkeypatch, size):
    """Sizes within or far over the pixel limit (2^27), or whose working area is over it: refused without touching
    the network."""

    def never(*args, **kwargs):
        raise AssertionError("the network ran for an over-limit file")

    monkeypatch.setattr(tiling, "decode", never)
    bad = rebuilt(aec, width=size[0], height=size[1])
    t0 = time.process_time()  # CPU time (all threads): other work on the machine does not count
    with pytest.raises(codec.FormatError, match="limit"):
        codec.decode(bad)
    assert time.process_time() - t0 < 1.0  # no pass over the pixels it claims


def test_cli_max_pixels(tmp_path, aec):
    src = tmp_path / "a.aec"
    src.write_bytes(aec)
    one_error_line(run("decode", src, "-o", tmp_path / "a.png", "--max-pixels", "4095"), "a.aec", "limit")
    assert not (tmp_path / "a.png").exists()
    assert run("decode", src, "-o", tmp_path / "a.png", "--max-pixels", "4096").exit_code == 0


def test_info_describes_files_over_the_limit(tmp_path, aec):
    """info allocates nothing for the image, so it describes any size; decode refuses it."""
    big = tmp_path / "big.aec"
    big.write_bytes(rebuilt(aec, width=70000, height=70000))
    result = run("info", big)
    assert result.exit_code == 0 and "70000x70000" in result.output
    one_error_line(run("decode", big, "-o", tmp_path / "big.png"), "exceeds the limit")


def test_entropy_decoder_never_reads_past_its_buffer(tmp_path, aec):
    """Regression: compressai's rANS decoder reads without bounds checks, and in bypass mode every 0xF
    count nibble adds 15 nibbles to read, so a flood of 0xFF bytes made it read ~15 bytes past the
    stream per stream byte, far beyond engine.guarded's zero padding (8 bytes per symbol): SIGSEGV at
    2 MB. Run in a subprocess, so a crash fails this test instead of killing the test run."""
    hostile = tmp_path / "hostile.aec"
    hostile.write_bytes(rebuilt(aec, streams=[[b"\xff" * 2_000_000, bs.unpack(aec).streams[0][1]]]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "codec.cli", "decode", str(hostile), "-o", str(tmp_path / "out.png")]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr.decode()[-2000:])
    assert b"Traceback" not in proc.stderr


def test_non_finite_network_output_is_still_an_image():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5]).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = to_uint8(x, 2, 2)
    assert out.dtype == np.uint8 and out[..., 0].tolist() == [[0, 255], [0, 128]]


# -- damaged side chunks ----------------------------------------------------------------------
def test_alpha_bomb_is_refused_before_pillow_sees_it(aec, monkeypatch):
    """An aLPH chunk claiming 100000×100000 is rejected from its IHDR alone: Pillow never opens it."""
    bad = rebuilt(aec, alpha=png_header_only(100_000, 100_000))

    def never(*args, **kwargs):
        raise AssertionError("Pillow opened the alpha plane")

    monkeypatch.setattr(api.Image, "open", never)
    with pytest.raises(codec.FormatError, match="alpha plane is 100000x100000"):
        codec.decode(bad)


@pytest.mark.parametrize("kind", ["empty", "gif", "nested-aec", "truncated", "garbage-idat", "rgb"])
def test_damaged_alpha_plane(aec, kind):
    plane = np.full((16, 16), 9, np.uint8)
    png = io.BytesIO()
    Image.fromarray(plane).save(png, format="PNG")
    payload = {
        "empty": b"",
        "gif": _image_bytes(plane, "GIF"),
        "nested-aec": aec,  # must not be decoded through our own Pillow plugin
        "truncated": png.getvalue()[:40],
        "garbage-idat": png_header_only(16, 16),
        "rgb": _image_bytes(np.zeros((16, 16, 3), np.uint8), "PNG"),
    }[kind]
    data = rebuilt(aec, alpha=payload)
    if kind == "rgb":  # a PNG of the right size in another mode is still an alpha plane
        assert codec.decode(data).mode == "RGBA"
        return
    with pytest.raises(codec.FormatError, match="alpha plane"):
        codec.decode(data)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_metadata_an_output_format_cannot_hold_is_an_error_not_a_loss(tmp_path, aec, suffix):
    """EXIF over JPEG's 64 KiB segment, or EXIF that TIFF cannot parse: exit 2 with a hint, no file."""
    exif = b"Exif\0\0" + bytes(70_000) if suffix == ".jpg" else b"\x13\x37 not a TIFF header"
    src = tmp_path / "m.aec"
    src.write_bytes(rebuilt(aec, exif=exif))
    one_error_line(run("decode", src, "-o", tmp_path / f"m{suffix}"), "EXIF", ".png")
    assert not (tmp_path / f"m{suffix}").exists()
    assert run("decode", src, "-o", tmp_path / "m.png").exit_code == 0
    with Image.open(tmp_path / "m.png") as im:
        assert im.info["exif"].endswith(exif[6:] if suffix == ".jpg" else exif)


# -- image inputs -------------------------------------------------------------------------------
def test_empty_file_and_empty_stdin(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    one_error_line(run("encode", empty), "empty.png", "empty input")
    assert not empty.with_suffix(".aec").exists()
    result = run("encode", "-", input=b"")
    one_error_line(result, "stdin: empty input")
    assert result.stdout_bytes == b""


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.1, 0.6])
def test_truncated_png_and_jpeg(tmp_path, photo_like, fmt, keep):
    whole = _image_bytes(photo_like(64, 64), fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    line = one_error_line(run("encode", cut), cut.name)
    assert "damaged image" in line or "not a readable image" in line
    assert not cut.with_suffix(".aec").exists()


def test_cmyk_jpeg(tmp_path, photo_like):
    src = tmp_path / "cmyk.jpg"
    Image.fromarray(photo_like(24, 40)).convert("CMYK").save(src, quality=95)
    with Image.open(src) as im:
        assert im.mode == "CMYK"
        expected = np.asarray(im.convert("RGB"))
        assert np.array_equal(api.to_planes(im)[0], expected)
    assert run("encode", src).exit_code == 0
    assert run("decode", src.with_suffix(".aec"), "-o", tmp_path / "out.png").exit_code == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGB" and out.size == (40, 24)


def test_cmyk_profile_does_not_travel_with_rgb_pixels(photo_like):
    """The profile describes CMYK; after conversion it would mislabel the RGB pixels."""
    im = Image.fromarray(photo_like(8, 8)).convert("CMYK")
    im.info["icc_profile"] = b"unusable profile bytes"
    rgb, extra = api.to_planes(im)
    assert "icc" not in extra and np.array_equal(rgb, np.asarray(im.convert("RGB")))


def test_palette_png_with_partial_transparency(tmp_path, photo_like):
    src = tmp_path / "pal.png"
    im = Image.fromarray(photo_like(20, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(src, transparency=bytes(range(0, 256, 16)))  # tRNS: 16 alpha levels
    with Image.open(src) as again:
        expected_alpha = np.asarray(again.convert("RGBA"))[:, :, 3]
    assert len(np.unique(expected_alpha)) > 2
    assert run("encode", src).exit_code == 0
    assert run("decode", src.with_suffix(".aec"), "-o", tmp_path / "out.png").exit_code == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out)[:, :, 3], expected_alpha)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_colour_key_transparency_becomes_alpha(photo_like, mode):
    """A grey or RGB PNG with a tRNS colour key: the keyed pixels must stay transparent."""
    arr = photo_like(12, 12) if mode == "RGB" else photo_like(12, 12)[:, :, 0]
    key = tuple(int(v) for v in arr[0, 0]) if mode == "RGB" else int(arr[0, 0])
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG", transparency=key)
    with Image.open(buf) as im:
        out = codec.decode(codec.encode(im))
    assert out.mode == ("LA" if mode == "L" else "RGBA")
    alpha = np.asarray(out)[..., -1]
    keyed = np.all(arr == np.array(key), axis=-1) if mode == "RGB" else arr == key
    assert np.array_equal(alpha, np.where(keyed, 0, 255))


@pytest.mark.parametrize("color_type,mode", [(2, "RGB"), (4, "RGBA"), (6, "RGBA")])
def test_sixteen_bit_color_and_alpha_pngs(tmp_path, color_type, mode):
    data, samples = png_16bit(9, 5, color_type, np.random.default_rng(color_type))
    src = tmp_path / "deep.png"
    src.write_bytes(data)
    assert run("encode", src).exit_code == 0
    assert run("decode", src.with_suffix(".aec"), "-o", tmp_path / "out.png").exit_code == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == mode and out.size == (9, 5)
        if mode == "RGBA":  # alpha is lossless: the top 8 bits of the 16-bit samples
            assert np.array_equal(np.asarray(out)[:, :, 3], (samples[:, :, -1] >> 8).astype(np.uint8))


@pytest.mark.parametrize("orientation,turns", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_turns_the_pixels_the_right_way(photo_like, orientation, turns):
    """Checked against np.rot90, not against Pillow's own transpose; lossless PNG source."""
    arr = photo_like(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", exif=exif)
    with Image.open(buf) as im:
        rgb, extra = api.to_planes(im)
    assert np.array_equal(rgb, np.rot90(arr, turns))
    kept = Image.Exif()
    kept.load(extra["exif"])
    assert kept.get(0x0112, 1) == 1


@pytest.mark.parametrize("side", [100_000, 10_000])
def test_png_claiming_huge_size_is_refused(tmp_path, side):
    """100000² is over Pillow's error threshold, 10000² only over its warning one: both refused, at once."""
    src = tmp_path / "bomb.png"
    src.write_bytes(png_header_only(side, side, color_type=2))
    t0 = time.process_time()  # CPU time (all threads): other work on the machine does not count
    one_error_line(run("encode", src), "bomb.png", "too large")
    assert time.process_time() - t0 < 5  # its pixels never decoded
    assert not src.with_suffix(".aec").exists()


def test_eps_is_not_handed_to_ghostscript(tmp_path, monkeypatch):
    src = tmp_path / "x.png"
    src.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    monkeypatch.setattr(subprocess, "Popen", None)  # nothing may spawn a process for this input
    one_error_line(run("encode", src), "not a readable image")


def test_aec_given_to_encode(tmp_path, aec):
    src = tmp_path / "x.png"
    src.write_bytes(aec)
    one_error_line(run("encode", src), "already an .aec file")


MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"]


@pytest.mark.parametrize("mode", MODES + ["I", "I;16", "I;16B", "F"])
def test_every_pillow_mode_normalizes(mode):
    im = Image.new(mode, (5, 3))
    rgb, extra = api.to_planes(im)
    assert rgb.shape == (3, 5, 3) and rgb.dtype == np.uint8
    assert ("alpha" in extra) == (mode in ("LA", "La", "PA", "RGBA", "RGBa"))
    assert (extra.get("layout") == bs.LAYOUT_GRAY) == (mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "F"))


@pytest.mark.parametrize("image", [Image.new("RGB", (0, 4)), np.zeros((0, 3, 3), np.uint8)])
def test_empty_image_is_refused(image):
    with pytest.raises(codec.AecError, match="empty image"):
        codec.encode(image)


def test_error_for_a_file_name_with_a_newline_is_one_line(tmp_path):
    odd = tmp_path / "two\nlines.png"
    odd.write_text("not an image")
    one_error_line(run("encode", odd), "not a readable image")


def test_library_warnings_become_one_line_each(tmp_path, photo_like):
    """A JPEG with damaged EXIF encodes; Pillow's complaint is an ``aecodec: warning:`` line."""
    src = tmp_path / "odd-exif.jpg"
    tiff = b"MM\0*\0\0\0\x08\0\x05\x01\x12\0\x03\xff\xff\xff\xff\0\x06"  # IFD runs past its end
    Image.fromarray(photo_like(8, 8)).save(src, exif=b"Exif\0\0" + tiff)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = run("encode", src)
    assert result.exit_code == 0
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("aecodec: warning: ") for line in lines), result.stderr


def test_batch_decode_names_each_failure_and_does_the_rest(tmp_path, photo_like):
    good = []
    for i in range(2):
        path = tmp_path / f"good{i}.aec"
        path.write_bytes(codec.encode(photo_like(8, 8, seed=i)))
        good.append(path)
    bad = tmp_path / "bad.aec"
    bad.write_bytes(good[0].read_bytes()[:-1])
    missing = tmp_path / "missing.aec"
    out = tmp_path / "out"
    result = run("decode", good[0], bad, missing, good[1], "-o", f"{out}/")
    assert result.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["good0.png", "good1.png"]
    lines = result.stderr.strip().splitlines()
    assert any(str(bad) in line and "CRC" in line for line in lines), lines
    assert any(str(missing) in line and "no such file" in line for line in lines), lines
    assert lines[-1] == "aecodec: 2 of 4 inputs failed (see above)"


# -- weights integrity ----------------------------------------------------------------------------
def _weights_file(folder: Path) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    return folder / manifest["models"][manifest["default"]]["file"]


@pytest.mark.parametrize("damage", ["flipped-byte", "missing-file", "missing-manifest"])
def test_damaged_weights_are_one_line_errors(tmp_path, photo_like, weights_copy, damage):
    png = tmp_path / "in.png"
    Image.fromarray(photo_like(8, 8)).save(png)
    aec = tmp_path / "in.aec"
    aec.write_bytes(codec.encode(photo_like(8, 8), codec=load_codec()))  # made before the damage
    path = _weights_file(weights_copy)
    if damage == "flipped-byte":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        expected = "does not match its manifest sha256"
    elif damage == "missing-file":
        path.unlink()
        expected = "is missing"
    else:
        (weights_copy / "manifest.json").unlink()
        expected = "no weights manifest"
    _load.cache_clear()  # the codec loaded above is cached per process; a new process would load afresh
    one_error_line(run("encode", png, "-o", tmp_path / "out.aec"), expected)
    one_error_line(run("decode", aec, "-o", tmp_path / "out.png"))
    assert not (tmp_path / "out.aec").exists() and not (tmp_path / "out.png").exists()


def test_loading_weights_never_unpickles(tmp_path, weights_copy, monkeypatch, photo_like):
    path = _weights_file(weights_copy)
    # A pickle under the weights' name, with a manifest hash to match: refused, not loaded.
    pickled = tmp_path / "pickled"
    shutil.copytree(weights_copy, pickled)
    torch.save({"g_a.0.weight": torch.zeros(1)}, pickled / path.name)
    manifest = json.loads((pickled / "manifest.json").read_text())
    entry = manifest["models"][manifest["default"]]
    entry["sha256"] = sha256_file(pickled / path.name)
    (pickled / "manifest.json").write_text(json.dumps(manifest))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("weights loading tried to unpickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, no_unpickling)
    _load.cache_clear()
    assert load_codec().model_id == "test-model"  # the real (safetensors) weights load fine
    monkeypatch.setenv("AECODEC_WEIGHTS", str(pickled))
    png = tmp_path / "in.png"
    Image.fromarray(photo_like(8, 8)).save(png)
    one_error_line(run("encode", png), "cannot read weights")


# -- no data loss -----------------------------------------------------------------------------------
#: The command, in a process whose atomic writes wait two minutes between the written temporary and the move
#: into place (``files._move_into_place``), long enough for a test to kill it there.
SLOW_WRITES_CLI = (
    "import time; from codec.format import files; move = files._move_into_place; "
    "files._move_into_place = lambda *args: (time.sleep(120), move(*args)); "
    "from codec.cli import main; main()"
)


def _kill_mid_write(args: list[str], folder: Path, final: str) -> subprocess.Popen:
    """Run the CLI with its writes held before the move into place; SIGKILL it once its temporary is written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITES_CLI, *args], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a hang guard only: on a busy machine the start alone may take a minute
    while not any(p.stat().st_size for p in folder.glob(f".{final}.*.part")):  # created and written, not just created
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the temporary output never appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    return proc


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_sigkill_mid_write_leaves_no_partial_file(tmp_path, photo_like, command):
    src = tmp_path / ("in.png" if command == "encode" else "in.aec")
    if command == "encode":
        Image.fromarray(photo_like(16, 16)).save(src)
        dest, force = tmp_path / "out.aec", []  # a new name: must not appear at all
    else:
        src.write_bytes(codec.encode(photo_like(16, 16)))
        dest, force = tmp_path / "out.png", ["--force"]  # overwriting: the old content must survive
        dest.write_bytes(b"old content")
    before = src.read_bytes()
    proc = _kill_mid_write([command, str(src), "-o", str(dest), *force], tmp_path, dest.name)
    assert proc.returncode == -signal.SIGKILL
    if command == "encode":
        assert not dest.exists()
    else:
        assert dest.read_bytes() == b"old content"
    assert src.read_bytes() == before
    (part,) = tmp_path.glob(f".{dest.name}.*.part")  # the kill came after the full write, before the rename
    assert part.stat().st_size > 0


def test_atomic_write_respects_umask_and_cleans_up(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "a.bin", b"data", force=False)
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)  # the move with --force
    with pytest.raises(OSError):
        files.write_atomic(tmp_path / "b.bin", b"data", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
