"""The per-image decoder: latent grids, an autoregressive entropy model (ARM), upsampling and synthesis.

Cool-chic / C3 style (Ladune et al. 2023, Kim et al. 2024; our own code)::

    grids ŷ_0 (H×W), ŷ_1 (H/2×W/2), … ŷ_{G-1}       one channel each, integers, coded with the ARM:
        │                                               P(ŷ_k[i,j] | causal neighbours in ŷ_k) = Laplace(μ, b)
        ▼
    upsample: from the coarsest, ×2 with a learned 8-tap separable kernel per stage, each
              finer grid concatenated on the way (G channels at H×W)
        ▼
    synthesis: 1×1 conv G→S, ReLU, 1×1 S→3, then two 3×3 3→3 residual convs  ──► x̂ (RGB)

Every size here is in ``Arch``; all parameters live in one ``FittedDecoder`` module whose ``tensors()``
order is the bitstream's. The ARM is a float MLP on context columns while the encoder fits it; the decoder
(and the encoder when it writes the final symbols) runs the same quantized parameters as an
``codec.core.exact.ExactNetwork`` on the same columns, so the coding tables are identical on every machine.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.exact import ExactNetwork

# Sizes and layout need no torch (the compiled decoder reads them too); re-exported for the encoder and tests.
from .arch import RADIUS, UP_TAPS, Arch, causal_taps, grid_sizes, wave_slope  # noqa: F401


def _bicubic_kernel() -> Tensor:
    """The ×2 bicubic (a = −0.75) weights of a stride-2 transposed convolution with UP_TAPS taps."""

    def cubic(d: float, a: float = -0.75) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0

    return torch.tensor([cubic((2 * t - UP_TAPS + 1) / 4) for t in range(UP_TAPS)])


class FittedDecoder(nn.Module):
    """All of one image's decoder parameters (float while fitting; quantized values once coded)."""

    def __init__(self, arch: Arch, seed: int = 0):
        super().__init__()
        self.arch = arch
        g = torch.Generator().manual_seed(seed)
        a, k, s = arch.arm_hidden, arch.context, arch.syn_hidden

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            bound = 1 / math.sqrt(fan_in)
            return nn.Parameter((torch.rand(*shape, generator=g) * 2 - 1) * bound)

        self.arm_w1, self.arm_b1 = uniform(a, k, fan_in=k), nn.Parameter(torch.zeros(a))
        self.arm_w2, self.arm_b2 = uniform(a, a, fan_in=a), nn.Parameter(torch.zeros(a))
        self.arm_w3, self.arm_b3 = nn.Parameter(torch.zeros(2, a)), nn.Parameter(torch.zeros(2))
        self.up = nn.Parameter(_bicubic_kernel().repeat(max(arch.grids - 1, 1), 1))
        self.syn_w1, self.syn_b1 = uniform(s, arch.grids, fan_in=arch.grids), nn.Parameter(torch.zeros(s))
        self.syn_w2, self.syn_b2 = nn.Parameter(torch.zeros(3, s)), nn.Parameter(torch.full((3,), 0.5))
        self.syn_w3, self.syn_b3 = nn.Parameter(torch.zeros(3, 3, 3, 3)), nn.Parameter(torch.zeros(3))
        self.syn_w4, self.syn_b4 = nn.Parameter(torch.zeros(3, 3, 3, 3)), nn.Parameter(torch.zeros(3))
        self.taps = causal_taps(k)

    def tensors(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters in bitstream order (the order of ``named_parameters``)."""
        return list(self.named_parameters())

    # -- ARM ------------------------------------------------------------------------------------
    def contexts(self, grids: list[Tensor]) -> Tensor:
        """(K, N) causal neighbourhoods of every position of every grid (zeros outside), grids in order.

        One gather from the grids padded and flattened together (its backward is one scatter-add):
        36x faster than stacking shifted slices, whose backward allocates a zero grid per tap.
        """
        flat = torch.cat([F.pad(g.reshape(g.shape[-2:]), (RADIUS, RADIUS, RADIUS, 0)).reshape(-1) for g in grids])
        index = _context_index(tuple(tuple(g.shape[-2:]) for g in grids), tuple(self.taps), str(flat.device))
        return flat[index]

    def arm(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log b) for context columns (K, N), in float (the encoder's fit)."""
        h = F.relu(torch.addmm(self.arm_b1[:, None], self.arm_w1, ctx))
        h = F.relu(torch.addmm(self.arm_b2[:, None], self.arm_w2, h))
        out = torch.addmm(self.arm_b3[:, None], self.arm_w3, h)
        return out[0], out[1]

    def arm_sequential(self) -> nn.Sequential:
        """The ARM as 1×1 convolutions over context columns, the form ``ExactNetwork.columns`` runs exactly."""
        a, k = self.arch.arm_hidden, self.arch.context
        layers = [nn.Conv2d(k, a, 1), nn.ReLU(), nn.Conv2d(a, a, 1), nn.ReLU(), nn.Conv2d(a, 2, 1)]
        params = [(self.arm_w1, self.arm_b1), (self.arm_w2, self.arm_b2), (self.arm_w3, self.arm_b3)]
        for conv, (w, b) in zip(layers[::2], params, strict=True):
            conv.double()
            conv.weight.data = w.detach().double().reshape(conv.weight.shape)
            conv.bias.data = b.detach().double()
        return nn.Sequential(*layers)

    def exact_arm(self) -> ExactNetwork:
        return ExactNetwork(self.arm_sequential())

    # -- upsampling and synthesis --------------------------------------------------------------
    def upsample(self, grids: list[Tensor]) -> Tensor:
        """(G, H, W): every grid brought to the finest grid's size, coarsest first through each stage."""
        acc = grids[-1].reshape(1, *grids[-1].shape[-2:])
        for stage, y in enumerate(reversed(grids[:-1])):
            h, w = y.shape[-2:]
            k = self.up[stage]
            acc = _up2(_up2(acc, k).transpose(1, 2), k).transpose(1, 2)[:, :h, :w]
            acc = torch.cat([acc, y.reshape(1, h, w)])
        return acc

    def synthesis(self, z: Tensor) -> Tensor:
        """(1, 3, H, W) pixels in [0, 1] (unclamped) from upsampled grids (G, H, W); 1×1 layers as matrix products."""
        g, h, w = z.shape
        hidden = F.relu(torch.addmm(self.syn_b1[:, None], self.syn_w1, z.reshape(g, h * w)))
        x = torch.addmm(self.syn_b2[:, None], self.syn_w2, hidden).reshape(1, 3, h, w)
        x = x + _conv3(x, self.syn_w3, self.syn_b3)
        return x + _conv3(F.relu(x), self.syn_w4, self.syn_b4)

    def image(self, grids: list[Tensor]) -> Tensor:
        return self.synthesis(self.upsample(grids))


def _conv3(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """A 3×3 convolution with replicated edges, run channels-last: with 3 channels on a CPU its forward and
    backward took 2.7x less time than in the default layout (768×512, one thread)."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate").contiguous(memory_format=torch.channels_last)
    return F.conv2d(xp, w.contiguous(memory_format=torch.channels_last), b)


def _up2(x: Tensor, k: Tensor) -> Tensor:
    """×2 along the last dimension: a stride-2 transposed convolution with UP_TAPS taps, edges replicated,
    as its two polyphase halves (5-tap windows, one tap zero) from one matrix product over a sliding-window
    view (2.8x faster to differentiate than ``conv1d`` on one thread), interleaved."""
    *lead, w = x.shape
    xp = torch.cat([x[..., :1], x[..., :1], x, x[..., -1:], x[..., -1:]], dim=-1)
    zero, rev = k.new_zeros(1), k.flip(0)  # rev: k7, k6, … k0
    phases = torch.stack([torch.cat([rev[0::2], zero]), torch.cat([zero, rev[1::2]])], dim=1)  # (5, 2)
    return (xp.unfold(-1, 5, 1) @ phases).reshape(*lead, 2 * w)


@functools.lru_cache(maxsize=16)
def _context_index(sizes: tuple[tuple[int, int], ...], taps: tuple[tuple[int, int], ...], device: str) -> Tensor:
    """For ``contexts``: (K, N) indexes into the grids padded (RADIUS above, left, right) and concatenated."""
    parts, base = [], 0
    for h, w in sizes:
        pw = w + 2 * RADIUS
        pos = torch.arange(h * w)
        centre = base + (pos // w + RADIUS) * pw + pos % w + RADIUS
        parts.append(centre[None, :] + torch.tensor([dy * pw + dx for dy, dx in taps])[:, None])
        base += (h + RADIUS) * pw
    return torch.cat(parts, dim=1).to(device)


#: Multiplies per output of ``_up2``: each polyphase half is a 5-tap filter (one of its taps is zero).
UP_MACS = 5


def macs_per_pixel(arch: Arch, height: int, width: int) -> float:
    """Multiply-accumulates of one decode per image pixel, from the layer shapes above.

    ARM: its three layers at every latent position; upsampling: each stage's two 1-D passes
    (``UP_MACS`` per output) over the coarser grid's size doubled, on the channels it carries;
    synthesis: the 1×1 layers and the two 3×3 ones (3→3) at every pixel.
    """
    sizes = grid_sizes(height, width, arch.grids)
    latents = sum(h * w for h, w in sizes)
    arm = arch.context * arch.arm_hidden + arch.arm_hidden**2 + 2 * arch.arm_hidden
    up = 0
    for stage, (hc, wc) in enumerate(reversed(sizes[1:])):
        channels = stage + 1
        up += channels * UP_MACS * (hc * 2 * wc + 2 * hc * 2 * wc)  # along rows, then along columns
    syn = arch.grids * arch.syn_hidden + arch.syn_hidden * 3 + 2 * 3 * 3 * 9
    return (latents * arm + up) / (height * width) + syn
