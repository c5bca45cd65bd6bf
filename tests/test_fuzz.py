"""Hostile .aec files: a seeded mutation fuzzer over real files, and property tests of the container parser.

The fuzzer is scripts/fuzz.py (its long run does 100,000+ cases); here fixed slices of it run: a short one with
the fast tests, the CI slice of 4,000 cases and its reach checks with the slow ones (``bash scripts/test.sh --slow``).
"""

from __future__ import annotations

import dataclasses
import random
import shlex
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.format import bitstream as bs
from codec.weights.store import load_codec
from scripts import fuzz

SHORT_CASES = 200  # the fast tests' slice: the first cases of the CI slice
CASES = 4000  # the CI slice (slow tests); `python scripts/fuzz.py --cases 100000` is the long run
SEED = 7
CLI_EVERY = 10  # every 10th case also through `aecodec decode` / `aecodec info`
SLOW_CPU_S = 5.0  # a case using more CPU time than this fails (CPU time: a busy machine does not make it fail)
HANG_S = 60.0  # the watchdog kills a case after this long (wall clock, generous: it is for hangs) and reports it
NO_LIMIT = bs.NO_LIMIT


def _fuzz(cases: int) -> Counter:
    """Cases 0..cases-1 of seed SEED in a child process under scripts/fuzz.py's watchdog, so a crash or a hang
    is a reported failure (with the command that replays the case), not the end of the test run."""
    opts = fuzz.Options(cases=cases, seed=SEED, cli_every=CLI_EVERY, slow=SLOW_CPU_S, timeout=HANG_S)
    report = fuzz.supervise(opts)
    assert not report.failures, "\n".join(report.failures)
    assert report.cases == cases, report.outcomes
    assert report.outcomes["cli-path-error"] == cases // CLI_EVERY, report.outcomes  # a hostile path per CLI case
    return report.outcomes


def test_mutated_files_decode_or_fail_cleanly():
    """Every case: an image matching its header, or AecError with one line; CLI exit 0, or 2 with one line;
    none over SLOW_CPU_S of CPU time."""
    _fuzz(SHORT_CASES)


@pytest.mark.slow
def test_the_ci_slice_decodes_or_fails_cleanly_and_reaches_every_layer():
    """As the short slice, over the CI slice, whose mutations reach every layer."""
    outcomes = _fuzz(CASES)
    # The mutations must reach every layer, not just bounce off the CRC.
    assert outcomes["ok"] > CASES // 20, outcomes
    assert CASES // 4 < outcomes["error:CRC"] < 3 * CASES // 4, outcomes
    kinds = ("magic", "version", "truncated", "exceeds", "working area", "chunk", "alpha", "stored", "metadata")
    for kind in (*kinds, "model"):
        assert outcomes[f"error:{kind}"] > 0, (kind, outcomes)
    assert outcomes["cli-ok"] > 0 and outcomes["cli-error"] > 0, outcomes
    # Damage to every kind of chunk the seeds hold gets past the parser (CRC recomputed) and, for the kinds
    # with a decoder behind them, into it: streams into rANS, stored planes into their checks.
    table = fuzz.reach_table(outcomes, CASES)
    for kind in ("STRM", "YSTR", "ZSTR", "PIXL", "aLPH", "iCCP", "eXIF", "other"):
        assert outcomes[f"reach:chunk:{kind}:parsed"] > 0, (kind, table)
    for kind, stage in (("STRM", "rans"), ("YSTR", "rans"), ("PIXL", "plane"), ("aLPH", "plane")):
        assert outcomes[f"reach:chunk:{kind}:{stage}"] > 0, (kind, stage, table)
    assert outcomes["reach:chunk:PIXL:plane-decoded"] > 0, table


def test_the_replay_command_runs_the_case_with_the_same_settings():
    """The CLI cases, the limits and the weights depend on the run's settings: the replay command carries them."""
    opts = fuzz.Options(cases=50, seed=3, cli_every=7, max_pixels=4096, slow=2.5, timeout=9.0)
    for weights in (None, "/tmp/my weights"):
        run = dataclasses.replace(opts, weights=weights)
        command = shlex.split(fuzz.replay(run, 4711))
        assert command[:2] == ["python", "scripts/fuzz.py"]
        again = fuzz.options(fuzz.parse_args(command[2:]))
        assert again == dataclasses.replace(run, start=4711, cases=1, save="/tmp/case")


def test_the_readme_states_the_slices_and_the_limits():
    text = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert f"uses over {SLOW_CPU_S:g} s of CPU time" in text
    assert f"after {fuzz.Options(cases=1).timeout:g} s of wall time, {HANG_S:g} s in the tests" in text
    assert f"The fast tests run {SHORT_CASES} cases, the slow ones (CI) {CASES:,}" in text


@pytest.mark.slow
def test_every_failure_prints_the_command_that_replays_it():
    """A slow case (here every case: no CPU time is under -1 s) is reported with the command that runs that one
    case with the same settings; crashes, hangs and wrong results carry the same command (``fuzz.replay``)."""
    opts = fuzz.Options(cases=2, seed=SEED, start=40, cli_every=CLI_EVERY, slow=-1.0, timeout=HANG_S)
    report = fuzz.supervise(opts)
    assert len(report.failures) == 2, report.failures
    for i, failure in zip((40, 41), report.failures, strict=True):
        assert failure.startswith(f"case {i} (") and "slow" in failure and "CPU time" in failure, failure
        command = shlex.split(failure.split("replay: ")[1])
        assert command[:2] == ["python", "scripts/fuzz.py"], failure
        again = fuzz.options(fuzz.parse_args(command[2:]))
        assert again == dataclasses.replace(opts, start=i, cases=1, save="/tmp/case"), failure


#: Cases per mutation kind below; each applies that one mutation to a seed file and recomputes the CRC.
KIND_CASES = 200
#: Least share of those cases reaching (rANS decoder, network) for the kinds aimed at chunks and streams.
#: Measured (seed files of ``fuzz.seed_files``, draws seeded by the kind's name): stream_payload 0.88/0.81,
#: side_chunk 0.87/0.87, extra_chunk 0.39/0.39, splice 0.34/0.34 (0.235 since a stored ``PIXL`` seed names no
#: model: a splice onto its header has no network to reach), chunk_tag 0.04/0.04, chunk_length 0.01/0.01
#: (a wrong length or a renamed critical chunk stops the parser: by design they test the parser).
REACH_FLOORS = {
    "stream_payload": (0.75, 0.7),
    "side_chunk": (0.75, 0.75),
    "extra_chunk": (0.3, 0.3),
    "splice": (0.2, 0.2),
    "chunk_tag": (0.02, 0.02),
    "chunk_length": (0.005, 0.005),
}


@pytest.fixture(scope="module")
def seed_files(test_weights):
    """The fuzzer's seed files, coded with the test network (module-wide: before the per-test weights fixture)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AECODEC_WEIGHTS", test_weights)
        return fuzz.seed_files(load_codec())


def _single_mutations(name: str, seeds: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(seed, mutated) pairs of ``KIND_CASES`` draws of mutation ``name`` alone, CRC not yet recomputed."""
    rng = random.Random(f"kind:{name}")
    pairs = []
    for _ in range(KIND_CASES):
        data = rng.choice(seeds)
        pairs.append((data, fuzz.mutate(name, data, rng, seeds)))
    return pairs


@pytest.mark.parametrize("name", sorted(fuzz.MUTATIONS))
def test_each_mutation_kind_changes_the_file(name, seed_files):
    """No kind is a silent no-op on real files (the old header offsets made four of them one)."""
    unchanged = sum(mutated == data for data, mutated in _single_mutations(name, seed_files))
    assert unchanged == 0, f"{name} left {unchanged} of {KIND_CASES} files as they were"


@pytest.mark.parametrize("name", sorted(REACH_FLOORS))
def test_chunk_and_stream_mutations_reach_the_decoder_and_the_network(name, seed_files):
    """The floors were measured on the autoencoder's seeds; the overfit seeds have their own test below."""
    from tests.support import OVERFIT_ID

    seeds = [d for d in seed_files if bs.unpack(d).model_id != OVERFIT_ID]
    reached: Counter = Counter()
    for _, mutated in _single_mutations(name, seeds):
        with fuzz.stages_reached() as seen:
            fuzz.decode_case(fuzz.fix_crc(mutated), None)
        reached.update(seen)
    rans, network = REACH_FLOORS[name]
    assert reached["rans"] >= rans * KIND_CASES and reached["network"] >= network * KIND_CASES, reached


#: Least share of the cases of the kinds aimed at stored planes and metadata reaching (parser, plane checks).
#: Measured (2,000 cases, seed 3, one mutation with the CRC recomputed): stored_plane 0.72/0.72 and 0.31 decoded,
#: metadata_size 0.33 parsed (the cases at the limit; over it the parser refuses before copying anything).
PLANE_FLOORS = {"stored_plane": (0.5, 0.5), "metadata_size": (0.1, 0.0)}


@pytest.mark.parametrize("name", sorted(PLANE_FLOORS))
def test_plane_and_metadata_mutations_reach_their_checks(name, seed_files):
    reached: Counter = Counter()
    outcomes: Counter = Counter()
    for _, mutated in _single_mutations(name, seed_files)[: KIND_CASES // 4]:
        with fuzz.stages_reached() as seen:
            outcomes[fuzz.decode_case(fuzz.fix_crc(mutated), None)] += 1
        reached.update(seen)
    parsed, plane = PLANE_FLOORS[name]
    n = KIND_CASES // 4
    assert reached["parsed"] >= parsed * n and reached["plane"] >= plane * n, (reached, outcomes)
    wanted = {"stored_plane": "error:stored", "metadata_size": "error:metadata"}[name]
    assert outcomes[wanted] > 0 and outcomes["ok"] > 0, outcomes


def test_every_hostile_path_is_one_line(seed_files, tmp_path):
    kinds = len(fuzz._bad_paths(tmp_path, tmp_path / "case.aec"))
    assert kinds >= 8
    assert {fuzz.path_case(seed_files[0], tmp_path, k) for k in range(kinds)} == {"cli-path-error"}


def test_reach_table_names_every_chunk_kind():
    table = fuzz.reach_table(Counter({"reach:chunk:PIXL:cases": 4, "reach:chunk:PIXL:plane": 3}), 10)
    assert all(f"\n{kind} " in table for kind in fuzz.CHUNK_KINDS)
    assert "75.0%" in table.split("\nPIXL")[1].splitlines()[0]


def test_fitted_streams_are_their_own_chunk_kind(seed_files):
    """A fitted file's ``STRM`` goes to another decoder than the autoencoders': the report names it apart."""
    from tests.support import OVERFIT_ID

    by_model = {bs.unpack(d).model_id: d for d in seed_files}
    assert fuzz.chunk_kind(bs.STREAMS, OVERFIT_ID) == fuzz.FITTED_STRM != fuzz.chunk_kind(bs.STREAMS, "x")
    data = by_model[OVERFIT_ID]
    f = bs.unpack(data)
    f.streams = [[s[0], s[1][::-1]] for s in f.streams]
    assert fuzz.changed_chunks(data, bs.pack(f)) == {bs.STREAMS}


def test_stage_hooks_see_each_stage_and_are_removed(seed_files):
    """A valid file reaches every stage; a damaged one only the stages before its damage; no hook stays."""
    from codec.core import engine
    from codec.format import stored

    before = (bs.unpack, engine.synthesize_with, engine.RansTables.decode, engine.RansTables.decoder)
    plane = stored.read_plane
    with fuzz.stages_reached() as seen:
        assert fuzz.decode_case(seed_files[0], None) == "ok"
    assert seen == set(fuzz.STAGES)
    with fuzz.stages_reached() as seen:
        assert fuzz.decode_case(seed_files[0][:-1] + b"x", None) == "error:CRC"
    assert seen == set()
    assert (bs.unpack, engine.synthesize_with, engine.RansTables.decode, engine.RansTables.decoder) == before
    assert stored.read_plane is plane
    with fuzz.stages_reached() as seen:  # the RGBA seed: its alpha plane goes through the plane checks
        assert fuzz.decode_case(seed_files[2], None) == "ok"
    assert {"plane", "plane-decoded"} <= seen


def test_chunks_are_found_in_every_seed(seed_files):
    """The fuzzer walks chunks with the format module's layout: every seed has chunks, ending at the CRC."""
    for data in seed_files:
        chunks = fuzz.chunks_of(data)
        assert chunks and chunks[-1].payload.stop == len(data) - bs.CRC_SIZE
        assert {c.tag for c in chunks} <= bs.KNOWN


def test_case_depends_only_on_seed_and_index(seed_files):
    seeds = seed_files
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


#: Least share of mutations of the overfit seeds reaching (rANS decoder, network); measured in docs/FORMAT.md,
#: "overfit streams". (A splice onto an overfit header reaches neither: its tile grid or stream count differs.)
OVERFIT_REACH_FLOORS = {"stream_payload": (0.6, 0.3), "side_chunk": (0.6, 0.3)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OVERFIT_REACH_FLOORS))
def test_mutations_of_overfit_files_reach_its_decoder(name, seed_files):
    """The per-image kind's streams (decoder parameters, latent grids) are fuzzed past the parser too."""
    from tests.support import OVERFIT_ID

    seeds = [d for d in seed_files if bs.unpack(d).model_id == OVERFIT_ID]
    assert len(seeds) == 2
    rng = random.Random(f"overfit:{name}")
    reached: Counter = Counter()
    for _ in range(KIND_CASES):
        mutated = fuzz.mutate(name, rng.choice(seeds), rng, seed_files)
        with fuzz.stages_reached() as seen:
            fuzz.decode_case(fuzz.fix_crc(mutated), None)
        reached.update(seen)
    rans, network = OVERFIT_REACH_FLOORS[name]
    assert reached["rans"] >= rans * KIND_CASES and reached["network"] >= network * KIND_CASES, reached
