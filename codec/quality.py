"""Quality scale: maps a (possibly fractional) quality in [1, 10] to a λ and to gain-table weights.

Qualities 3..10 follow CompressAI's MSE λ ladder so those R-D points line up with its published
curves; 1 and 2 extend it downwards (the low end reached only 0.33 bpp on Kodak with λ = 0.0018,
and users need ~0.1 bpp). Fractional qualities interpolate log-linearly between neighbours, which
is how gain units (Cui et al., CVPR 2021) give a continuous rate.

The encoder effort levels live here too: like the quality they are an encoder setting the command
line checks before it loads the network (this module imports no torch).
"""

from __future__ import annotations

import math

#: CompressAI's ladder (q 1..8 of its zoo), which the first shipped weights were trained on.
COMPRESSAI_LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
LAMBDAS: tuple[float, ...] = (0.00025, 0.0007, *COMPRESSAI_LAMBDAS)
#: λ = 0.013: 0.86 bpp, 32.4 dB on Kodak with the v2 weights.
DEFAULT_QUALITY: float = 6.0
Q_MIN: float = 1.0
Q_MAX: float = float(len(LAMBDAS))
#: Qualities are coded on a 1/1000 grid (a u16 in the file header), so encoder and decoder agree.
QUALITY_SCALE = 1000


def check_quality(quality: float) -> float:
    """Return ``quality`` as float, or raise ValueError when it is outside [Q_MIN, Q_MAX]."""
    q = float(quality)
    if not (Q_MIN <= q <= Q_MAX) or math.isnan(q):
        raise ValueError(f"quality must be between {Q_MIN:g} and {Q_MAX:g}, got {quality!r}")
    return q


def split(quality: float) -> tuple[int, float]:
    """Split a quality into (lower level index, weight of the upper level), levels 0-based.

    Computed on the 1/1000 grid in integers, so the weight is the same correctly rounded float on
    every machine: decoders derive their gains from it (``interpolate``).
    """
    k = round(check_quality(quality) * QUALITY_SCALE)
    level = min(k // QUALITY_SCALE, len(LAMBDAS) - 1) - 1
    return level, (k - QUALITY_SCALE * (level + 1)) / QUALITY_SCALE


def interpolate(table, quality: float):
    """Row of a per-level table (L, ...) at ``quality``: linear between the two neighbouring levels.

    The one gain formula of training and decoding alike: a ladder level returns its own row
    untouched, and no transcendental function (whose last bit varies between libms) is involved.
    """
    level, t = split(quality)
    return table[level] if t == 0 else (1 - t) * table[level] + t * table[level + 1]


def lmbda(quality: float) -> float:
    """Rate-distortion trade-off λ for a quality (log-linear between ladder points)."""
    level, t = split(quality)
    if t == 0.0:
        return LAMBDAS[level]
    return math.exp((1 - t) * math.log(LAMBDAS[level]) + t * math.log(LAMBDAS[level + 1]))


def remap_levels(table: list[list[float]], from_lambdas: tuple[float, ...], to_lambdas: tuple[float, ...]):
    """Rows of a per-level table (log gains) moved to another λ ladder, linear in log λ.

    Used to start training on a new ladder from weights trained on an old one; levels outside the
    old range are extrapolated from its two nearest levels (high-rate theory: log gain is linear
    in log λ), which training then refines.
    """
    xs = [math.log(v) for v in from_lambdas]
    out = []
    for lam in to_lambdas:
        x = math.log(lam)
        i = min(max(sum(1 for v in xs if v <= x) - 1, 0), len(xs) - 2)
        t = (x - xs[i]) / (xs[i + 1] - xs[i])
        out.append([(1 - t) * a + t * b for a, b in zip(table[i], table[i + 1], strict=True)])
    return out


#: Iterations of the latent optimization per effort level (``codec.effort``); 0 is the plain single
#: pass (byte-identical to no effort). Sized from issue 18's baseline (100 iterations of this kind on
#: 384x256 in ~10 s on two cores, i.e. ~0.4 s per iteration at 768x512): the top level for ~60 s, the
#: middle for ~10 s per image. Measured: benchmarks/results/effort.md.
EFFORT_ITERATIONS: tuple[int, ...] = (0, 8, 24, 120)
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1


def effort_iterations(effort: int) -> int:
    """Iterations of an effort level; ValueError outside the integers 0..MAX_EFFORT."""
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer from 0 to {MAX_EFFORT}, got {effort!r}")
    return EFFORT_ITERATIONS[effort]
