"""The .aec container: header round trip and each class of malformed file."""

from __future__ import annotations

import struct
import zlib

import pytest

from codec import bitstream as bs


def sample_file(**kw) -> bs.AecFile:
    fields = dict(
        width=123,
        height=45,
        quality=3.75,
        model_id="m-1",
        weights_hash=bytes(range(8)),
        z_stream=b"zz",
        y_stream=b"yyy",
        alpha=b"\x89PNGalpha",
        icc=b"icc",
        exif=b"Exif",
    )
    fields.update(kw)
    return bs.AecFile(**fields)


def recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_header_round_trip():
    f = sample_file()
    g = bs.unpack(bs.pack(f))
    assert g == f
    assert g.mode == "RGBA"


def test_optional_chunks_absent():
    g = bs.unpack(bs.pack(sample_file(alpha=None, icc=None, exif=None, layout=bs.LAYOUT_GRAY)))
    assert (g.alpha, g.icc, g.exif, g.mode) == (None, None, None, "L")


def test_wrong_magic():
    with pytest.raises(bs.FormatError, match="magic"):
        bs.unpack(b"\x89PNG\r\n\x1a\n" + bs.pack(sample_file())[8:])


def test_unknown_version():
    data = bytearray(bs.pack(sample_file()))
    data[4] = 99
    with pytest.raises(bs.FormatError, match="version 99"):
        bs.unpack(recrc(bytes(data[:-4])))


@pytest.mark.parametrize("cut", [1, 5, 20, 30, -5, -1])
def test_truncated(cut):
    data = bs.pack(sample_file())
    with pytest.raises(bs.FormatError):
        bs.unpack(data[:cut])


def test_bad_crc():
    data = bytearray(bs.pack(sample_file()))
    data[-6] ^= 0x40
    with pytest.raises(bs.FormatError, match="CRC"):
        bs.unpack(bytes(data))


def test_dimension_limit_checked_before_decoding():
    data = bs.pack(sample_file(width=70000, height=70000))
    with pytest.raises(bs.FormatError, match="exceeds"):
        bs.unpack(data)
    assert bs.unpack(data, max_pixels=70000 * 70000).width == 70000


def test_chunk_length_past_end():
    body = bs.pack(sample_file(alpha=None, icc=None, exif=None))[:-4]
    # the Y stream chunk is last: claim far more bytes than there are
    i = body.rindex(bs.Y_STREAM)
    body = body[: i + 4] + struct.pack("<I", 1 << 30) + body[i + 8 :]
    with pytest.raises(bs.FormatError, match="past the end"):
        bs.unpack(recrc(body))


def test_unknown_critical_chunk_rejected_ancillary_kept():
    body = bs.pack(sample_file())[:-4]
    with pytest.raises(bs.FormatError, match="critical"):
        bs.unpack(recrc(body + b"XXXX" + struct.pack("<I", 1) + b"!"))
    g = bs.unpack(recrc(body + b"xtra" + struct.pack("<I", 1) + b"!"))
    assert g.extra == {b"xtra": b"!"}


def test_missing_stream_chunk():
    f = sample_file()
    body = bs.pack(f)[:-4]
    i = body.index(bs.Y_STREAM)
    body = body[:i] + b"yNOP" + body[i + 4 :]
    with pytest.raises(bs.FormatError, match="missing"):
        bs.unpack(recrc(body))


def test_quality_grid():
    assert bs.quantize_quality(4.12345) == 4.123
    assert bs.unpack(bs.pack(sample_file(quality=bs.quantize_quality(7.9996)))).quality == 8.0
