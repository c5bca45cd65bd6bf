"""Quality scale: maps a (possibly fractional) quality in [1, 8] to a λ and to gain-table weights.

Integer qualities follow CompressAI's MSE λ ladder so our R-D points line up with its published
curves point for point; fractional qualities interpolate log-linearly between neighbours, which is
how gain units (Cui et al., CVPR 2021) give a continuous rate.
"""

from __future__ import annotations

import math

LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
Q_MIN: float = 1.0
Q_MAX: float = float(len(LAMBDAS))


def check_quality(quality: float) -> float:
    """Return ``quality`` as float, or raise ValueError when it is outside [Q_MIN, Q_MAX]."""
    q = float(quality)
    if not (Q_MIN <= q <= Q_MAX) or math.isnan(q):
        raise ValueError(f"quality must be between {Q_MIN:g} and {Q_MAX:g}, got {quality!r}")
    return q


def split(quality: float) -> tuple[int, float]:
    """Split a quality into (lower level index, weight of the upper level), levels 0-based."""
    q = check_quality(quality)
    level = min(int(math.floor(q)), len(LAMBDAS) - 1) - 1
    return level, q - (level + 1)


def lmbda(quality: float) -> float:
    """Rate-distortion trade-off λ for a quality (log-linear between ladder points)."""
    level, t = split(quality)
    if t == 0.0:
        return LAMBDAS[level]
    return math.exp((1 - t) * math.log(LAMBDAS[level]) + t * math.log(LAMBDAS[level + 1]))
