"""The .aec container: header round trip and each class of malformed file."""

from __future__ import annotations

import struct
import zlib

import pytest

from codec.format import bitstream as bs


def sample_file(**kw) -> bs.AecFile:
    fields = dict(
        width=123,
        height=45,
        quality=3.75,
        model_id="m-1",
        weights_hash=bytes(range(8)),
        streams=[[b"zz", b"yyy", b""]],
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
    # the stream chunk is last: claim far more bytes than there are
    i = body.rindex(bs.STREAMS)
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
    i = body.index(bs.STREAMS)
    body = body[:i] + b"yNOP" + body[i + 4 :]
    with pytest.raises(bs.FormatError, match="missing"):
        bs.unpack(recrc(body))


def test_quality_grid():
    assert bs.quantize_quality(4.12345) == 4.123
    assert bs.unpack(bs.pack(sample_file(quality=bs.quantize_quality(7.9996)))).quality == 8.0


def test_tiles_with_any_number_of_streams_round_trip():
    streams = [[bytes([t]) * t, b"", bytes(range(t))] for t in range(6)]  # 6 tiles, 3 streams each
    f = sample_file(width=130, height=70, tile=64, streams=streams)
    assert f.tile_count() == 6
    assert bs.unpack(bs.pack(f)).streams == streams


def test_version_2_still_round_trips():
    """Version 2 (a z and a y stream per tile, tile side in units of 64) is read, and written on request."""
    streams = [[b"z" * t, b"y" * (t + 1)] for t in range(6)]
    f = sample_file(width=130, height=70, tile=64, streams=streams, version=2)
    data = bs.pack(f)
    assert data[4] == 2 and bs.Z_STREAM in data and bs.STREAMS not in data
    assert bs.unpack(data) == f
    with pytest.raises(ValueError):
        bs.pack(sample_file(version=2))  # three streams in a tile: not a version 2 file


def test_header_layout_matches_pack():
    for version in bs.VERSIONS:
        f = sample_file(width=100, height=77, tile=128, version=version, streams=[[b"a", b"b"]])
        data = bs.pack(f)
        layout = bs.header_layout(version)
        for name, value in (("version", version), ("width", 100), ("height", 77), ("model_len", 3)):
            at, fmt = layout[name]
            assert struct.unpack_from(fmt, data, at)[0] == value
        at, fmt = layout["tile"]
        assert struct.unpack_from(fmt, data, at)[0] * (64 if version == 2 else 1) == 128
        assert data[layout["model_id"][0] :].startswith(b"m-1")


def _with_streams_payload(payload: bytes) -> bytes:
    body = bs.pack(sample_file(alpha=None, icc=None, exif=None))[:-4]
    i = body.index(bs.STREAMS)
    return recrc(body[:i] + bs.STREAMS + struct.pack("<I", len(payload)) + payload)


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "no stream count"),
        (struct.pack("<H", 0), "no streams"),
        (struct.pack("<HI", 2, 1), "too short"),
        (struct.pack("<HII", 2, 1, 1) + b"abc", "add up"),
        (struct.pack("<HII", 2, 1, 5) + b"abc", "add up"),
    ],
)
def test_damaged_stream_table(payload, message):
    with pytest.raises(bs.FormatError, match=message):
        bs.unpack(_with_streams_payload(payload))


def test_version_2_chunks_in_a_version_3_file_are_unknown_critical_chunks():
    body = bs.pack(sample_file())[:-4]
    with pytest.raises(bs.FormatError, match="critical"):
        bs.unpack(recrc(body + bs.Z_STREAM + struct.pack("<I", 1) + b"!"))
