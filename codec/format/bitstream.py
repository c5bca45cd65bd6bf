"""The ``.aec`` container: header, chunks and CRC. Spec: docs/FORMAT.md (keep the two in step).

Pure functions over bytes; nothing here touches the network. Every length is checked against the
bytes actually present and the pixel count against a limit *before* anything is allocated.
"""

from __future__ import annotations

import math
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..core.errors import FormatError
from ..core.quality import Q_MAX, Q_MIN, QUALITY_SCALE

MAGIC = b"\x89AEC"
#: 3: any number of streams per tile (``STRM``), tile side in pixels. 2: a z and a y stream per tile
#: (``ZSTR``/``YSTR``/``TLEN``), still read and written. 1 was a float pre-release, never shipped.
VERSION = 3
VERSIONS = (2, 3)
#: Default limit on width × height a decoder accepts (raise with ``max_pixels``): 2^27, 134 MP (11585²).
#: It keeps a decode within 2.5 GB of peak RSS whatever the file claims (``benchmarks/huge.py --hostile``):
#: the program itself holds ~0.6 GB, the output 3 bytes per pixel as an array plus 4 as a Pillow image,
#: and the network ~0.5 GB for one tile. At 2^28 the two copies of the image alone made 2.4 GB.
MAX_PIXELS = 1 << 27
#: Largest ICC profile or EXIF block a file may carry (``iCCP``, ``eXIF``), checked before it is copied: what a
#: decode holds of metadata is bounded whatever the file (a 1 GB ``eXIF`` peaked at 3.5 GB). Real profiles and
#: EXIF are far smaller (JPEG carries at most 64 KB of EXIF).
MAX_METADATA = 1 << 24
#: ``max_pixels`` for callers that check sizes themselves (``info``, the Pillow plugin): above any u32 × u32.
NO_LIMIT = 1 << 64

LAYOUT_RGB, LAYOUT_GRAY = 0, 1
LAYOUTS = {LAYOUT_RGB: "RGB", LAYOUT_GRAY: "L"}

#: Version 2 stored the tile side in units of this many pixels (a u16).
V2_TILE_UNIT = 64

#: The fixed header after the magic, per version: (field, struct code) in file order.
HEADER_FIELDS: dict[int, tuple[tuple[str, str], ...]] = {
    version: (
        ("version", "B"),
        ("layout", "B"),
        ("quality", "H"),
        ("width", "I"),
        ("height", "I"),
        ("tile", "H" if version == 2 else "I"),  # v2: side / V2_TILE_UNIT; v3: side in pixels
        ("hash", "8s"),
        ("model_len", "B"),
    )
    for version in VERSIONS
}
_FIXED = {v: struct.Struct("<" + "".join(code for _, code in fields)) for v, fields in HEADER_FIELDS.items()}
_CHUNK = struct.Struct("<4sI")
_CRC = struct.Struct("<I")
#: A chunk's header (tag, payload length) and the trailing CRC's size, for tools that edit files in place (the fuzzer).
CHUNK_HEADER = _CHUNK
CRC_SIZE = _CRC.size


def _tile_unit(version: int) -> int:
    """Pixels per unit of the header's tile field."""
    return V2_TILE_UNIT if version == 2 else 1


def header_layout(version: int) -> dict[str, tuple[int, str]]:
    """Field → (offset in the file, struct format) of a version's fixed header; ``model_id`` follows it."""
    out, at = {}, len(MAGIC)
    for name, code in HEADER_FIELDS[version]:
        out[name] = (at, "<" + code)
        at += struct.calcsize("<" + code)
    out["model_id"] = (at, "")
    return out


#: Chunks a decoder must understand (upper-case first letter) and ancillary ones it may skip.
STREAMS = b"STRM"  # v3
Z_STREAM, Y_STREAM, TILE_LENGTHS = b"ZSTR", b"YSTR", b"TLEN"  # v2
PIXELS = b"PIXL"  # v3: the planes stored as a PNG or lossless WebP instead of streams (codec.format.stored)
ALPHA, ICC, EXIF = b"aLPH", b"iCCP", b"eXIF"
CRITICAL = {2: {Z_STREAM, Y_STREAM}, 3: {STREAMS}}
KNOWN = {STREAMS, Z_STREAM, Y_STREAM, TILE_LENGTHS, PIXELS, ALPHA, ICC, EXIF}
_LENGTH_PAIR = struct.Struct("<II")
_COUNT = struct.Struct("<H")
_LENGTH = struct.Struct("<I")


@dataclass
class AecFile:
    """Everything a ``.aec`` file holds, in memory."""

    width: int
    height: int
    quality: float
    layout: int = LAYOUT_RGB
    model_id: str = ""
    weights_hash: bytes = b"\0" * 8
    #: Per tile in raster order, the model's streams in its order (the same count for every tile).
    streams: list[list[bytes]] = field(default_factory=lambda: [[b""]])
    tile: int = 0  # tile side in pixels; 0: the whole image is one tile
    #: The RGB (or grey) planes as a PNG, lossless, in place of streams (then ``streams`` is empty, ``tile`` 0).
    pixels: bytes | None = None
    alpha: bytes | None = None  # PNG-compressed alpha plane, lossless
    icc: bytes | None = None
    exif: bytes | None = None
    version: int = VERSION
    extra: dict[bytes, bytes] = field(default_factory=dict)

    def tile_count(self) -> int:
        """Tiles of side ``tile`` covering the image: the same for any padding to a divisor of ``tile``."""
        if not self.tile:
            return 1
        return -(-self.height // self.tile) * -(-self.width // self.tile)

    @property
    def mode(self) -> str:
        """The PIL mode a decode returns."""
        base = LAYOUTS[self.layout]
        return base + "A" if self.alpha is not None else base


def quantize_quality(quality: float) -> float:
    """The quality actually coded: the stored 1/1000 grid, so encoder and decoder agree exactly."""
    return round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE


def _check_fields(f: AecFile) -> bytes:
    """Refuse fields a decoder would reject, so ``pack`` never writes a file ``unpack`` cannot read.

    Returns the model id as bytes. Raises ValueError: a bad field is the caller's bug, not bad input.
    """
    model = f.model_id.encode("utf-8")
    if len(model) > 255 or not _printable(model):
        raise ValueError("model id must be at most 255 printable ASCII characters")
    if len(f.weights_hash) != 8:
        raise ValueError("weights hash must be 8 bytes")
    if not (1 <= f.width <= 0xFFFFFFFF and 1 <= f.height <= 0xFFFFFFFF):
        raise ValueError("image dimensions out of range")
    if f.layout not in LAYOUTS:
        raise ValueError(f"unknown channel layout {f.layout}")
    if not (math.isfinite(f.quality) and Q_MIN <= round(f.quality * QUALITY_SCALE) / QUALITY_SCALE <= Q_MAX):
        raise ValueError(f"quality {f.quality!r} out of range")
    if f.version not in VERSIONS:
        raise ValueError(f"this encoder writes versions {VERSIONS} only")
    unit = _tile_unit(f.version)
    tile_bits = 8 * struct.calcsize(dict(HEADER_FIELDS[f.version])["tile"])
    if f.tile < 0 or f.tile % unit or f.tile // unit >= 1 << tile_bits:
        raise ValueError(f"tile side {f.tile} does not fit a version {f.version} header")
    for name, data in (("ICC profile", f.icc), ("EXIF", f.exif)):
        if data is not None and len(data) > MAX_METADATA:
            raise ValueError(f"{name} of {len(data)} bytes is over the limit of {MAX_METADATA}")
    if f.pixels is not None:
        if f.version == 2 or f.tile or f.streams:
            raise ValueError("lossless pixels need version 3, one tile and no streams")
        return model
    if len(f.streams) != f.tile_count():
        raise ValueError(f"need streams for {f.tile_count()} tiles, got {len(f.streams)}")
    counts = {len(s) for s in f.streams}
    (count,) = counts if len(counts) == 1 else (-1,)
    if not 1 <= count <= 0xFFFF or (f.version == 2 and count != 2):
        raise ValueError("every tile needs the same number of streams (version 2: two; version 3: 1 to 65535)")
    for tag in f.extra:
        if not _valid_tag(tag) or tag in KNOWN or _critical(tag):
            raise ValueError(f"extra chunk tag {tag!r} must be 4 ASCII letters, lower-case first, not a known tag")
    return model


def _valid_tag(tag: bytes) -> bool:
    """Four ASCII letters, as in PNG; anything else is damage, not an unknown chunk."""
    return len(tag) == 4 and tag.isalpha()  # bytes.isalpha: ASCII letters only


def _critical(tag: bytes) -> bool:
    """Upper-case first letter: a decoder that does not know the chunk must refuse the file."""
    return tag[:1].isupper()


def _printable(text: bytes) -> bool:
    """Printable ASCII only: a model id is echoed to terminals and error messages."""
    return all(0x20 <= b < 0x7F for b in text)


def pack(f: AecFile) -> bytes:
    """Serialize ``f``; ancillary chunks in ``extra`` are written too, so parse → pack loses nothing."""
    model = _check_fields(f)
    parts = [
        MAGIC,
        _FIXED[f.version].pack(
            f.version,
            f.layout,
            round(f.quality * QUALITY_SCALE),
            f.width,
            f.height,
            f.tile // _tile_unit(f.version),
            f.weights_hash,
            len(model),
        ),
        model,
    ]
    if f.pixels is not None:
        chunks = [(PIXELS, f.pixels)]
    elif f.version == 2:
        chunks = _v2_stream_chunks(f.streams)
    else:
        chunks = [(STREAMS, _streams_payload(f.streams))]
    chunks += [(tag, data) for tag, data in ((ALPHA, f.alpha), (ICC, f.icc), (EXIF, f.exif)) if data is not None]
    chunks += list(f.extra.items())
    for tag, data in chunks:
        if len(data) > 0xFFFFFFFF:
            raise ValueError(f"chunk {tag!r} longer than 4 GiB")
        parts += [_CHUNK.pack(tag, len(data)), data]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def _streams_payload(streams: list[list[bytes]]) -> bytes:
    """``STRM``: u16 streams per tile, a u32 length per stream (tiles in raster order), then the streams."""
    lengths = b"".join(_LENGTH.pack(len(s)) for tile in streams for s in tile)
    return _COUNT.pack(len(streams[0])) + lengths + b"".join(s for tile in streams for s in tile)


def _v2_stream_chunks(streams: list[list[bytes]]) -> list[tuple[bytes, bytes]]:
    chunks = [(Z_STREAM, b"".join(t[0] for t in streams)), (Y_STREAM, b"".join(t[1] for t in streams))]
    if len(streams) > 1:
        chunks.append((TILE_LENGTHS, b"".join(_LENGTH_PAIR.pack(len(z), len(y)) for z, y in streams)))
    return chunks


def unpack(data: bytes | memoryview | mmap.mmap, max_pixels: int = MAX_PIXELS, views: bool = False) -> AecFile:
    """Parse and validate a ``.aec`` file; raises FormatError with a one-line reason.

    Works on a view of ``data``, copying only what it returns. With ``views`` the streams and every other
    payload (pixels, alpha, ICC, EXIF, unknown chunks) are zero-copy views into ``data`` instead (valid
    while it is), so ``info`` on a mapped file allocates nothing the size of the file.
    """
    keep = (lambda payload: payload) if views else bytes
    body, version = _checked_body(data)
    f, pos = _header(body, version, max_pixels)
    payloads: dict[bytes, memoryview] = {}
    seen: set[bytes] = set()
    for tag, payload in _chunks(body, pos):
        seen.add(tag)
        if tag in _STREAM_CHUNKS[version]:
            payloads[tag] = payload
        elif tag == PIXELS and version == 3:
            f.pixels = keep(payload)
        elif tag == ALPHA:
            f.alpha = keep(payload)
        elif tag == ICC:
            f.icc = keep(payload)
        elif tag == EXIF:
            f.exif = keep(payload)
        elif _critical(tag):
            raise FormatError(f"unknown critical chunk {tag!r}")
        else:
            f.extra[tag] = keep(payload)
    if f.pixels is not None:
        if payloads or f.tile:
            raise FormatError("lossless pixels and entropy-coded streams (or tiles) in one file")
        f.streams = []
        return f
    missing = CRITICAL[version] - seen
    if missing:
        raise FormatError(f"missing chunk(s): {', '.join(sorted(t.decode('latin-1') for t in missing))}")
    f.streams = _v2_streams(f, payloads) if version == 2 else _v3_streams(f, payloads[STREAMS])
    if not views:
        f.streams = [[bytes(s) for s in tile] for tile in f.streams]
    return f


def _checked_body(data: bytes | memoryview | mmap.mmap) -> tuple[memoryview, int]:
    """The file without its CRC, and its version, once the magic, the version, the size and the CRC hold."""
    data = memoryview(data).cast("B")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not an .aec file (wrong magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise FormatError("truncated .aec file (header incomplete)")
    version = data[len(MAGIC)]
    if version not in VERSIONS:
        raise FormatError(f"unsupported .aec format version {version} (this decoder reads versions 2 and 3)")
    if len(data) < len(MAGIC) + _FIXED[version].size + _CRC.size:
        raise FormatError("truncated .aec file (header incomplete)")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise FormatError("corrupt .aec file (CRC mismatch: truncated or damaged)")
    return body, version


def _header(body: memoryview, version: int, max_pixels: int) -> tuple[AecFile, int]:
    """The file's fixed fields and model id, checked, as an AecFile without payloads; and where the chunks start."""
    version, layout, q, width, height, tile_field, whash, mlen = _FIXED[version].unpack_from(body, len(MAGIC))
    pos = len(MAGIC) + _FIXED[version].size
    if layout not in LAYOUTS:
        raise FormatError(f"unknown channel layout {layout}")
    if width < 1 or height < 1:
        raise FormatError("image dimensions must be at least 1x1")
    if width * height > max_pixels:
        raise FormatError(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")
    quality = q / QUALITY_SCALE
    if not (Q_MIN <= quality <= Q_MAX):
        raise FormatError(f"quality {quality:g} out of range")
    if pos + mlen > len(body):
        raise FormatError("truncated .aec file (model id)")
    model_bytes = bytes(body[pos : pos + mlen])
    if not _printable(model_bytes):
        raise FormatError("model id is not printable ASCII")
    model_id = model_bytes.decode("ascii")
    f = AecFile(width, height, quality, layout, model_id, whash, tile=tile_field * _tile_unit(version), version=version)
    return f, pos + mlen


def _chunks(body: memoryview, pos: int) -> Iterator[tuple[bytes, memoryview]]:
    """(tag, payload view) of each chunk from ``pos`` on, each checked for framing: a valid tag, its length
    within the file, no tag twice, metadata within ``MAX_METADATA``."""
    seen: set[bytes] = set()
    while pos < len(body):
        if pos + _CHUNK.size > len(body):
            raise FormatError("truncated .aec file (chunk header)")
        tag, length = _CHUNK.unpack_from(body, pos)
        pos += _CHUNK.size
        if not _valid_tag(tag):
            raise FormatError(f"invalid chunk tag {tag!r} (damaged file)")
        if length > len(body) - pos:
            raise FormatError(f"chunk {tag!r} claims {length} bytes past the end of the file")
        if tag in seen:
            raise FormatError(f"duplicate chunk {tag!r}")
        seen.add(tag)
        if tag in (ICC, EXIF) and length > MAX_METADATA:
            raise FormatError(f"chunk {tag!r} of {length} bytes is over the metadata limit of {MAX_METADATA}")
        yield tag, body[pos : pos + length]
        pos += length


#: Stream chunks each version reads; another version's stream chunk is an unknown critical chunk.
_STREAM_CHUNKS = {2: {Z_STREAM, Y_STREAM, TILE_LENGTHS}, 3: {STREAMS}}


def _v3_streams(f: AecFile, payload: memoryview) -> list[list[memoryview]]:
    """Split ``STRM`` by its length table, checked against the tile grid and the bytes present."""
    n = f.tile_count()
    if len(payload) < _COUNT.size:
        raise FormatError("truncated stream chunk (no stream count)")
    (per_tile,) = _COUNT.unpack_from(payload)
    if per_tile == 0:  # would let a huge tile grid cost nothing to claim
        raise FormatError("stream chunk declares no streams per tile")
    table_end = _COUNT.size + n * per_tile * _LENGTH.size
    if table_end > len(payload):
        raise FormatError(f"stream chunk too short for {n} tiles of {per_tile} streams")
    lengths = [v for (v,) in _LENGTH.iter_unpack(payload[_COUNT.size : table_end])]
    if table_end + sum(lengths) != len(payload):
        raise FormatError("stream lengths do not add up to the stream chunk")
    out, pos = [], table_end
    for t in range(n):
        tile = []
        for length in lengths[t * per_tile : (t + 1) * per_tile]:
            tile.append(payload[pos : pos + length])
            pos += length
        out.append(tile)
    return out


def _v2_streams(f: AecFile, payloads: dict[bytes, memoryview]) -> list[list[memoryview]]:
    """(z, y) per tile from ``ZSTR``/``YSTR`` and the ``TLEN`` table, checked against the tile grid."""
    z, y, table = payloads[Z_STREAM], payloads[Y_STREAM], payloads.get(TILE_LENGTHS)
    n = f.tile_count()
    if n == 1:
        if table is not None:
            raise FormatError("tile length table present for a single-tile image")
        return [[z, y]]
    if table is None:
        raise FormatError(f"missing chunk(s): {TILE_LENGTHS.decode()}")
    if len(table) != n * _LENGTH_PAIR.size:
        raise FormatError(f"tile length table has {len(table)} bytes, expected {n * _LENGTH_PAIR.size} for {n} tiles")
    pairs = list(_LENGTH_PAIR.iter_unpack(table))
    if sum(p[0] for p in pairs) != len(z) or sum(p[1] for p in pairs) != len(y):
        raise FormatError("tile lengths do not add up to the stream chunks")
    out, zpos, ypos = [], 0, 0
    for zl, yl in pairs:
        out.append([z[zpos : zpos + zl], y[ypos : ypos + yl]])
        zpos, ypos = zpos + zl, ypos + yl
    return out
