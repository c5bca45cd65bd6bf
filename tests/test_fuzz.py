"""Hostile .aec files: a seeded mutation fuzzer over real files, and property tests of the container parser.

The fuzzer is scripts/fuzz.py (its long run does 100,000+ cases); here a fixed slice of it runs in CI.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import bitstream as bs
from codec.weights import load_codec
from scripts import fuzz

CASES = 4000  # CI slice; `python scripts/fuzz.py --cases 100000` is the long run
SEED = 7
CLI_EVERY = 10  # every 10th case also through `aecodec decode` / `aecodec info`
SLOW_S = 5.0  # a case slower than this fails
HANG_S = 30.0  # the watchdog kills a case after this long and reports it
NO_LIMIT = bs.NO_LIMIT


def test_mutated_files_decode_or_fail_cleanly():
    """Every case: an image matching its header, or AecError with one line; CLI exit 0, or 2 with one line.

    The cases run in a child process under scripts/fuzz.py's watchdog, so a crash or a hang is a
    reported failure (with the case to replay), not the end of the test run.
    """
    opts = fuzz.Options(cases=CASES, seed=SEED, cli_every=CLI_EVERY, slow=SLOW_S, timeout=HANG_S)
    report = fuzz.supervise(opts)
    assert not report.failures, "\n".join(report.failures)
    outcomes = report.outcomes
    assert sum(n for k, n in outcomes.items() if not k.startswith("cli")) == CASES, outcomes
    # The mutations must reach every layer, not just bounce off the CRC.
    assert outcomes["ok"] > CASES // 20, outcomes
    assert CASES // 4 < outcomes["error:CRC"] < 3 * CASES // 4, outcomes
    for kind in ("magic", "version", "truncated", "exceeds", "working area", "chunk", "alpha", "model"):
        assert outcomes[f"error:{kind}"] > 0, (kind, outcomes)
    assert outcomes["cli-ok"] > 0 and outcomes["cli-error"] > 0, outcomes


def test_case_depends_only_on_seed_and_index():
    seeds = fuzz.seed_files(load_codec())
    assert fuzz.make_case(seeds, 3, 41) == fuzz.make_case(seeds, 3, 41)
    assert fuzz.make_case(seeds, 3, 41) != fuzz.make_case(seeds, 3, 42)


# -- property tests of the container --------------------------------------------------------
PROPS = settings(
    max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

LOWER, UPPER = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
any_text = st.text(max_size=300)
ancillary_tags = st.builds(
    lambda first, rest: (first + rest).encode(),
    st.sampled_from(LOWER),
    st.text(st.sampled_from(LOWER + UPPER), min_size=3, max_size=3),
).filter(lambda t: t not in bs.KNOWN)
blobs = st.binary(max_size=48)

files = st.builds(
    bs.AecFile,
    width=st.integers(1, 0xFFFFFFFF),
    height=st.integers(1, 0xFFFFFFFF),
    quality=st.integers(1000, 8000).map(lambda k: k / bs.QUALITY_SCALE),
    layout=st.sampled_from(sorted(bs.LAYOUTS)),
    model_id=printable,
    weights_hash=st.binary(min_size=8, max_size=8),
    streams=st.lists(blobs, min_size=1, max_size=4).map(lambda s: [s]),
    alpha=st.none() | blobs,
    icc=st.none() | blobs,
    exif=st.none() | blobs,
    extra=st.dictionaries(ancillary_tags, blobs, max_size=3),
)


@PROPS
@given(files)
def test_pack_unpack_round_trip(f):
    assert bs.unpack(bs.pack(f), max_pixels=NO_LIMIT) == f


@PROPS
@given(files, st.integers(1, 1 << 40))
def test_pixel_limit_is_exact(f, limit):
    data = bs.pack(f)
    if f.width * f.height > limit:
        with pytest.raises(bs.FormatError, match="exceeds"):
            bs.unpack(data, max_pixels=limit)
    else:
        assert bs.unpack(data, max_pixels=limit).width == f.width


@PROPS
@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_parse_or_raise_format_error(tail, valid_start):
    """Random bytes, and random bytes behind a valid magic + version with a correct CRC."""
    data = fuzz.with_crc(bs.MAGIC + bytes([bs.VERSION]) + tail) if valid_start else tail
    try:
        f = bs.unpack(data, max_pixels=NO_LIMIT)
    except bs.FormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert bs.unpack(bs.pack(f), max_pixels=NO_LIMIT) == f


@PROPS
@given(files, st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6))
def test_edited_files_parse_or_raise_format_error(f, edits):
    """Byte edits anywhere in a valid file, CRC recomputed: the parser decides, and never crashes."""
    data = bytearray(bs.pack(f)[:-4])
    for at, value in edits:
        data[at % len(data)] = value
    try:
        g = bs.unpack(fuzz.with_crc(bytes(data)), max_pixels=NO_LIMIT)
    except bs.FormatError:
        return
    assert bs.unpack(bs.pack(g), max_pixels=NO_LIMIT) == g  # whatever parses, re-packs losslessly


@PROPS
@given(
    st.integers(-5, 1 << 33),
    st.integers(-5, 1 << 33),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1, 300),
    any_text,
)
def test_pack_refuses_what_unpack_would_reject(width, height, quality, layout, model_id):
    """pack either writes a file unpack accepts, or raises ValueError (never struct.error or the like)."""
    f = bs.AecFile(width, height, quality, layout, model_id)
    try:
        data = bs.pack(f)
    except ValueError:
        return
    assert bs.unpack(data, max_pixels=NO_LIMIT).width == width
