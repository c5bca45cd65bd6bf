"""Integer-exact hyper-synthesis: decoded hyper-latent symbols → scale indexes, identical on every machine.

Why: the rANS decoder must see exactly the indexes the encoder used. A float hyper-synthesis gives
slightly different scales on another CPU, GPU, BLAS, thread count or batch size, and one flipped
index desynchronizes the rest of the image (CompressAI issues #279, #309, #235, #320).

How: every tensor on this path holds integers. Weights and biases are rounded to fixed point
(a power-of-two scale chosen from the weights with ``frexp``, which is exact), activations are
re-scaled by powers of two and floored, LeakyReLU's 0.01 slope is ``floor(a / 100)``. Convolutions
run in float64 on integer-valued tensors: every partial sum is an integer below 2^53 (checked
when the path is built, inputs clamped), so the result does not depend on summation order —
any device, any thread count, any batch. The only non-integer steps are IEEE-754 elementwise
operations on the CPU in float64 (``+ − × ÷``, ``round``, ``floor``: correctly rounded, so
bit-identical everywhere): the input scaling by the gains and the index thresholds.

Scale index i of a latent element = number of entries of the scale table (without its last) that
are strictly below σ·g, compared as ``S > table[i] · 2^E / g`` with ``S`` the integer output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Fixed-point precision, chosen by measurement on a trained checkpoint (scale-index agreement
#: with the float hyper-synthesis on a validation image, q 1/4/8): input/activation/weight bits
#: 10/8/12 → 63-80 %, 12/12/12 → 98 %, 16/16/14 → 99.9 % (the rest differ by one index step).
INPUT_BITS = 16
ACT_BITS = 16
WEIGHT_BITS = 14
#: Inputs and activations are clamped to ±2^CLAMP_BITS (±1024 in real units at 16 fractional
#: bits, far beyond what real images give); it bounds partial sums for hostile files too.
CLAMP_BITS = 26
LEAKY_DIVISOR = 100  # LeakyReLU(negative_slope=0.01)
EXACT_LIMIT = 2.0**53


@dataclass
class IntLayer:
    """One convolution in fixed point: integer weights/bias with ``frac`` fractional bits."""

    weight: Tensor  # float64, integer-valued
    bias: Tensor  # float64, integer-valued, at input_frac + frac bits
    frac: int
    transposed: bool
    stride: int
    padding: int
    output_padding: int

    def __call__(self, x: Tensor) -> Tensor:
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, None, self.stride, self.padding, self.output_padding)
        else:
            y = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return y + self.bias.view(1, -1, 1, 1)

    def worst_sum(self, input_bound: float) -> float:
        """Upper bound of any partial sum's magnitude for inputs bounded by ``input_bound``."""
        w = self.weight.abs()
        # conv: weight (out, in, kh, kw); transposed: (in, out, kh, kw). Every tap can contribute.
        per_out = w.sum(dim=(0, 2, 3)) if self.transposed else w.sum(dim=(1, 2, 3))
        return float(per_out.max()) * input_bound + float(self.bias.abs().max())


def _weight_frac(w: Tensor) -> int:
    """Fractional bits so that max|w| · 2^frac < 2^WEIGHT_BITS; exact (frexp reads the exponent)."""
    _, exponent = torch.frexp(w.detach().abs().max().double())
    return WEIGHT_BITS - 1 - int(exponent)


def _quantize(conv: nn.Module, input_frac: int) -> IntLayer:
    w = conv.weight.detach().double().cpu()
    frac = _weight_frac(w)
    transposed = isinstance(conv, nn.ConvTranspose2d)
    return IntLayer(
        weight=torch.round(w * 2.0**frac),
        bias=torch.round(conv.bias.detach().double().cpu() * 2.0 ** (input_frac + frac)),
        frac=frac,
        transposed=transposed,
        stride=conv.stride[0],
        padding=conv.padding[0],
        output_padding=conv.output_padding[0] if transposed else 0,
    )


def _floor_shift(x: Tensor, bits: int) -> Tensor:
    """floor(x / 2^bits) for integer-valued x; exact (power-of-two scaling) for either sign of bits."""
    return torch.floor(x * 2.0**-bits)


def _leaky(a: Tensor) -> Tensor:
    return torch.where(a >= 0, a, torch.floor(a / LEAKY_DIVISOR))


class ExactHyperSynthesis:
    """The model's ``h_s`` (deconv, LReLU, deconv, LReLU, conv) evaluated in integers."""

    def __init__(self, h_s: nn.Sequential, medians: Tensor, scale_table: Tensor, device: torch.device | str = "cpu"):
        convs = [m for m in h_s if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        acts = [m for m in h_s if not isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        if len(convs) != 3 or not all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.01 for a in acts):
            raise ValueError("exact path expects h_s = conv, LeakyReLU(0.01), conv, LeakyReLU(0.01), conv")
        self.layers = [_quantize(convs[0], INPUT_BITS)] + [_quantize(c, ACT_BITS) for c in convs[1:]]
        self.medians = medians.detach().double().cpu().reshape(-1)
        self.scale_table = scale_table.detach().double().cpu()
        self.device = torch.device(device)
        bound = 2.0**CLAMP_BITS
        for i, layer in enumerate(self.layers):
            if layer.worst_sum(bound) >= EXACT_LIMIT:
                raise ValueError(f"exact hyper-synthesis layer {i} can exceed 2^53: weights out of range")
        for layer in self.layers:
            layer.weight, layer.bias = layer.weight.to(self.device), layer.bias.to(self.device)

    @property
    def out_frac(self) -> int:
        return ACT_BITS + self.layers[-1].frac

    def input_fixed_point(self, z_sym: Tensor, z_gain: Tensor) -> Tensor:
        """round((symbol + median) / g_z · 2^INPUT_BITS), clamped — CPU float64 elementwise."""
        z = z_sym.detach().cpu().double() + self.medians.view(1, -1, 1, 1)
        x = torch.round(z / z_gain.view(1, -1, 1, 1) * 2.0**INPUT_BITS)
        return x.clamp_(-(2.0**CLAMP_BITS), 2.0**CLAMP_BITS)

    def integer_outputs(self, z_sym: Tensor, z_gain: Tensor) -> tuple[Tensor, Tensor]:
        """Integer (S, Mu): scale and mean channels at ``out_frac`` fractional bits, on the CPU."""
        a = self.input_fixed_point(z_sym, z_gain).to(self.device)
        in_frac = INPUT_BITS
        for layer in self.layers[:-1]:
            acc = layer(a)
            a = _leaky(_floor_shift(acc, in_frac + layer.frac - ACT_BITS))
            a = a.clamp_(-(2.0**CLAMP_BITS), 2.0**CLAMP_BITS)
            in_frac = ACT_BITS
        out = self.layers[-1](a).cpu()
        return out.chunk(2, 1)

    def thresholds(self, y_gain: Tensor) -> Tensor:
        """(C, T-1) integer-domain thresholds table[i] · 2^E / g_y[c] — CPU float64 elementwise."""
        return (self.scale_table[:-1].view(1, -1) * 2.0**self.out_frac) / y_gain.view(-1, 1)

    def __call__(self, z_sym: Tensor, z_gain: Tensor, y_gain: Tensor) -> tuple[Tensor, Tensor]:
        """(scale indexes int32, gained means float64) for hyper-latent symbols (B, N, h, w)."""
        S, Mu = self.integer_outputs(z_sym, z_gain)
        B, C, H, W = S.shape
        thr = self.thresholds(y_gain)  # (C, T-1), increasing along T
        # count of thresholds strictly below S  ==  searchsorted(thr, S, side="left")
        flat = S.permute(1, 0, 2, 3).reshape(C, -1).contiguous()
        idx = torch.searchsorted(thr.contiguous(), flat, right=False)
        idx = idx.reshape(C, B, H, W).permute(1, 0, 2, 3).to(torch.int32)
        means = Mu * 2.0**-self.out_frac * y_gain.view(1, -1, 1, 1)
        return idx, means
