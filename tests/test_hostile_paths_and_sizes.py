"""Hostile paths and sizes (issue 28, round three): OS errors on paths, symlink loops, FIFOs in bench folders, odd EXIF,
output format limits, stored planes and metadata that lie about their size, shrinking files, the Pillow
plugin's descriptors, and what is promised across thread counts."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec import api
from codec.coding import decoding
from codec.format import bitstream as bs
from tests.conftest import one_error_line
from tests.test_hostile import run

CLI = [sys.executable, "-m", "codec.cli"]


def _loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


# -- item 1: OS errors on input paths -------------------------------------------------------------
def _bad_inputs(tmp_path: Path) -> dict[str, str]:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    return {
        "loop": str(_loop(tmp_path / "loop.aec")),
        "long": str(tmp_path / ("n" * 300 + ".aec")),
        "under a file": str(plain / "x.aec"),
        "proc mem": "/proc/self/mem",
    }


@pytest.mark.parametrize("command", ["info", "decode", "encode"])
@pytest.mark.parametrize("kind", ["loop", "long", "under a file", "proc mem"])
def test_os_errors_on_inputs_are_one_line(tmp_path, command, kind):
    src = _bad_inputs(tmp_path)[kind]
    out = str(tmp_path / "out" / ("x.png" if command == "decode" else "x.aec"))
    args = [command, src] + ([] if command == "info" else ["-o", out])
    line = one_error_line(run(*args))
    assert "internal error" not in line


@pytest.mark.parametrize("command", ["info", "decode", "encode"])
def test_closed_stdin_is_one_line(tmp_path, command):
    out = str(tmp_path / ("x.png" if command == "decode" else "x.aec"))
    args = [command, "-"] + ([] if command == "info" else ["-o", out])
    result = subprocess.run(
        CLI + args, stdin=subprocess.DEVNULL, capture_output=True, close_fds=True, preexec_fn=lambda: os.close(0)
    )
    line = one_error_line(result)
    assert "stdin" in line


# -- item 2: an output path that is a symlink loop ------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_output_symlink_loop_is_one_line_or_replaced(aec_file, png, tmp_path, force):
    for command, src, name in (("decode", aec_file, "out.png"), ("encode", png, "out.aec")):
        dest = _loop(tmp_path / name)
        result = run(command, src, "-o", dest, *(["-f"] if force else []))
        if force:  # the link is replaced by the output, as any existing file would be
            assert result.exit_code == 0, result.stderr
            assert not dest.is_symlink() and dest.stat().st_size > 0
        else:
            one_error_line(result, "exists")
            assert dest.is_symlink()


# -- item 3: compare and bench on symlink loops, FIFOs, folders and damaged images --------------
def test_compare_on_a_symlink_loop_is_one_line(tmp_path):
    one_error_line(run("compare", _loop(tmp_path / "loop.png"), "-o", tmp_path / "page.html"))


@pytest.mark.slow
def test_bench_skips_what_is_not_a_file_and_fails_only_the_damaged_image(tmp_path, photo_like):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo_like(64, 64, seed=i)).save(folder / f"ok{i}.png")
    buf = io.BytesIO()
    Image.fromarray(photo_like(64, 64, seed=5)).save(buf, format="PNG")
    (folder / "short.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "d.png").mkdir()
    os.mkfifo(folder / "x.png")
    _loop(folder / "loop.png")
    result = subprocess.run(
        CLI
        + ["bench", str(folder), "-q", "4", "--codecs", "jpeg", "--pillow-qualities", "50", "-o", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    for name in ("d.png", "x.png", "loop.png"):
        assert any(name in line and "skipped" in line for line in lines), (name, result.stderr)
    assert any("short.png" in line and "damaged" in line for line in lines), result.stderr
    assert "1 of 3 images failed" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    import json

    report = json.loads((tmp_path / "b" / "rd.json").read_text())
    assert report["images"] == ["ok0.png", "ok1.png"]


# -- item 4: EXIF orientation with a tag Pillow cannot re-write -----------------------------------
def _exif_rotated_with_rational_make(orientation: int) -> bytes:
    """Little-endian TIFF EXIF: Orientation (SHORT) and Make typed RATIONAL (Pillow expects ASCII)."""
    head = b"II*\x00" + struct.pack("<I", 8)
    entries = [
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0),
        struct.pack("<HHII", 0x010F, 5, 1, 8 + 2 + 2 * 12 + 4),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + head + ifd + struct.pack("<II", 1, 2)


def test_exif_upright_sets_only_the_orientation():
    raw = _exif_rotated_with_rational_make(8)
    out = api.exif_upright(raw)
    assert out is not None and len(out) == len(raw)
    assert sum(a != b for a, b in zip(raw, out, strict=True)) == 1
    assert api.exif_upright(b"garbage") is None and api.exif_upright(raw[:14]) is None


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_rotated_exif_with_a_rational_make_is_coded(tmp_path, photo_like, fmt):
    arr = photo_like(6, 10)
    src = tmp_path / f"rot.{fmt.lower()}"
    Image.fromarray(arr).save(src, format=fmt, exif=_exif_rotated_with_rational_make(8), lossless=True)
    with Image.open(src) as im:
        rgb, extra = api.to_planes(im)
    assert np.array_equal(rgb, np.rot90(arr, 1))
    assert api.exif_upright(extra["exif"]) == extra["exif"]  # already upright: orientation 1
    result = run("encode", src, "-o", tmp_path / "rot.aec")
    assert result.exit_code == 0, result.stderr
    with Image.open(src) as im:
        assert codec.decode(codec.encode(im, quality=2)).size == (6, 10)


# -- item 5: outputs larger than their format holds -----------------------------------------------
@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_image_over_the_format_limit_is_refused_up_front(tmp_path, suffix, monkeypatch):
    wide = bs.pack(bs.AecFile(65535, 1, 4.0, pixels=b"\x89PNG\r\n\x1a\n", streams=[]))
    src = tmp_path / "wide.aec"
    src.write_bytes(wide)
    monkeypatch.setattr(decoding, "decode_planes", lambda *a, **k: pytest.fail("decoded before the size check"))
    one_error_line(run("decode", src, "-o", tmp_path / f"out{suffix}"), "at most", "65535x1")
    assert not (tmp_path / f"out{suffix}").exists()


# -- item 12: the Pillow plugin closes its file after load() -------------------------------------
def test_plugin_load_leaves_no_descriptor_open(aec_file):
    fd_dir = Path("/proc/self/fd")
    before = len(list(fd_dir.iterdir()))
    for _ in range(20):
        im = Image.open(aec_file)
        im.load()
        assert im.size == (16, 16)
    assert len(list(fd_dir.iterdir())) <= before


# -- items 7-9: stored planes and metadata that lie about their size ------------------------------
def _encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _stored(width: int, height: int, pixels: bytes, **fields) -> bytes:
    return bs.pack(bs.AecFile(width, height, 4.0, streams=[], pixels=pixels, **fields))


def test_stored_webp_over_what_the_encoder_writes_is_refused_before_decoding(monkeypatch):
    from codec.format import stored

    side = 1 + int(stored.WEBP_MAX_PIXELS**0.5)
    data = _stored(side, side, _encoded(Image.new("RGB", (side, side), (1, 2, 3)), "WEBP"))
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("handed to Pillow"))
    with pytest.raises(bs.FormatError, match="at most"):
        codec.decode(data)


def test_stored_webp_within_the_limit_still_decodes():
    data = _stored(40, 30, _encoded(Image.new("RGB", (40, 30), (1, 2, 3)), "WEBP"))
    assert codec.decode(data).getpixel((39, 29)) == (1, 2, 3)


def _png_with_rows(width: int, height: int, rows: int, interlaced: bool = False) -> bytes:
    """An RGB PNG whose header says ``height`` rows and whose valid zlib stream holds only ``rows``."""
    import zlib

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    raw = b"".join(b"\0" + bytes([200, 100, 50] * width) for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, int(interlaced))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("where", ["pixels", "alpha"])
def test_stored_png_with_too_few_rows_is_an_error(where):
    short, full = _png_with_rows(8, 64, 3), _png_with_rows(8, 64, 64)
    assert codec.decode(_stored(8, 64, full)).getpixel((7, 63)) == (200, 100, 50)
    if where == "pixels":
        data = _stored(8, 64, short)
    else:
        data = _stored(8, 64, full, alpha=short)
    with pytest.raises(bs.FormatError, match="fewer rows"):
        codec.decode(data)


def test_png_raw_size_matches_what_pillow_writes(photo_like):
    """Checked against real PNGs of every colour type, plain and interlaced, inflated whole."""
    import zlib

    from codec.format import stored

    rgb = photo_like(13, 11)
    for mode in ("L", "RGB", "RGBA", "LA", "P", "1"):
        for interlace in (0, 1):
            im = Image.fromarray(rgb).convert(mode)
            png = _encoded(im, "PNG") if not interlace else _interlaced(im)
            depth, color, flag = png[24], png[25], png[28]
            assert flag == interlace
            idat, pos = b"", 8
            while pos < len(png):
                (length,) = struct.unpack(">I", png[pos : pos + 4])
                idat += png[pos + 8 : pos + 8 + length] if png[pos + 4 : pos + 8] == b"IDAT" else b""
                pos += 12 + length
            assert stored.png_raw_size(11, 13, depth, color, bool(interlace)) == len(zlib.decompress(idat)), mode
            assert stored.png_is_complete(png)


def _interlaced(im: Image.Image) -> bytes:
    """Pillow cannot write Adam7: re-pack its rows in pass order (the filter byte 0 on every row)."""
    import zlib

    from codec.format import stored

    png = _encoded(im, "PNG")
    depth, color = png[24], png[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    arr = np.asarray(im if im.mode != "P" else Image.frombytes("L", im.size, im.tobytes()))
    if im.mode == "1":
        arr = np.asarray(im.convert("L")) // 255
    arr = arr.reshape(im.height, im.width, channels)
    rows = []
    for x0, y0, dx, dy in stored._ADAM7:
        sub = arr[y0::dy, x0::dx]
        for line in sub:
            flat = line.reshape(-1)
            data = np.packbits(flat.astype(bool)).tobytes() if depth == 1 else flat.astype(np.uint8).tobytes()
            rows.append(b"\0" + data)
    ihdr = png[16:28] + b"\x01"

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    plte = b""
    if color == 3:
        at = png.index(b"PLTE") - 4
        (length,) = struct.unpack(">I", png[at : at + 4])
        plte = png[at : at + 12 + length]
    return head + plte + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def test_metadata_over_the_limit_is_refused_before_it_is_copied(monkeypatch):
    monkeypatch.setattr(bs, "MAX_METADATA", 100)
    pixels = _encoded(Image.new("RGB", (4, 3)), "PNG")
    assert codec.decode(_stored(4, 3, pixels, exif=b"x" * 100)).info["exif"] == b"x" * 100
    for field in ("exif", "icc"):
        with pytest.raises(ValueError, match="over the limit"):
            _stored(4, 3, pixels, **{field: b"x" * 101})
    import zlib

    body = _stored(4, 3, pixels)[: -bs.CRC_SIZE] + bs.CHUNK_HEADER.pack(bs.EXIF, 101) + b"x" * 101
    with pytest.raises(bs.FormatError, match="metadata limit"):
        bs.unpack(body + struct.pack("<I", zlib.crc32(body)))


def test_input_with_metadata_over_the_limit_is_one_line(tmp_path, photo_like, monkeypatch):
    monkeypatch.setattr(bs, "MAX_METADATA", 100)
    src = tmp_path / "big-exif.png"
    exif = Image.Exif()
    exif[0x010E] = "d" * 300  # ImageDescription
    Image.fromarray(photo_like(16, 16)).save(src, exif=exif)
    one_error_line(run("encode", src, "-o", tmp_path / "x.aec"), "EXIF", "over the 100 bytes")


# -- item 10: a file truncated while info maps it ---------------------------------------------------
def test_file_truncated_while_info_maps_it_is_one_line(aec_file, tmp_path, monkeypatch):
    """The truncation happens between mapping and parsing, every time: reading the mapping then raises SIGBUS
    (in info's child), which must be one line and exit 2, with the other files still described."""
    big = tmp_path / "big.aec"
    f = bs.unpack(aec_file.read_bytes())
    big.write_bytes(bs.pack(bs.AecFile(f.width, f.height, f.quality, extra={b"junk": b"\0" * (1 << 20)})))
    original = bs.unpack

    def shrink_then_parse(data, *args, **kwargs):
        if len(data) > 1 << 20:
            os.truncate(big, 0)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(bs, "unpack", shrink_then_parse)
    result = run("info", big, aec_file)
    assert result.exit_code == 2, result.stderr
    failed, count = result.stderr.strip().splitlines()  # its line, then the count of failed inputs (as encode)
    assert failed.startswith("aecodec: ") and all(
        s in failed for s in ("big.aec", "changed while it was read", "SIGBUS")
    )
    assert count == "aecodec: 1 of 2 inputs failed (see above)"
    assert "a.aec" in result.stdout


# -- item 11: what is promised across thread counts ---------------------------------------------------
def test_thread_count_changes_no_symbol_and_pixels_by_at_most_one_level(photo_like):
    """README and docs/FORMAT.md: any thread count decodes the same latent (symbols, scales, means); the float
    synthesis repeats exactly at one thread count, and other counts (3, 5, 6, 7 threads) may move a sample by
    one level, as summation order changes."""
    import torch

    from codec.weights.store import load_codec

    c = load_codec()
    data = codec.encode(photo_like(96, 160), quality=6, codec=c)
    f = bs.unpack(data)
    before = torch.get_num_threads()
    runs: dict[int, list[tuple[torch.Tensor, np.ndarray]]] = {}
    try:
        for n in (1, 3, 3, 2):
            torch.set_num_threads(n)
            runs.setdefault(n, []).append((api.decode_latent(f, c), np.asarray(codec.decode(data, codec=c))))
    finally:
        torch.set_num_threads(before)
    (latent, pixels), *_ = runs[1]
    for n, results in runs.items():
        for other_latent, other_pixels in results:
            assert torch.equal(other_latent, latent), n
            assert np.abs(other_pixels.astype(int) - pixels).max() <= 1, n
    assert np.array_equal(runs[3][0][1], runs[3][1][1])  # one thread count repeats exactly
