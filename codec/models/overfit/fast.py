"""The fitted kind's decoder without torch: a tile's streams to its pixels through the compiled ``_wavefront``.

The torch path (``coding.decode_params`` / ``coding.decode_grids``, ``FittedDecoder.image``) stays the reference the
tests compare against; this one decodes the same symbols (exactly: the same integer rules) and pixels within
one level of it, in time proportional to the tile's positions::

    stream 0 ──symbols──► parameters (float32, as the reference rebuilds them)
                              │ fixed.pointwise_layers: the exact ARM's integers (ValueError past 2^53)
    stream 1 ──grids──► every grid, wave by wave: ARM, table, rANS symbol per position, in one call
                              │
    grids ──image──► upsampling and synthesis (float32 (3, h, w), unclamped like ``decode_latent``'s)

The coding tables are packed once per process (``_tables``); nothing here allocates what a stream claims:
every size follows from the arch and the tile. ``available()`` is False where the extension was not built
(``pip install`` builds it; it is optional there), and the model then decodes with the reference.
"""

from __future__ import annotations

import functools

import numpy as np

from ...core.fixed import ACT_BITS, CLAMP_BITS, INPUT_BITS, pointwise_layers
from ...core.rans import check_stream_length
from . import ladder
from .arch import (
    HEADER_BYTES,
    MAX_STEP_EXP,
    MIN_SYMBOLS,
    RADIUS,
    Arch,
    causal_taps,
    grid_sizes,
    param_layout,
    wave_slope,
)

try:
    from . import _wavefront
except ImportError:  # not built: the model falls back to the torch reference
    _wavefront = None

Params = dict[str, np.ndarray]


def available() -> bool:
    return _wavefront is not None


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every coding table as int32 arrays: the CDFs end to end, where each starts, its length and offset."""
    cdfs, lengths, offsets = ladder.cdf_lists()
    starts = np.cumsum([0, *lengths[:-1]])
    flat = np.fromiter((v for cdf in cdfs for v in cdf), dtype=np.int32)
    return flat, starts.astype(np.int32), np.array(lengths, np.int32), np.array(offsets, np.int32)


@functools.cache
def _layout(arch: Arch) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...], np.ndarray]:
    """(names, shapes, element counts) of ``param_layout``: per arch once (a thin tile's decode is short)."""
    names, shapes = zip(*param_layout(arch), strict=True)
    return names, shapes, np.array([int(np.prod(shape)) for shape in shapes])


def decode_params(data: bytes, arch: Arch) -> Params:
    """The parameters a stream 0 describes, float32 by name (``coding.decode_params``'s values); ValueError
    when it cannot be a decoder's."""
    names, shapes, counts = _layout(arch)
    head_size = HEADER_BYTES * len(names)
    if len(data) < head_size:
        raise ValueError("decoder parameter stream is shorter than its header")
    head, body = data[:head_size], data[head_size:]
    exps, ks = np.frombuffer(head[0::2], np.uint8), np.frombuffer(head[1::2], np.uint8)
    if exps.max() > MAX_STEP_EXP or ks.max() >= ladder.SCALE_COUNT:
        raise ValueError("decoder parameter header out of range")
    indexes = np.repeat(ks.astype(np.int32) * ladder.FRACTIONS, counts)
    check_stream_length(len(body), len(indexes) + MIN_SYMBOLS)
    values = np.empty(len(indexes), np.int32)
    _wavefront.symbols(body, _tables(), indexes, values)
    # integers · 2^-e in float64 (exact), then float32: the reference's rounding
    flat = (values * np.repeat(np.ldexp(1.0, -exps.astype(np.int64)), counts)).astype(np.float32)
    parts = np.split(flat, np.cumsum(counts)[:-1])
    return {name: part.reshape(shape) for name, shape, part in zip(names, shapes, parts, strict=True)}


def _arm(params: Params) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The exact ARM packed for ``_wavefront.grids``: integer weights transposed and biases, and each layer's
    floor shift 2^-frac (the last one to ``ladder.OUT_BITS``); ValueError as ``ExactNetwork`` raises it."""
    layers = pointwise_layers([(params[f"arm_w{i}"], params[f"arm_b{i}"]) for i in (1, 2, 3)])
    packed = np.concatenate([part.reshape(-1) for layer in layers for part in (layer.weight.T, layer.bias)])
    # Hidden layers go from in + frac fractional bits to ACT_BITS, the output from ACT_BITS + frac to OUT_BITS.
    first, hidden, last = (layer.frac for layer in layers)
    bits = (INPUT_BITS + first - ACT_BITS, hidden, ACT_BITS + last - ladder.OUT_BITS)
    scales = tuple(2.0**-b for b in bits)
    return np.ascontiguousarray(packed, np.float64), scales  # type: ignore[return-value]


@functools.cache
def _walk(arch: Arch) -> tuple[np.ndarray, int, tuple[float, ...]]:
    """(context taps as int32 (dy, dx) pairs, wave slope, the rule) for ``_wavefront.grids``; the rule is the
    clamp and ``laplace.table_index``'s constants, in the order the extension takes them."""
    taps = causal_taps(arch.context)
    rule = (
        2.0**CLAMP_BITS,
        float(ladder.FRACTIONS),
        float(1 << (ladder.OUT_BITS - 1)),
        float(1 << ladder.OUT_BITS),
        float(ladder.LOG_B0_FIXED),
        float(ladder.LOG_STEP_FIXED // 2),
        float(ladder.LOG_STEP_FIXED),
        float(ladder.SCALE_COUNT - 1),
    )
    return np.array(taps, np.int32).reshape(-1), wave_slope(taps), rule


def decode_grids(params: Params, arch: Arch, data: bytes, sizes: list[tuple[int, int]]) -> np.ndarray:
    """Every grid of stream 1 (finest first), concatenated flat, float32 (integers within ±1024)."""
    check_stream_length(len(data), sum(h * w for h, w in sizes) + MIN_SYMBOLS)
    weights, scales = _arm(params)
    taps, slope, rule = _walk(arch)
    out = np.empty(sum(h * w for h, w in sizes), np.float32)
    _wavefront.grids(
        data, _tables(), (arch.context, arch.arm_hidden), weights, scales, rule, taps, RADIUS, slope, sizes, out
    )
    return out


def split(flat: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The grids of ``decode_grids``' flat output, each (h, w)."""
    ends = np.cumsum([h * w for h, w in sizes])[:-1]
    return [g.reshape(size) for g, size in zip(np.split(flat, ends), sizes, strict=True)]


def image(params: Params, arch: Arch, grids: np.ndarray, sizes: list[tuple[int, int]]) -> np.ndarray:
    """Float32 pixels (3, h, w), not clamped, of the grids (``decode_grids``' flat output)."""
    h, w = sizes[0]
    syn = np.concatenate([params[name].reshape(-1) for name in _layout(arch)[0] if name.startswith("syn_")])
    out = np.empty((3, h, w), np.float32)
    _wavefront.image(grids, sizes, params["up"], arch.syn_hidden, syn, out)
    return out


def decode_tile(streams: list[bytes], height: int, width: int, arch: Arch) -> np.ndarray:
    """Float32 pixels (3, height, width), not clamped, of one tile's two streams; ValueError on damage the
    format detects."""
    if len(streams) != 2:
        raise ValueError(f"an overfit tile has 2 streams, got {len(streams)}")
    params = decode_params(streams[0], arch)
    sizes = grid_sizes(height, width, arch.grids)
    return image(params, arch, decode_grids(params, arch, streams[1], sizes), sizes)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 of float pixels (3, h, w): NaN to 0, clamped to [0, 1], rounded (``tiling``'s rule)."""
    return np.rint(clamped(x) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)


def clamped(x: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] of float ones: NaN to 0, ±inf to 1 and 0 (damaged data still gives an image)."""
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0, 1)


class FastModel:
    """The fitted kind as the decode path sees a model (``codec.coding.decoding``: the checks, ``tiling.decode``),
    without torch: what ``OverfitModel`` says of its geometry, and its ``decode_latent`` / ``synthesize`` on numpy
    arrays. ``OverfitModel`` decodes through one of these, so both give the same pixels."""

    kind = "overfit"
    stride = 1  # the "latent" of this kind is the image itself
    latent_stride = 1
    tile_margin = 0  # each tile carries its own decoder: no context across tiles
    needs_weights = False  # the manifest entry is an arch; files carry their decoder
    batches = False  # nor do they share a synthesis pass
    qualities = None  # every quality of [1, levels]

    def __init__(self, arch: Arch) -> None:
        self.arch = arch

    @classmethod
    def from_arch(cls, arch: dict) -> FastModel:
        return cls(Arch.from_dict(arch))

    @property
    def levels(self) -> int:
        return self.arch.levels

    def at(self, quality: float) -> FastModel:
        return self

    def decode_latent(self, streams: list[list[bytes]], shape: tuple[int, int], quality: float) -> np.ndarray:
        """Each tile's float32 pixels (B, 3, h, w), unclamped (``decode_tile``)."""
        return np.stack([decode_tile(st, *shape, self.arch) for st in streams])

    def synthesize(self, y_hat: np.ndarray) -> np.ndarray:
        return clamped(y_hat)
