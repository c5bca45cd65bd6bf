"""The fitted kind's coding tables with no torch: discretized Laplace CDFs identical on every machine, and the
integer rule that picks one (``laplace`` wraps them for CompressAI's coder and holds the training rate).

A latent (or a decoder parameter) ``v`` is coded with a Laplace distribution of centre ``c`` and
scale ``b``. The coder needs quantized CDFs that encoder and decoder build bit-identically, so
nothing here calls a platform ``exp``:

* scales form a log-spaced ladder ``SCALES`` (``b_k``); the centre is rounded to 1/``FRACTIONS``;
* every probability is a power of ``rho_k = exp(-1 / (FRACTIONS · b_k))`` with an *integer*
  exponent (the bin edges ``s ± 1/2`` and the centre are multiples of 1/FRACTIONS), and ``rho_k``
  comes from ``decimal`` (correctly rounded by its specification, so the same double everywhere);
* powers are built by repeated float64 multiplication (IEEE-754: the same bits everywhere), and
  probabilities become frequencies in integers.

Which table codes a value follows from the exact ARM's integer outputs (``laplace.table_index``, and the
compiled decoder's copy of it in ``_wavefront.c``)::

    mu, log b (integers at OUT_BITS) ──► k = scale step, f = centre fraction, m = floor of centre
                                         symbol coded = v − m with table k·FRACTIONS + f
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal, localcontext

#: Scale ladder: log-spaced from B_MIN to B_MAX in SCALE_COUNT steps.
B_MIN, B_MAX, SCALE_COUNT = 0.04, 64.0, 64
#: The centre is rounded to a multiple of 1/FRACTIONS (even, so that bin edges s ± 1/2 are on the same grid).
FRACTIONS = 4
#: Each table covers the centre ± TAIL scales; values beyond are escaped (rANS bypass, exact but costly).
TAIL = 12
#: Frequencies sum to 2^PRECISION (CompressAI's rANS precision).
PRECISION = 16
#: Fractional bits of the exact ARM's outputs (mean and log-scale) that ``table_index`` reads.
OUT_BITS = 16


def _decimal_ladder() -> tuple[list[float], list[Decimal]]:
    """(b_k as floats, ln b_k as Decimals): the ladder, computed in decimal so that it is the same everywhere."""
    with localcontext() as ctx:
        ctx.prec = 40
        lo, hi = Decimal(B_MIN).ln(), Decimal(B_MAX).ln()
        logs = [lo + (hi - lo) * k / (SCALE_COUNT - 1) for k in range(SCALE_COUNT)]
        return [float(x.exp()) for x in logs], logs


SCALES, _LOG_SCALES = _decimal_ladder()
#: ln b_0 and the ladder's step in ln b, as integers at OUT_BITS fractional bits (exact integer decisions).
LOG_B0_FIXED = int((_LOG_SCALES[0] * (1 << OUT_BITS)).to_integral_value())
LOG_STEP_FIXED = int(((_LOG_SCALES[1] - _LOG_SCALES[0]) * (1 << OUT_BITS)).to_integral_value())


def _rho(k: int) -> float:
    with localcontext() as ctx:
        ctx.prec = 40
        return float((-1 / (FRACTIONS * _LOG_SCALES[k].exp())).exp())


def _powers(rho: float, n: int) -> list[float]:
    out = [1.0] * (n + 1)
    for i in range(1, n + 1):
        out[i] = out[i - 1] * rho
    return out


def _bin_probability(pw: list[float], lo: int, hi: int) -> float:
    """Mass of [lo, hi]/FRACTIONS relative to the centre 0 (edges in 1/FRACTIONS units), from powers ``pw``."""
    if lo >= 0:
        return 0.5 * (pw[lo] - pw[hi])
    if hi <= 0:
        return 0.5 * (pw[-hi] - pw[-lo])
    return 1.0 - 0.5 * (pw[-lo] + pw[hi])


def _quantized_cdf(probs: list[float]) -> list[int]:
    """Integer CDF of ``probs`` plus an escape symbol holding the rest, every frequency ≥ 1, total 2^PRECISION."""
    total = 1 << PRECISION
    escape = max(0.0, 1.0 - sum(probs))
    weights = [*probs, escape]
    spare = total - len(weights)
    freqs = [1 + int(p * spare) for p in weights]
    freqs[max(range(len(probs)), key=probs.__getitem__)] += total - sum(freqs)
    cdf = [0]
    for f in freqs:
        cdf.append(cdf[-1] + f)
    return cdf


def _scale_tables(k: int) -> list[tuple[list[int], int]]:
    """(quantized CDF, offset) of scale step ``k`` for each centre fraction f/FRACTIONS, f = 0..FRACTIONS-1."""
    half = math.ceil(TAIL * SCALES[k]) + 1
    lo_s, hi_s = -half, half + 1
    pw = _powers(_rho(k), FRACTIONS * (hi_s - lo_s + 2))
    h = FRACTIONS // 2
    out = []
    for f in range(FRACTIONS):
        probs = [_bin_probability(pw, FRACTIONS * s - f - h, FRACTIONS * s - f + h) for s in range(lo_s, hi_s + 1)]
        out.append((_quantized_cdf(probs), lo_s))
    return out


@functools.cache
def cdf_lists() -> tuple[list[list[int]], list[int], list[int]]:
    """(CDFs, their lengths, offsets) of all SCALE_COUNT × FRACTIONS tables, index ``k · FRACTIONS + f``
    (built once per process, ~0.2 s)."""
    cdfs, lengths, offsets = [], [], []
    for k in range(SCALE_COUNT):
        for cdf, offset in _scale_tables(k):
            cdfs.append(cdf)
            lengths.append(len(cdf))
            offsets.append(offset)
    return cdfs, lengths, offsets
