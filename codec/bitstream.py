"""The ``.aec`` container: header, chunks and CRC. Spec: docs/FORMAT.md (keep the two in step).

Pure functions over bytes; nothing here touches the network. Every length is checked against the
bytes actually present and the pixel count against a limit *before* anything is allocated.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from .errors import FormatError
from .quality import Q_MAX, Q_MIN, QUALITY_SCALE

MAGIC = b"\x89AEC"
VERSION = 2  # 2: integer-exact hyper-synthesis (codec/exact.py); 1 was a float pre-release, never shipped
#: Default limit on width × height a decoder accepts (raise with ``max_pixels``).
MAX_PIXELS = 1 << 28

LAYOUT_RGB, LAYOUT_GRAY = 0, 1
LAYOUTS = {LAYOUT_RGB: "RGB", LAYOUT_GRAY: "L"}

#: Tile sides are stored in units of this many pixels (the network's pad multiple).
TILE_UNIT = 64

# fixed header after the magic: version, layout, quality, width, height, tile side / 64, weights hash,
# model-id length
_FIXED = struct.Struct("<BBHIIH8sB")
_CHUNK = struct.Struct("<4sI")
_CRC = struct.Struct("<I")

#: Chunks a decoder must understand (upper-case first letter) and ancillary ones it may skip.
Z_STREAM, Y_STREAM, TILE_LENGTHS = b"ZSTR", b"YSTR", b"TLEN"
ALPHA, ICC, EXIF = b"aLPH", b"iCCP", b"eXIF"
CRITICAL = {Z_STREAM, Y_STREAM}
KNOWN = CRITICAL | {TILE_LENGTHS, ALPHA, ICC, EXIF}
_LENGTH_PAIR = struct.Struct("<II")


@dataclass
class AecFile:
    """Everything a ``.aec`` file holds, in memory."""

    width: int
    height: int
    quality: float
    layout: int = LAYOUT_RGB
    model_id: str = ""
    weights_hash: bytes = b"\0" * 8
    z_stream: bytes = b""  # all tiles' hyper-latent streams, concatenated in raster order
    y_stream: bytes = b""  # all tiles' latent streams, concatenated in raster order
    tile: int = 0  # tile side in pixels (a multiple of TILE_UNIT); 0: the whole image is one tile
    tile_lengths: list[tuple[int, int]] | None = None  # (z, y) stream bytes per tile; None: one tile
    alpha: bytes | None = None  # PNG-compressed alpha plane, lossless
    icc: bytes | None = None
    exif: bytes | None = None
    version: int = VERSION
    extra: dict[bytes, bytes] = field(default_factory=dict)

    def tile_count(self) -> int:
        if not self.tile:
            return 1
        hp, wp = (-(-n // TILE_UNIT) * TILE_UNIT for n in (self.height, self.width))
        return -(-hp // self.tile) * -(-wp // self.tile)

    def tile_streams(self) -> list[tuple[bytes, bytes]]:
        """(z, y) streams of each tile, in raster order."""
        lengths = self.tile_lengths or [(len(self.z_stream), len(self.y_stream))]
        out, zpos, ypos = [], 0, 0
        for zl, yl in lengths:
            out.append((self.z_stream[zpos : zpos + zl], self.y_stream[ypos : ypos + yl]))
            zpos, ypos = zpos + zl, ypos + yl
        return out

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
    if f.version != VERSION:
        raise ValueError(f"this encoder writes version {VERSION} only")
    if f.tile < 0 or f.tile % TILE_UNIT or f.tile // TILE_UNIT > 0xFFFF:
        raise ValueError(f"tile side must be 0 or a multiple of {TILE_UNIT} up to {0xFFFF * TILE_UNIT}")
    if f.tile_count() > 1:
        if f.tile_lengths is None or len(f.tile_lengths) != f.tile_count():
            raise ValueError(f"need {f.tile_count()} tile lengths for a {f.tile}-pixel tile grid")
        if sum(z for z, _ in f.tile_lengths) != len(f.z_stream) or sum(y for _, y in f.tile_lengths) != len(f.y_stream):
            raise ValueError("tile lengths do not add up to the streams")
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
        _FIXED.pack(
            f.version,
            f.layout,
            round(f.quality * QUALITY_SCALE),
            f.width,
            f.height,
            f.tile // TILE_UNIT,
            f.weights_hash,
            len(model),
        ),
        model,
    ]
    chunks = [(Z_STREAM, f.z_stream), (Y_STREAM, f.y_stream)]
    if f.tile_count() > 1:
        chunks.append((TILE_LENGTHS, b"".join(_LENGTH_PAIR.pack(*pair) for pair in f.tile_lengths)))
    chunks += [(tag, data) for tag, data in ((ALPHA, f.alpha), (ICC, f.icc), (EXIF, f.exif)) if data is not None]
    chunks += list(f.extra.items())
    for tag, data in chunks:
        if len(data) > 0xFFFFFFFF:
            raise ValueError(f"chunk {tag!r} longer than 4 GiB")
        parts += [_CHUNK.pack(tag, len(data)), data]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes, max_pixels: int = MAX_PIXELS) -> AecFile:
    """Parse and validate a ``.aec`` file; raises FormatError with a one-line reason."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not an .aec file (wrong magic bytes)")
    if len(data) < len(MAGIC) + _FIXED.size + _CRC.size:
        raise FormatError("truncated .aec file (header incomplete)")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise FormatError(f"unsupported .aec format version {version} (this decoder reads version {VERSION})")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise FormatError("corrupt .aec file (CRC mismatch: truncated or damaged)")
    version, layout, q, width, height, tile_units, whash, mlen = _FIXED.unpack_from(body, len(MAGIC))
    pos = len(MAGIC) + _FIXED.size
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
    if not _printable(body[pos : pos + mlen]):
        raise FormatError("model id is not printable ASCII")
    model_id = body[pos : pos + mlen].decode("ascii")
    pos += mlen
    f = AecFile(width, height, quality, layout, model_id, whash, tile=tile_units * TILE_UNIT, version=version)
    tile_table = None
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
        payload = body[pos : pos + length]
        pos += length
        if tag == Z_STREAM:
            f.z_stream = payload
        elif tag == Y_STREAM:
            f.y_stream = payload
        elif tag == TILE_LENGTHS:
            tile_table = payload
        elif tag == ALPHA:
            f.alpha = payload
        elif tag == ICC:
            f.icc = payload
        elif tag == EXIF:
            f.exif = payload
        elif _critical(tag):
            raise FormatError(f"unknown critical chunk {tag!r}")
        else:
            f.extra[tag] = payload
    missing = CRITICAL - seen
    if missing:
        raise FormatError(f"missing chunk(s): {', '.join(sorted(t.decode('latin-1') for t in missing))}")
    f.tile_lengths = _tile_lengths(f, tile_table)
    return f


def _tile_lengths(f: AecFile, table: bytes | None) -> list[tuple[int, int]] | None:
    """Validate the per-tile length table against the tile grid and the stream chunks."""
    n = f.tile_count()
    if n == 1:
        if table is not None:
            raise FormatError("tile length table present for a single-tile image")
        return None
    if table is None:
        raise FormatError(f"missing chunk(s): {TILE_LENGTHS.decode()}")
    if len(table) != n * _LENGTH_PAIR.size:
        raise FormatError(f"tile length table has {len(table)} bytes, expected {n * _LENGTH_PAIR.size} for {n} tiles")
    pairs = list(_LENGTH_PAIR.iter_unpack(table))
    if sum(p[0] for p in pairs) != len(f.z_stream) or sum(p[1] for p in pairs) != len(f.y_stream):
        raise FormatError("tile lengths do not add up to the stream chunks")
    return pairs
