"""Integer-exact networks: a float parameter network evaluated so that its output is identical on every machine.

Why: the rANS decoder must see exactly the coding tables the encoder used. A float network gives
slightly different outputs on another CPU, GPU, BLAS, thread count or batch size, and one flipped
table index desynchronizes the rest of the image (CompressAI issues #279, #309, #235, #320). Any
network whose output decides coding tables (a hyper-synthesis, a context model) runs as an
``ExactNetwork``.

How: every tensor on this path holds integers. Weights and biases are rounded to fixed point
(a power-of-two scale chosen from the weights with ``frexp``, which is exact), activations are
re-scaled by powers of two and floored, LeakyReLU's slope 1/k is ``floor(a / k)``. Convolutions
run in float64 on integer-valued tensors: every partial sum is an integer below 2^53 (checked
when the network is built, inputs clamped), so the result does not depend on summation order —
any device, any thread count, any batch — and any way of organizing it: a convolution evaluated
at some positions only, as an im2col gather and one matrix product (``ExactNetwork.at`` /
``columns``, which the context model's small per-pass steps use), gives the same integers as
``conv2d`` over the whole image. The only non-integer steps are IEEE-754 elementwise
operations on the CPU in float64 (``+ − × ÷``, ``round``, ``floor``: correctly rounded, so
bit-identical everywhere), done by the caller on the way in (``fixed_point``) and out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The constants are the format's, kept with the numpy form of these rules (``fixed``); re-exported here.
from .fixed import ACT_BITS, CLAMP_BITS, EXACT_LIMIT, INPUT_BITS, WEIGHT_BITS  # noqa: F401


@dataclass
class IntConv:
    """One convolution in fixed point: integer weights/bias with ``frac`` fractional bits."""

    weight: Tensor  # float64, integer-valued
    bias: Tensor  # float64, integer-valued, at input_frac + frac bits
    frac: int
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    #: Flat kernel taps that ``at`` gathers: those with a non-zero weight where that is fewer than all
    #: (a masked convolution's), else all of them, so that ``matrix`` is a view of the weight.
    taps: Tensor = field(init=False)
    #: The weights of those taps as a matrix (out, in · taps): the rows of an im2col product.
    matrix: Tensor = field(init=False)

    def __post_init__(self) -> None:
        w = self.weight.flatten(2)
        used = w.ne(0).any(0).any(0).nonzero()[:, 0]
        if 0 < used.numel() < w.shape[2]:
            self.taps, self.matrix = used, w[:, :, used].reshape(w.shape[0], -1)
        else:
            self.taps, self.matrix = torch.arange(w.shape[2], device=w.device), w.reshape(w.shape[0], -1)

    def __call__(self, x: Tensor) -> Tensor:
        # The bias joins the sum inside the convolution: every partial sum is an integer below 2^53,
        # so the order does not matter, and it saves a pass over the output.
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def columns(self, x: Tensor) -> Tensor:
        """A 1×1 convolution of columns ``x`` (B, in, n): one matrix product, (B, out, n)."""
        return torch.matmul(self.matrix, x).add_(self.bias[:, None])

    def at(self, x: Tensor, pos: Tensor) -> Tensor:
        """The outputs (B, out, n) at flat output positions ``pos`` of image ``x`` only (stride 1):
        an im2col of the taps with a non-zero weight (12 of a 5×5 checkerboard mask's 25), one product."""
        B, C, H, W = x.shape
        k, p = self.weight.shape[-1], self.padding
        wp = W + 2 * p
        corner = pos // W * wp + pos % W  # the window's top-left in the padded image
        index = corner[None, :] + (self.taps // k * wp + self.taps % k)[:, None]  # (taps, n)
        cols = F.pad(x, (p, p, p, p)).flatten(2)[:, :, index]  # (B, C, taps, n)
        return self.columns(cols.reshape(B, C * len(self.taps), -1))

    def worst_sum(self, input_bound: float) -> float:
        """Upper bound of any partial sum's magnitude for inputs bounded by ``input_bound``."""
        w = self.weight.abs()
        # conv: weight (out, in, kh, kw); transposed: (in, out, kh, kw). Every tap can contribute.
        per_out = w.sum(dim=(0, 2, 3)) if self.transposed else w.sum(dim=(1, 2, 3))
        return float(per_out.max()) * input_bound + float(self.bias.abs().max())

    def to(self, device: torch.device) -> IntConv:
        self.weight, self.bias = self.weight.to(device), self.bias.to(device)
        self.__post_init__()
        return self

    @property
    def pointwise(self) -> bool:
        return self.weight.shape[-2:] == (1, 1) and self.stride == 1 and not self.padding and not self.transposed


@dataclass(frozen=True)
class IntLeakyReLU:
    """LeakyReLU with slope 1/divisor (ReLU: divisor 0), on integers: ``floor(a / divisor)`` below 0."""

    divisor: int

    def __call__(self, a: Tensor) -> Tensor:
        low = torch.floor(a / self.divisor) if self.divisor else torch.zeros_like(a)
        return torch.where(a >= 0, a, low)


def _weight_frac(w: Tensor) -> int:
    """Fractional bits so that max|w| · 2^frac < 2^WEIGHT_BITS; exact (frexp reads the exponent)."""
    _, exponent = torch.frexp(w.detach().abs().max().double())
    return WEIGHT_BITS - 1 - int(exponent)


def _quantize(conv: nn.Conv2d | nn.ConvTranspose2d, input_frac: int) -> IntConv:
    w = conv.weight.detach().double().cpu()
    if isinstance(getattr(conv, "mask", None), Tensor):  # CompressAI's masked convs compute weight · mask
        w = w * conv.mask.detach().double().cpu()
    frac = _weight_frac(w)
    transposed = isinstance(conv, nn.ConvTranspose2d)
    return IntConv(
        weight=torch.round(w * 2.0**frac),
        bias=torch.round(conv.bias.detach().double().cpu() * 2.0 ** (input_frac + frac)),
        frac=frac,
        transposed=transposed,
        stride=conv.stride[0],
        padding=conv.padding[0],
        output_padding=conv.output_padding[0] if transposed else 0,
    )


def _activation(m: nn.Module) -> IntLeakyReLU:
    if isinstance(m, nn.ReLU):
        return IntLeakyReLU(0)
    if isinstance(m, nn.LeakyReLU):
        divisor = round(1 / m.negative_slope) if m.negative_slope > 0 else 0
        if divisor and m.negative_slope == 1 / divisor:
            return IntLeakyReLU(divisor)
    raise ValueError(f"no integer-exact form of {m} (convolutions, ReLU and LeakyReLU(1/k) only)")


def floor_shift(x: Tensor, bits: int) -> Tensor:
    """floor(x / 2^bits) for integer-valued x; exact (power-of-two scaling) for either sign of bits."""
    return torch.floor(x * 2.0**-bits)


def _clamp(a: Tensor) -> Tensor:
    return a.clamp_(-(2.0**CLAMP_BITS), 2.0**CLAMP_BITS)


class ExactNetwork:
    """A float ``nn.Sequential`` of convolutions (plain or transposed) and (leaky) ReLUs, in integers.

    Input: integers at ``in_frac`` fractional bits (``fixed_point``, or another network's output
    shifted to ``ACT_BITS``), clamped; output: integers at ``out_frac`` fractional bits, on the CPU,
    unclamped (a power-of-two scaling and floor of integers is deterministic at any size). Every
    hidden activation is held at ``ACT_BITS``. Masked convolutions (CompressAI's ``MaskedConv2d``
    family) run as plain ones with weight · mask.
    """

    def __init__(self, net: nn.Sequential, device: torch.device | str = "cpu", in_frac: int = INPUT_BITS):
        self.layers: list[IntConv | IntLeakyReLU] = []
        self.in_frac = frac = in_frac
        for m in net:
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                self.layers.append(_quantize(m, frac))
                self._last_in_frac, frac = frac, ACT_BITS
            else:
                self.layers.append(_activation(m))
        if not self.convs or not isinstance(self.layers[-1], IntConv):
            raise ValueError("an exact network must end with a convolution")
        bound = 2.0**CLAMP_BITS
        for i, conv in enumerate(self.convs):
            if conv.worst_sum(bound) >= EXACT_LIMIT:
                raise ValueError(f"exact network convolution {i} can exceed 2^53: weights out of range")
        self.device = torch.device(device)
        for conv in self.convs:
            conv.to(self.device)

    @property
    def convs(self) -> list[IntConv]:
        return [layer for layer in self.layers if isinstance(layer, IntConv)]

    @property
    def out_frac(self) -> int:
        return self._last_in_frac + self.convs[-1].frac

    @staticmethod
    def fixed_point(x: Tensor) -> Tensor:
        """round(x · 2^INPUT_BITS), clamped: the input of real values ``x`` (CPU float64, elementwise)."""
        return _clamp(torch.round(x * 2.0**INPUT_BITS))

    def __call__(self, a: Tensor, out_frac: int | None = None) -> Tensor:
        """Integer outputs (CPU) at ``self.out_frac`` fractional bits, or floor-shifted to ``out_frac``
        (``ACT_BITS`` to feed another network, the bits of outputs they correct), for inputs at ``in_frac``."""
        return self._run(a, out_frac, IntConv.__call__)

    def columns(self, a: Tensor, out_frac: int | None = None) -> Tensor:
        """As ``__call__`` for a pointwise network (1×1 convolutions only) on columns (B, C, n):
        matrix products, without conv2d's per-call im2col of a (B, C, n, 1) image."""
        if not all(conv.pointwise for conv in self.convs):
            raise ValueError("columns() needs a network of 1×1 convolutions")
        return self._run(a, out_frac, IntConv.columns)

    def at(self, a: Tensor, pos: Tensor, out_frac: int | None = None) -> Tensor:
        """As ``__call__``, but only the outputs (B, C, n) at flat positions ``pos`` of image ``a``
        (a pass of a checkerboard); the layers after the first must be pointwise."""
        first, *rest = self.convs
        if first.transposed or first.stride != 1 or not all(conv.pointwise for conv in rest):
            raise ValueError("at() needs a stride-1 convolution followed by 1×1 convolutions only")
        pos = pos.to(self.device)
        return self._run(a, out_frac, lambda conv, x: conv.at(x, pos) if conv is first else conv.columns(x))

    def _run(self, a: Tensor, out_frac: int | None, apply: Callable[[IntConv, Tensor], Tensor]) -> Tensor:
        a = a.to(self.device)
        in_frac, last = self.in_frac, self.convs[-1]
        for layer in self.layers:
            if isinstance(layer, IntConv):
                a = apply(layer, _clamp(a))
                if layer is not last:
                    a = floor_shift(a, in_frac + layer.frac - ACT_BITS)
                    in_frac = ACT_BITS
            else:
                a = layer(a)
        if out_frac is not None:
            a = floor_shift(a, self.out_frac - out_frac)
        return a.cpu()
