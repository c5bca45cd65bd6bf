#!/usr/bin/env python
"""Seeded mutation fuzzer for the ``.aec`` decoder: every case must end in an image or the codec's own error.

Each case takes one of a few valid tiny files (coded at start-up with a small seeded network, as in
tests/conftest.py), applies 1 to 3 mutations (bit flips, truncation, insertion, deletion, header field
edits, absurd dimensions, chunk lengths pointing past the end, renamed or extra chunks, garbage
entropy-coded streams, damaged alpha / ICC / EXIF chunks, splices of two files) and, for half the
cases, recomputes the CRC-32 so the mutation gets past the CRC check into the chunk parser, the rANS
decoder and the network. Every ``--cli-every``-th case also goes through ``aecodec decode`` and
``aecodec info`` in-process.

A case fails when decoding raises anything but ``AecError``, returns an image that does not match
its header, uses more than ``--slow`` seconds of CPU time (CPU time, not wall time: other work on the
machine does not make a case fail), or kills or hangs the worker process (a watchdog in this process kills a
case after ``--timeout`` seconds of wall time and carries on with the next one). Every failure prints the
command that replays that one case with the same settings.

    python scripts/fuzz.py --cases 100000 --seed 1                          # the long run
    python scripts/fuzz.py --seed 1 --start 4711 --cases 1 --save /tmp/c    # replay one case

Ctrl-C (SIGINT or SIGTERM to this process) stops a run and prints the report of the cases counted so far.

Case ``i`` depends only on ``(seed, i)``, so any failure can be replayed alone. tests/test_fuzz.py
runs a slice of the same cases in CI. Exit code: 0 when every case passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import os
import random
import shlex
import shutil
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the checkout's ``codec`` importable
    sys.path.insert(0, str(ROOT))

from codec.format import bitstream as bs  # noqa: E402

#: Pixel limit the fuzzer decodes under: absurd but allowed sizes stay cheap (work area ≤ 128×128).
FUZZ_MAX_PIXELS = 128 * 128
CRC_SIZE, CHUNK = bs.CRC_SIZE, bs.CHUNK_HEADER


def header(data: bytes) -> dict[str, tuple[int, str]]:
    """Header layout (field → offset, struct format) of ``data``'s format version, from ``codec.format.bitstream``;
    the current version's when the version byte is damaged."""
    at = len(bs.MAGIC)
    return bs.header_layout(data[at] if len(data) > at and data[at] in bs.VERSIONS else bs.VERSION)


def model_at(data: bytes) -> int:
    """Offset of the model id, where the fixed header ends."""
    return header(data)["model_id"][0]


def get_field(data: bytes, name: str) -> int | bytes | None:
    """Header field ``name`` of ``data`` (None when the file is too short to hold it)."""
    at, fmt = header(data)[name]
    return struct.unpack_from(fmt, data, at)[0] if len(data) >= at + struct.calcsize(fmt) else None


def set_field(data: bytes, name: str, value: int | bytes) -> bytes:
    """``data`` with header field ``name`` set to ``value`` (unchanged when too short to hold it)."""
    at, fmt = header(data)[name]
    size = struct.calcsize(fmt)
    return data[:at] + struct.pack(fmt, value) + data[at + size :] if len(data) >= at + size else data


# -- structure of a file ------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    tag: bytes
    at: int  # offset of the tag
    length: int

    @property
    def payload(self) -> slice:
        return slice(self.at + CHUNK.size, self.at + CHUNK.size + self.length)


#: Chunks walked at most: a mutated file can hold megabytes of zeros, which read as millions of empty chunks.
MAX_CHUNKS = 64


def chunks_of(data: bytes) -> list[Chunk]:
    """The chunks of a (possibly already mutated) file, as far as they can be walked (``MAX_CHUNKS`` at most)."""
    if len(data) <= model_at(data) + CRC_SIZE:
        return []
    pos, end, out = model_at(data) + data[header(data)["model_len"][0]], len(data) - CRC_SIZE, []
    while pos + CHUNK.size <= end and len(out) < MAX_CHUNKS:
        tag, length = CHUNK.unpack_from(data, pos)
        if pos + CHUNK.size + length > end:
            break
        out.append(Chunk(tag, pos, length))
        pos += CHUNK.size + length
    return out


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(CRC_SIZE, "little")


def fix_crc(data: bytes) -> bytes:
    """Recompute the trailing CRC-32, so a mutation is judged by the parser, not the checksum."""
    return with_crc(data[:-CRC_SIZE]) if len(data) >= CRC_SIZE else data


def chunk_bytes(tag: bytes, payload: bytes) -> bytes:
    return CHUNK.pack(tag, len(payload)) + payload


def replace_chunk(data: bytes, c: Chunk, payload: bytes, tag: bytes | None = None) -> bytes:
    return data[: c.at] + chunk_bytes(tag or c.tag, payload) + data[c.payload.stop :]


def append_chunk(data: bytes, tag: bytes, payload: bytes) -> bytes:
    return data[:-CRC_SIZE] + chunk_bytes(tag, payload) + data[-CRC_SIZE:]


# -- payloads for side chunks -------------------------------------------------------------------
def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_header_only(width: int, height: int, color_type: int = 0) -> bytes:
    """A PNG claiming ``width × height`` with a tiny IDAT: built by hand, nothing allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def image_file(arr: np.ndarray, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **params)
    return buf.getvalue()


def alpha_payloads(size: tuple[int, int], rng: random.Random) -> list[bytes]:
    w, h = size
    good = image_file(np.full((h, w), 200, np.uint8))
    return [
        b"",
        rng.randbytes(rng.randrange(1, 64)),
        good[: rng.randrange(8, len(good))],  # truncated PNG
        good[:33] + rng.randbytes(len(good) - 33),  # header intact, data garbage
        image_file(np.zeros((h + 1, w), np.uint8)),  # wrong size
        image_file(np.zeros((h, w, 3), np.uint8)),  # RGB instead of L
        png_header_only(100_000, 100_000),  # decompression bomb header
        png_header_only(w, h),  # right size, IDAT too short
        image_file(np.zeros((h, w), np.uint8), "GIF"),  # not a PNG
    ]


def exif_payloads(rng: random.Random) -> list[bytes]:
    return [
        b"",
        rng.randbytes(rng.randrange(1, 100)),
        b"Exif\0\0MM\0*\0\0\0\x08" + rng.randbytes(40),
        b"II*\0\x08\0\0\0\xff\xff" + rng.randbytes(20),
        b"Exif\0\0" + bytes(70_000),  # over JPEG's 64 KiB APP1 limit
    ]


# -- mutations ------------------------------------------------------------------------------
Mutation = Callable[[bytes, random.Random, list[bytes]], bytes]
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def flip_bits(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    out = bytearray(data)
    span = model_at(data) if rng.random() < 0.3 else len(out)  # the header is small: aim at it often
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(min(span, len(out)))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    return data[: rng.choice([0, 1, 3, 4, 8, model_at(data), len(data) - 1, len(data) - 5, rng.randrange(len(data))])]


def insert(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    at = rng.randrange(len(data) + 1)
    if rng.random() < 0.3:
        blob = bytes([rng.choice((0x00, 0xFF))]) * rng.choice([4, 64, 1024, 4096])
    else:
        blob = rng.randbytes(rng.randint(1, 64))
    return data[:at] + blob + data[at:]


def delete(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 64) :]


def duplicate(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    a = rng.randrange(len(data))
    piece = data[a : a + rng.randint(1, 128)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


def header_field(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    layout = header(data)
    name = rng.choice([k for k in layout if k != "model_id"])
    at, fmt = layout[name]
    size = struct.calcsize(fmt)
    if get_field(data, name) is None:
        return data
    values = {
        "version": [0, 1, 2, 3, 4, 255],
        "tile": [0, 1, 2, 63, 64, 65, 128, 1024, 0xFFFF, 1 << 20],
        "layout": [0, 1, 2, 255],
        "quality": [0, 999, 1000, 4500, 8000, 8001, 65535],
        "width": [0, 1, 2, 63, 64, 65, 127, 128, 129, 1 << 16, 1 << 31, 0xFFFFFFFF],
        "height": [0, 1, 2, 63, 64, 65, 127, 128, 129, 1 << 16, 1 << 31, 0xFFFFFFFF],
        "model_len": [0, 1, data[at] - 1 if data[at] else 0, data[at] + 1, 255],
    }
    if name == "hash":
        value = rng.randbytes(8)
    elif rng.random() < 0.8:
        value = rng.choice([v for v in values[name] if v < 1 << (8 * size)])
    else:
        value = rng.randrange(1 << (8 * size))
    return set_field(data, name, value)


def dimensions(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """Absurd but well-formed sizes: zero, 2^32-1, 1 × 2^28 (over the default limit), around the fuzz limit."""
    side = int(FUZZ_MAX_PIXELS**0.5)
    w, h = rng.choice(
        [
            (0, 0),
            (0, 16),
            (0xFFFFFFFF, 0xFFFFFFFF),
            (1, 1 << 28),
            (1 << 28, 1),
            (1 << 14, 1 << 14),
            (1 << 16, 1 << 16),
            (side, side),
            (side + 1, side),
            (side - 63, side - 63),
            (1, FUZZ_MAX_PIXELS),
            (FUZZ_MAX_PIXELS // 64, 64),
            (1, 1),
            (17, 5),
            (rng.randint(1, side), rng.randint(1, side)),
        ]
    )
    return set_field(set_field(data, "width", w), "height", h)


def chunk_length(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    chunks = chunks_of(data)
    if not chunks:
        return data
    c = rng.choice(chunks)
    remaining = len(data) - CRC_SIZE - c.payload.start
    value = rng.choice(
        [
            0,
            c.length - 1,
            c.length + 1,
            remaining,
            remaining + 1,
            remaining + 4,
            1 << 31,
            0xFFFFFFFF,
            rng.randrange(1 << 32),
        ]
    )
    return data[: c.at] + CHUNK.pack(c.tag, max(value, 0)) + data[c.at + CHUNK.size :]


def chunk_tag(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    chunks = chunks_of(data)
    if not chunks:
        return data
    c = rng.choice(chunks)
    tag = rng.choice(
        [b"XXXX", b"xxxx", b"\0\0\0\0", b"ZST\xff", c.tag.swapcase(), rng.choice(chunks).tag, b"YSTR", b"STRM"]
    )
    return data[: c.at] + CHUNK.pack(tag, c.length) + data[c.at + CHUNK.size :]


def stream_payload(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """Garbage in one entropy-coded stream of a well-formed file (length tables kept consistent): the
    cases that reach the rANS decoder."""
    try:
        f = bs.unpack(data, max_pixels=bs.NO_LIMIT)
    except bs.FormatError:
        return data
    if not f.streams:  # a lossless file (PIXL) has no streams: garble its PNG instead
        f.pixels = bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.05 else b for b in f.pixels)
        return bs.pack(f)
    tile = rng.choice(f.streams)
    k = rng.randrange(len(tile))
    old = tile[k]
    other = rng.choice([s for d in seeds for t in bs.unpack(d).streams for s in t])
    tile[k] = rng.choice(
        [
            b"",
            old[: len(old) // 2],
            old + rng.randbytes(rng.randint(1, 32)),
            rng.randbytes(rng.randint(1, 2 * len(old) + 8)),
            # 0xFF floods put the rANS decoder in bypass mode, where it reads ~15 bytes past the
            # stream per stream byte: a 2 MB flood found an out-of-bounds read (SIGSEGV).
            b"\xff" * rng.choice([1, 7, 64, 512, 4096, 2_000_000]),
            bytes(rng.choice([1, 8, 256])),
            other,
            bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.05 else b for b in old),
        ]
    )
    return bs.pack(f)


def side_chunk(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """Add or replace an alpha / ICC / EXIF chunk with damaged or hostile content."""
    width, height = get_field(data, "width"), get_field(data, "height")
    if width is None or height is None:
        return data
    size = (max(1, min(width, 256)), max(1, min(height, 256)))
    tag = rng.choice([b"aLPH", b"iCCP", b"eXIF"])
    if tag == b"aLPH":
        payload = rng.choice(alpha_payloads(size, rng))
    elif tag == b"eXIF":
        payload = rng.choice(exif_payloads(rng))
    else:
        payload = rng.randbytes(rng.randint(0, 200))
    existing = [c for c in chunks_of(data) if c.tag == tag]
    return replace_chunk(data, existing[0], payload) if existing else append_chunk(data, tag, payload)


def extra_chunk(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    random_tag = bytes(rng.randrange(65, 123) for _ in range(4))
    tag = rng.choice([b"abcd", b"Abcd", b"zzzz", b"iCCP", b"ZSTR", b"STRM", random_tag])
    return append_chunk(data, tag, rng.randbytes(rng.randint(0, 32)))


def splice(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """Header of one file, chunks of another (other size, layout or quality)."""
    other = rng.choice(seeds)
    mine, theirs = chunks_of(data), chunks_of(other)
    if not mine or not theirs:
        return data
    return data[: mine[0].at] + other[theirs[0].at :]


def _as_stored(data: bytes, width: int, height: int, pixels: bytes) -> bytes | None:
    """``data`` made a lossless file of ``width × height`` whose ``PIXL`` holds ``pixels`` (other chunks kept)."""
    try:
        f = bs.unpack(data, max_pixels=bs.NO_LIMIT)
    except bs.FormatError:
        return None
    f.width, f.height, f.streams, f.tile, f.pixels, f.version = width, height, [], 0, pixels, bs.VERSION
    if f.alpha is not None:  # a valid alpha plane of the new size, so the case reaches the stored pixels
        small = width * height <= FUZZ_MAX_PIXELS
        f.alpha = image_file(np.full((height, width), 200, np.uint8)) if small else png_header_only(width, height)
    try:
        return bs.pack(f)
    except ValueError:
        return None


def png_rows(width: int, height: int, rows: int, color_type: int = 2, interlace: int = 0) -> bytes:
    """A PNG claiming ``width × height`` whose valid zlib stream holds ``rows`` rows (fewer, exactly, or more)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = (b"\0" + bytes((7 + i) % 256 for i in range(width * channels))) * rows
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def webp_header(width: int, height: int, body: bytes = b"") -> bytes:
    """A simple lossless WebP (RIFF, ``VP8L``) claiming ``width × height``, with ``body`` as its bitstream."""
    bits = (width - 1) | (height - 1) << 14
    vp8l = b"\x2f" + struct.pack("<I", bits) + body
    return b"RIFF" + struct.pack("<I", 12 + len(vp8l)) + b"WEBPVP8L" + struct.pack("<I", len(vp8l)) + vp8l


def stored_plane(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """A stored plane (``PIXL``) whose size lies: fewer or more rows than its header, a header of another size,
    a WebP over what the encoder writes, interlaced or odd colour types, garbage behind a valid header."""
    side = int(FUZZ_MAX_PIXELS**0.5)
    w, h = rng.choice([(1, 1), (5, 3), (17, 64), (side, side), (1, FUZZ_MAX_PIXELS), (1025, 1025)])
    real = image_file(np.full((h, w, 3), 99, np.uint8)) if w * h <= FUZZ_MAX_PIXELS else png_header_only(w, h, 2)
    small_webp = image_file(np.full((3, 5, 3), 99, np.uint8), "WEBP", lossless=True)
    plane = rng.choice(
        [
            png_rows(w, h, rng.randint(0, max(0, h - 1))),  # too few rows, valid zlib stream
            png_rows(w, h, h + rng.randint(1, 4)),  # more rows than it says
            png_rows(w, h, h, rng.choice([0, 4, 6]), rng.choice([0, 1])),  # other colour types, Adam7
            png_header_only(w, h, rng.choice([0, 2, 3, 6, 7])),  # right size, (almost) no data
            png_header_only(w + 1, h),  # another size
            real[: rng.randrange(8, len(real))],  # truncated
            real[:33] + rng.randbytes(max(1, len(real) - 33)),  # header intact, data garbage
            webp_header(w, h, rng.randbytes(rng.randint(0, 64))),  # WebP of the right size, garbage
            webp_header(min(w, 16384), min(h, 16384)),  # WebP header only
            webp_header(2048, 1024),  # WebP over what the encoder writes (2^20 px)
            small_webp[: rng.randrange(12, len(small_webp))],  # truncated WebP
            real,
        ]
    )
    size = png_size_of(plane) or (w, h)
    return _as_stored(data, *size, plane) or data


def png_size_of(plane: bytes) -> tuple[int, int] | None:
    """The size a PNG or WebP plane claims (so the file's header agrees and the case reaches the plane)."""
    from codec.format import stored

    return stored.png_size(plane) or stored.webp_size(plane)


def metadata_size(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """An ICC or EXIF chunk at, just over or far over ``bitstream.MAX_METADATA`` (checked before it is copied)."""
    tag = rng.choice([bs.ICC, bs.EXIF])
    # At the limit the case is decoded (and written by the CLI) with 16 MiB of metadata: drawn rarely.
    size = bs.MAX_METADATA + rng.choice([1, 1, 2, 0])
    payload = bytes(size)
    existing = [c for c in chunks_of(data) if c.tag == tag]
    return replace_chunk(data, existing[0], payload) if existing else append_chunk(data, tag, payload)


MUTATIONS: dict[str, Mutation] = {
    f.__name__: f
    for f in (
        flip_bits,
        set_bytes,
        truncate,
        insert,
        delete,
        duplicate,
        header_field,
        dimensions,
        chunk_length,
        chunk_tag,
        stream_payload,
        side_chunk,
        extra_chunk,
        splice,
        stored_plane,
        metadata_size,
    )
}


#: Draws of a mutation before giving up on changing the file (a draw may rewrite a field with its own value).
TRIES = 8


def mutate(name: str, data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """Mutation ``name`` of ``data``, drawn again while it leaves the file as it was (a wasted case otherwise);
    unchanged only where the kind has nothing to act on (e.g. no chunk left to rename)."""
    for _ in range(TRIES):
        out = MUTATIONS[name](data, rng, seeds)
        if out != data:
            break
    return out


def _case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"aec-fuzz:{seed}:{index}")


def case_seed(seeds: list[bytes], seed: int, index: int) -> bytes:
    """The seed file case ``index`` of run ``seed`` mutates (``make_case``'s first draw)."""
    return _case_rng(seed, index).choice(seeds)


def changed_chunks(before: bytes, after: bytes) -> set[bytes]:
    """Tags of the chunks of ``after`` that ``before`` lacks or holds with another payload."""
    old = {c.tag: before[c.payload] for c in chunks_of(before)}
    return {c.tag for c in chunks_of(after) if old.get(c.tag) != after[c.payload]}


#: The fitted kind's streams (``STRM`` of a file whose model id is ``overfit``): a chunk kind of their own, as
#: they go to another decoder (``codec.models.overfit.fast``) than the autoencoders' ``STRM``.
FITTED_STRM = "STRM (overfit)"
#: The chunk kinds the reach report names; any other tag counts as ``other``.
CHUNK_KINDS = tuple(sorted([*(t.decode() for t in bs.KNOWN), FITTED_STRM]))


def chunk_kind(tag: bytes, model_id: str = "") -> str:
    """The reach report's name of a chunk with tag ``tag`` in a file of model ``model_id``."""
    from tests.support import OVERFIT_ID

    name = tag.decode("latin-1")
    if tag == bs.STREAMS and model_id == OVERFIT_ID:
        return FITTED_STRM
    return name if name in CHUNK_KINDS else "other"


def make_case(seeds: list[bytes], seed: int, index: int) -> tuple[str, bytes]:
    """Case ``index`` of run ``seed``: (description, bytes). Depends on nothing else."""
    rng = _case_rng(seed, index)
    data = rng.choice(seeds)
    names = rng.choices(list(MUTATIONS), k=rng.choice([1, 1, 2, 3]))
    for name in names:
        if data:
            data = mutate(name, data, rng, seeds)
    crc = rng.random() < 0.5
    if crc:
        data = fix_crc(data)
    return "+".join(names) + ("+crc" if crc else ""), data


# -- seeds and the network ------------------------------------------------------------------
def seed_files(codec) -> list[bytes]:
    """Valid tiny files covering each layout and chunk: RGB, grey, RGBA, ICC + EXIF, four tiles, version 2, and a
    1×1 image, stored losslessly (``PIXL``). The others are at least ``codec.coding.encoding.THIN`` px on each side,
    so they keep their entropy-coded streams for the mutations to reach the rANS decoder through."""
    from codec.api import encode

    rng = np.random.default_rng(7)

    def img(h: int, w: int, c: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)

    exif = Image.Exif()
    exif[0x010F] = "fuzz"
    meta = Image.fromarray(img(9, 13, 3))
    meta.info["icc_profile"] = b"not-really-an-icc-profile"
    meta.info["exif"] = exif.tobytes()
    seeds = [
        encode(Image.fromarray(img(16, 16, 3)), 4.0, codec=codec),
        encode(Image.fromarray(img(16, 16, 1), "L"), 1.0, codec=codec),
        encode(Image.fromarray(img(16, 16, 4), "RGBA"), 8.0, codec=codec),
        encode(meta, 2.5, codec=codec),
        encode(Image.fromarray(img(1, 1, 3)), 6.0, codec=codec),
        encode(Image.fromarray(img(70, 100, 3)), 3.0, codec=codec, tile=64),  # 4 tiles, work area 128²
    ]
    # Version 2 (two streams per tile), which decoders still read: the same files re-packed.
    return seeds + [bs.pack(dataclasses.replace(bs.unpack(d), version=2)) for d in seeds[:2]] + overfit_seeds(rng)


#: Fitting iterations of the overfit seeds: a real decoder and latents, in about a second each.
OVERFIT_SEED_ITERATIONS = 30


def overfit_seeds(rng: np.random.Generator) -> list[bytes]:
    """Files of the per-image kind (``--model overfit``: the decoder's parameters and latent grids in its two
    streams per tile), one tile and four tiles; decoded through the production path (their model id)."""
    from codec.api import encode
    from tests.support import OVERFIT_ID

    def img(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    its = OVERFIT_SEED_ITERATIONS
    return [
        encode(img(16, 16), 4.0, model=OVERFIT_ID, iterations=its),
        encode(img(20, 30), 7.0, model=OVERFIT_ID, iterations=its, tile=16),
    ]


# -- how far a case got ------------------------------------------------------------------------
#: The decoder's stages, in order: the container parser accepted the file, an entropy-coded stream went
#: into the rANS decoder, the synthesis transform ran.
STAGES = ("parsed", "rans", "network")
#: A stored plane (``PIXL`` or ``aLPH``) went into its checks (``codec.format.stored.read_plane``), and came out
#: decoded.
PLANE_STAGES = ("plane", "plane-decoded")


@contextlib.contextmanager
def stages_reached() -> Iterator[set[str]]:
    """The ``STAGES`` and ``PLANE_STAGES`` that decoding inside the block reached, seen through hooks on
    ``codec.format.bitstream.unpack`` (on success), ``codec.core.engine.RansTables`` and
    ``codec.core.engine.synthesize_with`` (on entry; the fitted kind's decoders likewise: ``fast`` and the
    reference's ``FittedDecoder.image``) and ``codec.format.stored.read_plane`` (on entry, and on success); removed
    on exit.

    A mutation that never gets past the parser tests the parser only: this says which ones go deeper.
    """
    from codec.core import engine
    from codec.format import stored
    from codec.models.overfit import fast, network

    seen: set[str] = set()
    # (owner, attribute, stage on entry, stage on success)
    hooks = [(bs, "unpack", None, "parsed"), (engine, "synthesize_with", "network", None)]
    hooks += [(network.FittedDecoder, "image", "network", None), (fast, "image", "network", None)]  # the overfit kind's
    hooks += [(engine.RansTables, name, "rans", None) for name in ("decode", "decoder")]
    hooks += [(fast, name, "rans", None) for name in ("decode_params", "decode_grids")]  # its compiled decoder
    hooks += [(stored, "read_plane", "plane", "plane-decoded")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _, _ in hooks]

    def hooked(original: Callable, entry: str | None, success: str | None) -> Callable:
        @functools.wraps(original)
        def call(*args, **kwargs):
            seen.update([entry] if entry else [])
            result = original(*args, **kwargs)
            seen.update([success or entry] if success or entry else [])
            return result

        return call

    for (owner, name, entry, success), (_, _, original) in zip(hooks, originals, strict=True):
        setattr(owner, name, hooked(original, entry, success))
    try:
        yield seen
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


# -- running one case -------------------------------------------------------------------------
def decode_case(data: bytes, codec, max_pixels: int = FUZZ_MAX_PIXELS) -> str:
    """Decode one case; returns ``"ok"`` or the kind of AecError. Anything else propagates.

    ``codec=None`` takes the production path (the file's model id and weights hash pick the weights).
    """
    from codec.api import decode
    from codec.core.errors import AecError

    try:
        image = decode(data, codec=codec, max_pixels=max_pixels)
    except AecError as e:
        msg = str(e)
        if not msg or "\n" in msg:
            raise AssertionError(f"AecError message is not one line: {msg!r}") from None
        return "error:" + error_kind(msg)
    header = bs.unpack(data, max_pixels)
    if image.size != (header.width, header.height) or image.mode != header.mode:
        raise AssertionError(
            f"decoded {image.mode} {image.size}, header says {header.mode} {header.width}x{header.height}"
        )
    if np.asarray(image).dtype != np.uint8:
        raise AssertionError("decoded image is not 8-bit")
    return "ok"


def error_kind(msg: str) -> str:
    """A coarse bucket per failure, to show which layers the cases reached."""
    keys = ("magic", "version", "CRC", "truncated", "exceeds", "working area", "alpha", "stored", "metadata")
    keys += ("entropy", "chunk", "model")
    for key in keys:
        if key in msg:
            return key
    return "other"


def cli_case(data: bytes, folder: Path, suffix: str, max_pixels: int = FUZZ_MAX_PIXELS) -> str:
    """``aecodec decode`` and ``aecodec info`` in-process: exit 0, or exit 2 with exactly one line."""
    from click.testing import CliRunner

    from codec.cli import main

    src, dest = folder / "case.aec", folder / f"out{suffix}"
    src.write_bytes(data)
    dest.unlink(missing_ok=True)
    runner = CliRunner()
    outcome = "cli-ok"
    for args in (["decode", str(src), "-o", str(dest), "--max-pixels", str(max_pixels)], ["info", str(src)]):
        result = runner.invoke(main, args)
        if result.exit_code == 0:
            continue
        lines = result.stderr.strip().splitlines()
        if result.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("aecodec: "):
            raise AssertionError(f"aecodec {args[0]}: exit {result.exit_code}, stderr {result.stderr!r}")
        outcome = "cli-error"
    if outcome == "cli-ok" and dest.exists():
        with Image.open(dest) as im:
            im.load()
    return outcome


CLI_SUFFIXES = (".png", ".jpg", ".webp", ".tif")


def _bad_paths(folder: Path, src: Path) -> dict[str, tuple[list[str], bool]]:
    """Hostile input and output paths (issue 28): name → (``aecodec`` arguments, whether exit 0 is right)."""
    loop, plain = folder / "loop.aec", folder / "plain"
    out_loop = folder / "out-loop.png"
    for link in (loop, out_loop):
        if not link.is_symlink():
            link.symlink_to(link.name)
    plain.write_bytes(b"x")
    long_name = str(folder / ("n" * 300 + ".aec"))
    return {
        "input loop": (["info", str(loop)], False),
        "input long name": (["decode", long_name, "-o", str(folder / "x.png")], False),
        "input under a file": (["info", str(plain / "x.aec")], False),
        "input folder": (["decode", str(folder), "-o", str(folder / "x.png")], False),
        "input /proc/self/mem": (["info", "/proc/self/mem"], False),
        "output loop": (["decode", str(src), "-o", str(out_loop)], False),
        "output under a file": (["decode", str(src), "-o", str(plain / "x.png")], False),
        "output long name": (["decode", str(src), "-o", str(folder / ("n" * 300 + ".png"))], False),
    }


def path_case(data: bytes, folder: Path, k: int) -> str:
    """``aecodec`` on the ``k``-th hostile path (``_bad_paths``), the case's file as the input where one is
    needed: exit 2 with one line, or exit 0 where that is right."""
    from click.testing import CliRunner

    from codec.cli import main

    src = folder / "case.aec"
    src.write_bytes(data)
    cases = _bad_paths(folder, src)
    name = sorted(cases)[k % len(cases)]
    args, may_succeed = cases[name]
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 0 and may_succeed:
        return "cli-path-ok"
    if result.exit_code != 2 or len(lines) != 1 or not lines[0].startswith("aecodec: "):
        raise AssertionError(f"{name}: aecodec {args[0]}: exit {result.exit_code}, stderr {result.stderr!r}")
    return "cli-path-error"


# -- the harness: a watched worker ----------------------------------------------------------------
@dataclass
class Options:
    """What to run; ``main`` fills it from the command line, tests/test_fuzz.py directly."""

    cases: int
    seed: int = 0
    start: int = 0
    max_pixels: int = FUZZ_MAX_PIXELS
    slow: float = 5.0  # a case using more CPU seconds than this fails
    timeout: float = 30.0  # the watchdog kills a case after this many wall-clock seconds (a hang)
    cli_every: int = 50  # also run every N-th case through the CLI (0: never)
    save: str | None = None  # write every case's bytes here before running it
    weights: str | None = None  # the weights folder fuzzed with (None: the seeded test network)


@dataclass
class Report:
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: int = 0
    interrupted: bool = False  # stopped by SIGINT: the counts cover the cases reported until then

    @property
    def cases(self) -> int:
        """Cases whose outcome is counted (the worker reports every 1000 and at its end)."""
        return sum(n for k, n in self.outcomes.items() if not k.startswith(("cli", "reach:")))


def replay(opts: Options, i: int) -> str:
    """The command that runs case ``i`` alone with the settings of ``opts`` (the CLI cases and the limits
    depend on them) and keeps its bytes in /tmp/case; ``options(parse_args(...))`` reads it back."""
    args = f"--seed {opts.seed} --start {i} --cases 1 --cli-every {opts.cli_every}"
    for name in ("max_pixels", "slow", "timeout"):
        if getattr(opts, name) != getattr(Options, name):  # the defaults
            args += f" --{name.replace('_', '-')} {getattr(opts, name)}"
    if opts.weights:  # the case's files name those weights: another network decodes them otherwise, or not at all
        args += f" --weights {shlex.quote(opts.weights)}"
    return f"python scripts/fuzz.py {args} --save /tmp/case"


def _worker(opts: Options, start: int, current, began, results, crash_log: str) -> None:
    """Run cases [start, end) in this child; report per-chunk counts and every failure on ``results``."""
    import faulthandler
    import resource
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's: it stops the run and reports
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # Pillow's notes on damaged EXIF would drown the report
    log = open(crash_log, "a")  # stays open: faulthandler writes to it if the process dies
    faulthandler.enable(file=log)  # a crash in C code still says where it happened
    from codec.weights.store import load_codec

    codec = load_codec()
    seeds = seed_files(codec)
    counts: Counter = Counter()
    folder = Path(tempfile.mkdtemp(prefix="aec-fuzz-"))
    if opts.cli_every:  # untimed: the first command's imports are no case's cost
        cli_case(seeds[0], folder, CLI_SUFFIXES[0], opts.max_pixels)
        path_case(seeds[0], folder, 0)
    end = opts.start + opts.cases
    for i in range(start, end):
        name, data = make_case(seeds, opts.seed, i)
        if opts.save:
            Path(opts.save).mkdir(parents=True, exist_ok=True)
            (Path(opts.save) / f"case-{opts.seed}-{i}.aec").write_bytes(data)
        current.value, began.value = i, time.monotonic()
        t0 = time.process_time()  # this process's CPU time: the same on a busy machine as on an idle one
        try:
            with stages_reached() as seen:
                outcome = decode_case(data, codec if i % 2 else None, opts.max_pixels)
            counts.update(f"reach:{stage}" for stage in seen)
            kind = name.removesuffix("+crc")
            if "+" not in kind and kind != name:  # one mutation, CRC recomputed: that kind's own reach
                counts.update(f"reach:{stage}:{kind}" for stage in ("cases", *seen))
            if kind != name:  # CRC recomputed: the reach of each chunk kind the mutations changed
                reached = ("cases", *seen, *(["decoded"] if outcome == "ok" else []))
                before = case_seed(seeds, opts.seed, i)
                model_id = bs.unpack(before, bs.NO_LIMIT).model_id
                for tag in changed_chunks(before, data):
                    counts.update(f"reach:chunk:{chunk_kind(tag, model_id)}:{stage}" for stage in reached)
            if opts.cli_every and i % opts.cli_every == 0:
                suffix = CLI_SUFFIXES[(i // opts.cli_every) % len(CLI_SUFFIXES)]
                counts[cli_case(data, folder, suffix, opts.max_pixels)] += 1
                counts[path_case(data, folder, i // opts.cli_every)] += 1
        except Exception as e:  # noqa: BLE001 - the harness reports every unexpected exception, then goes on
            tb = traceback.format_exc(limit=-3)
            results.put(("fail", f"case {i} ({name}): {type(e).__name__}: {e}\n{tb}replay: {replay(opts, i)}"))
            outcome = "FAIL"
        took = time.process_time() - t0
        if took > opts.slow:
            why = f"slow, {took:.1f} s of CPU time (over {opts.slow:g} s)"
            results.put(("fail", f"case {i} ({name}): {why}; replay: {replay(opts, i)}"))
        counts[outcome] += 1
        if (i + 1 - start) % 1000 == 0 or i + 1 == end:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            results.put(("counts", i + 1, dict(counts), rss))
            counts.clear()
    shutil.rmtree(folder, ignore_errors=True)
    current.value = -1


def supervise(opts: Options, progress: Callable[[str], None] = lambda line: None) -> Report:
    """Run the cases in a spawned child; after a crash or a hang, report the case and go on after it."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    current, began, results = ctx.Value("q", -1), ctx.Value("d", 0.0), ctx.Queue()
    crash_log = str(Path(tempfile.gettempdir()) / f"aec-fuzz-{opts.seed}-{os.getpid()}.log")
    report, t0 = Report(), time.perf_counter()

    def drain() -> None:
        while not results.empty():
            msg = results.get()
            if msg[0] == "counts":
                report.outcomes.update(msg[2])
                report.peak_rss_mb = max(report.peak_rss_mb, msg[3])
                progress(f"{msg[1] - opts.start} cases, {time.perf_counter() - t0:.0f} s, peak RSS {msg[3]} MB")
            else:
                report.failures.append(msg[1])
                progress("FAIL " + msg[1])

    start, end = opts.start, opts.start + opts.cases
    while start < end:
        current.value = -1
        child = ctx.Process(target=_worker, args=(opts, start, current, began, results, crash_log))
        child.start()
        hung = False
        try:
            while child.is_alive():
                child.join(0.25)
                drain()
                if current.value >= 0 and time.monotonic() - began.value > opts.timeout:
                    child.kill()
                    child.join()
                    hung = True
        except KeyboardInterrupt:  # stop here and report what was counted (a deadline, or enough cases)
            child.kill()
            child.join()
            drain()
            report.interrupted = True
            break
        drain()
        if child.exitcode == 0:
            break
        bad = current.value
        why = f"hung over {opts.timeout:g} s" if hung else f"worker died with exit code {child.exitcode}"
        report.failures.append(f"case {bad}: {why} (traceback in {crash_log}); replay: {replay(opts, bad)}")
        progress("FAIL " + report.failures[-1])
        if bad < 0:
            break  # died before its first case: nothing to skip past
        report.outcomes["crash"] += 1
        start = bad + 1
    report.seconds = time.perf_counter() - t0
    if "crash" not in report.outcomes:
        Path(crash_log).unlink(missing_ok=True)
    return report


#: Columns of the per-chunk-kind reach table: the stages, then the cases that decoded to an image.
CHUNK_COLUMNS = (*STAGES, *PLANE_STAGES, "decoded")


def reach_table(counts: Counter, cases: int) -> str:
    """Share of all cases reaching each stage, then per kind among the cases of that one mutation with the CRC
    recomputed (without, the CRC check stops nearly all of them), then per chunk kind among the cases (CRC
    recomputed) that changed or added a chunk of that kind: how deep damage to each kind of chunk gets."""
    stages = (*STAGES, *PLANE_STAGES)
    lines = ["reached: " + ", ".join(f"{s} {100 * counts[f'reach:{s}'] / max(cases, 1):.1f}%" for s in stages)]
    lines.append(f"{'one mutation+crc':16}{'cases':>7}" + "".join(f"{s:>14}" for s in stages))
    for name in MUTATIONS:
        n = counts[f"reach:cases:{name}"]
        shares = "".join(f"{100 * counts[f'reach:{s}:{name}'] / max(n, 1):13.1f}%" for s in stages)
        lines.append(f"{name:16}{n:7}{shares}")
    lines.append(f"{'chunk kind+crc':16}{'cases':>7}" + "".join(f"{s:>14}" for s in CHUNK_COLUMNS))
    for kind in (*CHUNK_KINDS, "other"):
        n = counts[f"reach:chunk:{kind}:cases"]
        shares = "".join(f"{100 * counts[f'reach:chunk:{kind}:{s}'] / max(n, 1):13.1f}%" for s in CHUNK_COLUMNS)
        lines.append(f"{kind:16}{n:7}{shares}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="First case index (to replay one: --start I --cases 1).")
    p.add_argument("--max-pixels", type=int, default=Options.max_pixels, help="Decoder pixel limit during fuzzing.")
    p.add_argument("--slow", type=float, default=Options.slow, help="A case using more CPU seconds than this fails.")
    p.add_argument(
        "--timeout",
        type=float,
        default=Options.timeout,
        help="Watchdog (hangs): kill a case after this many seconds of wall time.",
    )
    p.add_argument(
        "--cli-every", type=int, default=Options.cli_every, help="Also run every N-th case through the CLI (0: never)."
    )
    p.add_argument("--save", help="Write every case's bytes to this folder before running it.")
    p.add_argument("--weights", help="Weights folder to fuzz with (default: the seeded test network).")
    return p.parse_args(argv)


def options(a: argparse.Namespace) -> Options:
    """The run a command line asks for (``replay`` writes such a command line)."""
    return Options(a.cases, a.seed, a.start, a.max_pixels, a.slow, a.timeout, a.cli_every, a.save, a.weights)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = options(args)
    with tempfile.TemporaryDirectory(prefix="aec-fuzz-weights-") as folder:
        if opts.weights:
            os.environ["AECODEC_WEIGHTS"] = opts.weights
        else:
            from tests.support import make_test_weights

            make_test_weights(Path(folder), note="seeded random network, fuzzing only")
            os.environ["AECODEC_WEIGHTS"] = folder  # inherited by the spawned worker
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background, which ignores SIGINT
            signal.signal(sig, signal.default_int_handler)
        report = supervise(opts, progress=lambda line: print(line, flush=True))
    stopped = f" of {opts.cases} (interrupted)" if report.interrupted else ""
    print(f"\n{report.cases} cases{stopped} (seed {opts.seed}, from {opts.start}) in {report.seconds:.0f} s", end="")
    print(f"; peak RSS {report.peak_rss_mb} MB")
    outcomes = {k: v for k, v in report.outcomes.items() if not k.startswith("reach:")}
    print("outcomes:", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(reach_table(report.outcomes, report.cases))
    print(f"failures: {len(report.failures)}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
