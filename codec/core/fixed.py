"""The fixed-point rules of the integer-exact networks (``codec.core.exact``), with no torch: what a compiled
decoder needs to rebuild an ``ExactNetwork`` of 1×1 layers from its float parameters.

The constants are the format's (docs/FORMAT.md); ``exact`` holds the torch implementation and says why.
``pointwise_layers`` is ``ExactNetwork``'s quantization of a chain of matrices, in numpy (a test compares it
with ``ExactNetwork`` on the same parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Fixed-point precision, chosen by measurement on a trained checkpoint (scale-index agreement
#: with the float hyper-synthesis on a validation image, q 1/4/8): input/activation/weight bits
#: 10/8/12 → 63-80 %, 12/12/12 → 98 %, 16/16/14 → 99.9 % (the rest differ by one index step).
INPUT_BITS = 16
ACT_BITS = 16
WEIGHT_BITS = 14
#: Inputs and activations are clamped to ±2^CLAMP_BITS (±1024 in real units at 16 fractional
#: bits, far beyond what real inputs give); it bounds partial sums for hostile files too.
CLAMP_BITS = 26
EXACT_LIMIT = 2.0**53


def weight_frac(w: np.ndarray) -> int:
    """Fractional bits so that max|w| · 2^frac < 2^WEIGHT_BITS; exact (frexp reads the exponent)."""
    _, exponent = math.frexp(float(np.abs(w).max()))
    return WEIGHT_BITS - 1 - exponent


@dataclass(frozen=True)
class IntLayer:
    """One 1×1 layer in fixed point: integer weights (out, in) and bias (float64 holding integers), ``frac``
    fractional bits of the weights."""

    weight: np.ndarray
    bias: np.ndarray
    frac: int


def pointwise_layers(layers: list[tuple[np.ndarray, np.ndarray]], in_frac: int = INPUT_BITS) -> list[IntLayer]:
    """The integer layers of float (weight (out, in), bias) pairs, as ``ExactNetwork`` quantizes them; ValueError
    when a partial sum could reach 2^53 (the check ``ExactNetwork`` makes before it runs)."""
    out, frac_in = [], in_frac
    for i, (w, b) in enumerate(layers):
        w64, b64 = w.astype(np.float64), b.astype(np.float64)
        frac = weight_frac(w64)
        layer = IntLayer(np.rint(w64 * 2.0**frac), np.rint(b64 * 2.0 ** (frac_in + frac)), frac)
        worst = float(np.abs(layer.weight).sum(axis=1).max()) * 2.0**CLAMP_BITS + float(np.abs(layer.bias).max())
        if worst >= EXACT_LIMIT:
            raise ValueError(f"exact network convolution {i} can exceed 2^53: weights out of range")
        out.append(layer)
        frac_in = ACT_BITS
    return out
