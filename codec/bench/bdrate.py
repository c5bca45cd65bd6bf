"""Bjøntegaard delta rate (VCEG-M33) over the overlap of two rate-distortion curves.

The integration is the ``bjontegaard`` package's (cubic polynomial fit of log-rate against the
quality metric, integrated over the overlapping quality range); this wrapper only cleans the
points and picks a fallback fit for curves too short for a cubic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def _clean(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points with positive rate, sorted by quality, one point per quality value."""
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    keep = np.isfinite(r) & np.isfinite(d) & (r > 0)
    r, d = r[keep], d[keep]
    d, first = np.unique(d, return_index=True)  # sorted, duplicates dropped
    return r[first], d


def bd_rate(
    rate_a: Sequence[float], dist_a: Sequence[float], rate_b: Sequence[float], dist_b: Sequence[float]
) -> float:
    """BD-rate of curve b against anchor a, in percent: negative when b needs fewer bits.

    NaN when either curve has fewer than two usable points or the quality ranges do not overlap.
    A cubic fit needs four points; shorter curves fall back to a PCHIP fit.
    """
    from bjontegaard import bd_rate as _bd_rate

    ra, da = _clean(rate_a, dist_a)
    rb, db = _clean(rate_b, dist_b)
    if min(len(da), len(db)) < 2 or max(da[0], db[0]) >= min(da[-1], db[-1]):
        return math.nan
    method = "cubic" if min(len(da), len(db)) >= 4 else "pchip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polyfit conditioning and overlap warnings: the caller sees NaN or a value
        value = _bd_rate(ra, da, rb, db, method=method, require_matching_points=False, min_overlap=0)
    return float(value)
