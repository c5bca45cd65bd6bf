"""The fitted kind's coding tables for CompressAI's coder, the rule that picks one, and the training rate.

The tables and their constants are ``ladder``'s (no torch: the compiled decoder builds on them too); this
module wraps them as ``RansTables``, applies the table rule to tensors (``table_index``) and gives training
the continuous version of the same model (``bits``), which the tables approximate.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ...core.engine import RansTables
from .ladder import (  # noqa: F401  (the constants, re-exported for the encoder and tests)
    B_MAX,
    B_MIN,
    FRACTIONS,
    LOG_B0_FIXED,
    LOG_STEP_FIXED,
    OUT_BITS,
    PRECISION,
    SCALE_COUNT,
    SCALES,
    TAIL,
    cdf_lists,
)


@functools.cache
def tables() -> RansTables:
    """``ladder.cdf_lists`` as CompressAI's coder takes them."""
    return RansTables(*cdf_lists())


@functools.cache
def code_lengths() -> list[Tensor]:
    """Per table, the bits of each in-range symbol (−log2 of its frequency), for choosing tables by size."""
    t = tables()
    out = []
    for cdf in t.cdf:
        freqs = torch.tensor(cdf[1:], dtype=torch.float64) - torch.tensor(cdf[:-1], dtype=torch.float64)
        out.append(PRECISION - torch.log2(freqs))
    return out


def table_index(mu: Tensor, log_b: Tensor) -> tuple[Tensor, Tensor]:
    """(table index, integer part of the centre) from the exact ARM's outputs, integers at OUT_BITS.

    Integer arithmetic only (float64 tensors holding integers below 2^53): the same on every machine.
    """
    q = torch.floor((mu * FRACTIONS + (1 << (OUT_BITS - 1))) / (1 << OUT_BITS))  # round(mu · FRACTIONS)
    m = torch.floor(q / FRACTIONS)
    f = q - FRACTIONS * m
    k = torch.floor((log_b - LOG_B0_FIXED + LOG_STEP_FIXED // 2) / LOG_STEP_FIXED).clamp_(0, SCALE_COUNT - 1)
    return (k * FRACTIONS + f).long(), m


def bits(v: Tensor, mu: Tensor, log_b: Tensor) -> Tensor:
    """−log2 P(v) under the continuous-centre Laplace of centre ``mu``, scale e^log_b, over the bin v ± 1/2.

    Differentiable (training's rate); clamped to the tables' smallest probability, 2^−PRECISION.
    """
    b = log_b.clamp(math.log(B_MIN), math.log(B_MAX)).exp()
    d = (v - mu).abs()
    far, close = d.clamp(min=0.5), d.clamp(max=0.5)  # each branch on its own domain: no inf in the other's gradient
    tail = math.log(0.5) - (far - 0.5) / b + torch.log1p(-torch.exp(-1 / b))
    near = torch.log1p(-0.5 * (torch.exp((close - 0.5) / b) + torch.exp(-(0.5 + close) / b)))
    log_p = torch.where(d >= 0.5, tail, near)
    return -log_p.clamp(min=-PRECISION * math.log(2)) / math.log(2)
