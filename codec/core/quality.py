"""Quality scale: maps a (possibly fractional) quality in [1, levels] to a λ and to gain-table weights.

Qualities 3..10 follow CompressAI's MSE λ ladder so those R-D points line up with its published
curves; 1 and 2 extend it downwards (the low end reached only 0.33 bpp on Kodak with λ = 0.0018,
and users need ~0.1 bpp); 11 and 12 extend it upwards (q10 stopped at ≈ 37.5 dB on Kodak, the
goal is ≥ 40 dB). Fractional qualities interpolate log-linearly between neighbours, which is how
gain units (Cui et al., CVPR 2021) give a continuous rate.

``LAMBDAS`` is the longest ladder. A model trained on ``levels`` of them uses the first ``levels``
(its manifest ``arch``), so its qualities are [1, levels] and q1..q10 mean the same λ in every
model; the shipped v2-v4 weights have 10 levels.

The encoder effort levels live here too: like the quality they are an encoder setting the command
line checks before it loads the network (this module imports no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: CompressAI's ladder (q 1..8 of its zoo), which the first shipped weights were trained on.
COMPRESSAI_LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
#: CompressAI's MS-SSIM ladder (its docs, zoo.rst: loss λ·(1 − MS-SSIM) + R), the λs of its ms-ssim networks.
COMPRESSAI_MSSSIM_LAMBDAS: tuple[float, ...] = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)
#: The upper levels double λ (at high rate about +1.3-1.5 dB each; unmeasured until a model is trained on them).
LAMBDAS: tuple[float, ...] = (0.00025, 0.0007, *COMPRESSAI_LAMBDAS, 0.36, 0.72)
#: Levels of the longest ladder: what new training runs use, and the top quality a file header may hold.
LEVELS: int = len(LAMBDAS)
#: A model needs two levels at least: fractional qualities and ladder remapping interpolate between two.
MIN_LEVELS = 2
#: λ = 0.013: 0.86 bpp, 32.4 dB on Kodak with the v2 weights.
DEFAULT_QUALITY: float = 6.0
Q_MIN: float = 1.0
Q_MAX: float = float(LEVELS)
#: Qualities are coded on a 1/1000 grid (a u16 in the file header), so encoder and decoder agree.
QUALITY_SCALE = 1000


def check_levels(levels: int) -> int:
    """``levels`` if a model can have that many quality levels, else ValueError."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not MIN_LEVELS <= levels <= LEVELS:
        raise ValueError(f"a model has {MIN_LEVELS} to {LEVELS} quality levels, got {levels!r}")
    return levels


def ladder(levels: int) -> tuple[float, ...]:
    """The λs of a model with ``levels`` quality levels: the first ``levels`` of ``LAMBDAS``."""
    return LAMBDAS[: check_levels(levels)]


def check_quality(quality: float, levels: int = LEVELS, model: str = "", only: Sequence[float] | None = None) -> float:
    """Return ``quality`` as float, or raise ValueError when it is outside [Q_MIN, levels] or, for a model with
    one network per quality (``only``: its qualities), not one of them.

    ``levels`` is the model's (its top quality); ``model``, when given, is named in the message.
    """
    q = float(quality)
    if only is not None:
        if q not in only:  # NaN is in no list
            name = f"model {model}" if model else "this model"
            raise ValueError(f"{name} has no quality {q:g}: it {describe(only, True)}")
        return q
    if not (Q_MIN <= q <= levels) or math.isnan(q):
        of = f" for model {model}" if model else ""
        raise ValueError(f"quality must be between {Q_MIN:g} and {levels:g}{of}, got {quality!r}")
    return q


def grid_step(only: Sequence[float]) -> float | None:
    """The step of qualities that form a grid with a fractional step (a variable-rate model imported from
    CompressAI: 3 to 10 in steps of 0.25), None for any other list (one network per quality)."""
    qs = sorted(only)
    steps = {round((b - a) * QUALITY_SCALE) for a, b in zip(qs, qs[1:], strict=False)}
    if len(qs) < 3 or len(steps) != 1 or next(iter(steps)) % QUALITY_SCALE == 0:
        return None
    return next(iter(steps)) / QUALITY_SCALE


def describe(only: Sequence[float], verb: bool = False) -> str:
    """The qualities a model with a list of them codes, in a few words: "qualities 3 to 10 in steps of 0.25", or
    each ("qualities 3, 4"); with ``verb``, as the end of "it ...": "codes qualities 3 to 10 in steps of 0.25",
    "has one network for each of qualities 3, 4"."""
    step = grid_step(only)
    if step is not None:
        words = f"qualities {min(only):g} to {max(only):g} in steps of {step:g}"
        return f"codes {words}" if verb else words
    words = "qualities " + ", ".join(f"{v:g}" for v in sorted(only))
    return f"has one network for each of {words}" if verb else words


def default_quality(only: Sequence[float] | None = None) -> float:
    """The quality to code at when none is asked: ``DEFAULT_QUALITY``, or for a model with one network per
    quality (``only``) the nearest one it has (the higher of two as near: a default should not starve an image)."""
    if not only:
        return DEFAULT_QUALITY
    return float(min(only, key=lambda q: (abs(q - DEFAULT_QUALITY), -q)))


def compressai_quality(zoo_quality: int) -> int:
    """Our quality of CompressAI zoo quality 1..8: the level of our ladder with its MSE λ (its 1 is our 3)."""
    return LAMBDAS.index(COMPRESSAI_LAMBDAS[zoo_quality - 1]) + 1


def zoo_quality(quality: float) -> int:
    """CompressAI's zoo quality of one of our qualities (``compressai_quality`` inverted); ValueError for others."""
    for k in range(1, len(COMPRESSAI_LAMBDAS) + 1):
        if compressai_quality(k) == quality:
            return k
    raise ValueError(f"quality {quality:g} is none of CompressAI's zoo qualities")


def integer_qualities(levels: int, only: Sequence[float] | None = None) -> list[float]:
    """Every integer quality of a model with ``levels`` quality levels, or the integer ones of its ``only``
    qualities (benchmarks' default sweep; a variable-rate model's: its trained levels)."""
    if only is not None:
        return sorted(float(q) for q in only if float(q).is_integer())
    return [float(q) for q in range(int(Q_MIN), levels + 1)]


def search_steps(levels: int, only: Sequence[float] | None = None) -> Sequence[int]:
    """The qualities a size search may pick, on the 1/1000 grid, increasing: every step of [Q_MIN, levels], or a
    model's ``only`` qualities (one network each)."""
    if only is not None:
        return sorted(round(q * QUALITY_SCALE) for q in only)
    return range(round(Q_MIN * QUALITY_SCALE), levels * QUALITY_SCALE + 1)


def split(quality: float, levels: int = LEVELS) -> tuple[int, float]:
    """Split a quality into (lower level index, weight of the upper level), levels 0-based.

    Computed on the 1/1000 grid in integers, so the weight is the same correctly rounded float on
    every machine: decoders derive their gains from it (``interpolate``). At the top quality the
    lower level is ``levels - 2`` with weight 1 (docs/FORMAT.md), so ``levels`` must be the model's.
    """
    k = round(check_quality(quality, levels) * QUALITY_SCALE)
    level = min(k // QUALITY_SCALE, levels - 1) - 1
    return level, (k - QUALITY_SCALE * (level + 1)) / QUALITY_SCALE


def interpolate(table, quality: float):
    """Row of a per-level table (L, ...) at ``quality`` in [1, L]: linear between the two neighbouring levels.

    The one gain formula of training and decoding alike: a ladder level returns its own row
    untouched, and no transcendental function (whose last bit varies between libms) is involved.
    The table's length is the model's level count, so a quality above its top raises ValueError.
    """
    level, t = split(quality, len(table))
    return table[level] if t == 0 else (1 - t) * table[level] + t * table[level + 1]


def lmbda(quality: float) -> float:
    """Rate-distortion trade-off λ for a quality (log-linear between ladder points)."""
    level, t = split(quality)
    if t == 0.0:
        return LAMBDAS[level]
    return math.exp((1 - t) * math.log(LAMBDAS[level]) + t * math.log(LAMBDAS[level + 1]))


def remap_levels(table: list[list[float]], from_lambdas: tuple[float, ...], to_lambdas: tuple[float, ...]):
    """Rows of a per-level table (log gains) moved to another λ ladder, linear in log λ.

    Used to start training on a new ladder from weights trained on an old one, or on more levels
    of the same ladder; levels outside the old range are extrapolated from its two nearest levels
    (high-rate theory: log gain is linear in log λ), which training then refines. Levels the two
    ladders share keep their rows exactly.
    """
    xs = [math.log(v) for v in from_lambdas]
    out = []
    for lam in to_lambdas:
        x = math.log(lam)
        i = min(max(sum(1 for v in xs if v <= x) - 1, 0), len(xs) - 2)
        t = (x - xs[i]) / (xs[i + 1] - xs[i])
        out.append([(1 - t) * a + t * b for a, b in zip(table[i], table[i + 1], strict=True)])
    return out


#: Iterations of the latent optimization per effort level (``codec.coding.effort``); 0 is the plain single
#: pass (byte-identical to no effort). One iteration (forward and backward of g_s, compute-bound) takes
#: ~1.45 s per 768x512 image on two AVX2 cores with the context model, so the levels aim at ~10 s,
#: ~25 s and ~60 s per such image. Measured: benchmarks/results/effort.md.
EFFORT_ITERATIONS: tuple[int, ...] = (0, 6, 16, 40)
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1


def effort_iterations(effort: int) -> int:
    """Iterations of an effort level; ValueError outside the integers 0..MAX_EFFORT."""
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer from 0 to {MAX_EFFORT}, got {effort!r}")
    return EFFORT_ITERATIONS[effort]
