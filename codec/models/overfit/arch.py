"""The fitted kind's sizes and layout, with no torch: what both decoders (``network``'s torch reference and the
compiled ``fast``) and the encoder share.

``param_layout`` is the order and shape of the parameter tensors in stream 0 (``FittedDecoder.tensors()``; a test
checks that the module's parameters are exactly these).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Arch:
    """Sizes of the per-image decoder (the manifest's ``arch`` of the ``overfit`` kind)."""

    grids: int = 7  # latent grids at 1, 1/2, … 1/2^(grids-1) of the image size
    context: int = 12  # causal neighbours the ARM sees (the nearest, ``causal_taps``)
    arm_hidden: int = 16
    syn_hidden: int = 16
    levels: int = 12  # qualities 1..levels, the λ ladder of codec.core.quality

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        fields = {k: int(v) for k, v in d.items() if k in cls.__dataclass_fields__}
        arch = cls(**fields)
        if not (1 <= arch.grids <= 8 and 1 <= arch.context <= 24 and 1 <= arch.arm_hidden <= 64):
            raise ValueError(f"overfit arch out of range: {d}")
        if not 1 <= arch.syn_hidden <= 64:
            raise ValueError(f"overfit arch out of range: {d}")
        return arch

    def as_dict(self) -> dict:
        return asdict(self)


#: Radius of the ARM's causal window: taps (dy, dx) with -R ≤ dy ≤ 0, |dx| ≤ R.
RADIUS = 3
#: Upsampling kernel taps (a ×2 transposed convolution; bicubic at initialization).
UP_TAPS = 8  # _up2 is written for these 8


#: Parameter step exponents an encoder may choose (step 2^-e) and a decoder accepts.
MAX_STEP_EXP = 16
#: Bytes per parameter tensor at the head of stream 0: the step exponent e and the scale step k.
HEADER_BYTES = 2
#: CompressAI's rANS encoder sizes its output buffer at 32 bits per coded symbol, but a symbol may take
#: 16 bits and the flush 64: a stream of fewer than 4 symbols overflows the buffer (heap corruption,
#: found on a 1×1 grid). Streams are padded with zero symbols up to this count; decoders stop before them.
MIN_SYMBOLS = 4


def causal_taps(count: int) -> list[tuple[int, int]]:
    """The ``count`` causal neighbours (decoded before (0, 0) in raster order) nearest to it, as (dy, dx)."""
    taps = [(dy, dx) for dy in range(-RADIUS, 1) for dx in range(-RADIUS, RADIUS + 1) if dy < 0 or dx < 0]
    taps.sort(key=lambda t: (t[0] ** 2 + t[1] ** 2, t))
    return taps[:count]


def wave_slope(taps: list[tuple[int, int]]) -> int:
    """Smallest integer a such that a·dy + dx < 0 for every tap: all of a position's context lies on
    earlier waves ``a·i + j``, so a wave's positions decode together."""
    a = 1
    while any(a * dy + dx >= 0 for dy, dx in taps):
        a += 1
    return a


def grid_sizes(height: int, width: int, grids: int) -> list[tuple[int, int]]:
    return [(-(-height // 2**k), -(-width // 2**k)) for k in range(grids)]


def param_layout(arch: Arch) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter tensor in bitstream order (docs/FORMAT.md, "overfit", stream 0)."""
    a, k, s, g = arch.arm_hidden, arch.context, arch.syn_hidden, arch.grids
    return [
        ("arm_w1", (a, k)),
        ("arm_b1", (a,)),
        ("arm_w2", (a, a)),
        ("arm_b2", (a,)),
        ("arm_w3", (2, a)),
        ("arm_b3", (2,)),
        ("up", (max(g - 1, 1), UP_TAPS)),
        ("syn_w1", (s, g)),
        ("syn_b1", (s,)),
        ("syn_w2", (3, s)),
        ("syn_b2", (3,)),
        ("syn_w3", (3, 3, 3, 3)),
        ("syn_b3", (3,)),
        ("syn_w4", (3, 3, 3, 3)),
        ("syn_b4", (3,)),
    ]
