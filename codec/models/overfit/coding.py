"""The overfitted decoder's streams: its quantized parameters, then one stream per latent grid.

One tile's two streams (docs/FORMAT.md, "overfit streams")::

    stream 0   parameters: per tensor (``FittedDecoder.tensors`` order) a byte ``e`` (step 2^-e) and a byte
               ``k`` (Laplace scale step, centre 0), then one rANS stream of every tensor's integers
    stream 1   the grids, finest first, each in wave order (``waves``), every integer coded with the
               table the exact ARM derives from its already decoded causal neighbours

Every length is fixed by the arch and the tile size, so nothing here allocates what a stream claims.
Decoding a grid walks its waves: the positions of one anti-diagonal ``a·i + j = t`` decode together
(their contexts lie on earlier waves), about a·H + W steps per grid instead of H·W.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ...core.engine import intra_op_threads
from ...core.exact import CLAMP_BITS, ExactNetwork
from . import laplace
from .arch import HEADER_BYTES, MAX_STEP_EXP, MIN_SYMBOLS
from .network import RADIUS, Arch, FittedDecoder, grid_sizes, wave_slope

#: Estimated cost of a value outside its table beyond the escape symbol (the rANS bypass code).
ESCAPE_BITS = 40


# -- parameters ----------------------------------------------------------------------------------
def quantize(w: Tensor, e: int) -> Tensor:
    """Integers of ``w`` at step 2^-e."""
    return torch.round(w.detach().double() * 2.0**e)


def param_bits(values: Tensor) -> tuple[int, float]:
    """(scale step, estimated bits) of the cheapest zero-centre table for integer ``values``."""
    lengths, offsets, tops = _centred_lengths()
    rel = values.reshape(1, -1).long() - offsets[:, None]
    index = torch.where((rel >= 0) & (rel < tops[:, None]), rel, tops[:, None])
    bits = lengths.gather(1, index).sum(1)
    k = int(torch.argmin(bits))
    return k, float(bits[k])


@functools.cache
def _centred_lengths() -> tuple[Tensor, Tensor, Tensor]:
    """Per scale step, the centre-0 table's bits per symbol (escapes: their code plus a bypass estimate),
    padded into one matrix, with the tables' offsets and escape slots."""
    t, lengths = laplace.tables(), laplace.code_lengths()
    rows = [lengths[k * laplace.FRACTIONS] for k in range(laplace.SCALE_COUNT)]
    width = max(len(r) for r in rows)
    matrix = torch.full((len(rows), width), float("inf"), dtype=torch.float64)
    tops = []
    for k, r in enumerate(rows):
        top = len(r) - 1  # the escape symbol's slot
        matrix[k, : top + 1] = r
        matrix[k, top] += ESCAPE_BITS
        tops.append(top)
    offsets = torch.tensor([t.offset[k * laplace.FRACTIONS] for k in range(laplace.SCALE_COUNT)])
    return matrix, offsets, torch.tensor(tops)


def encode_params(decoder: FittedDecoder, exps: list[int]) -> bytes:
    """Stream 0: the decoder's parameters quantized with the steps ``exps`` (one per tensor)."""
    header, symbols, indexes = bytearray(), [], []
    for (_, p), e in zip(decoder.tensors(), exps, strict=True):
        v = quantize(p, e).reshape(-1)
        k, _ = param_bits(v)
        header += bytes((e, k))
        symbols.append(v.long())
        indexes.append(torch.full_like(v, k * laplace.FRACTIONS, dtype=torch.long))
    body = _encode(torch.cat(symbols), torch.cat(indexes))
    return bytes(header) + body


def decode_params(data: bytes, arch: Arch) -> FittedDecoder:
    """The decoder a stream 0 describes; ValueError when it cannot be one."""
    decoder = FittedDecoder(arch)
    tensors = decoder.tensors()
    if len(data) < HEADER_BYTES * len(tensors):
        raise ValueError("decoder parameter stream is shorter than its header")
    head, body = data[: HEADER_BYTES * len(tensors)], data[HEADER_BYTES * len(tensors) :]
    exps, ks = list(head[0::2]), list(head[1::2])
    if max(exps) > MAX_STEP_EXP or max(ks) >= laplace.SCALE_COUNT:
        raise ValueError("decoder parameter header out of range")
    counts = [p.numel() for _, p in tensors]
    indexes = torch.cat(
        [torch.full((n,), k * laplace.FRACTIONS, dtype=torch.int32) for n, k in zip(counts, ks, strict=True)]
    )
    values = laplace.tables().decoder(body, len(indexes) + MIN_SYMBOLS)(indexes).double()
    with torch.no_grad():
        for (_, p), v, e in zip(tensors, values.split(counts), exps, strict=True):
            p.copy_((v * 2.0**-e).reshape(p.shape).float())
    return decoder


def dequantized(decoder: FittedDecoder, exps: list[int]) -> FittedDecoder:
    """A copy of ``decoder`` with its parameters at the steps ``exps``: what ``decode_params`` rebuilds."""
    out = FittedDecoder(decoder.arch)
    with torch.no_grad():
        for (_, q), (_, p), e in zip(out.tensors(), decoder.tensors(), exps, strict=True):
            q.copy_((quantize(p, e) * 2.0**-e).float())
    return out


# -- latent grids --------------------------------------------------------------------------------
def waves(h: int, w: int, slope: int) -> tuple[Tensor, list[int]]:
    """Flat positions of an h×w grid in wave order (``slope·i + j`` ascending, then i), and each wave's size."""
    i = torch.arange(h).repeat_interleave(w)
    j = torch.arange(w).repeat(h)
    t = slope * i + j
    order = torch.argsort(t * h + i)
    return order, torch.bincount(t, minlength=slope * (h - 1) + w).tolist()


def _tap_offsets(decoder: FittedDecoder, padded_w: int) -> Tensor:
    return torch.tensor([dy * padded_w + dx for dy, dx in decoder.taps])


def _padded(h: int, w: int) -> Tensor:
    """A zero grid with RADIUS rows above and RADIUS columns each side: every causal tap stays inside."""
    return torch.zeros(h + RADIUS, w + 2 * RADIUS, dtype=torch.float64)


def _centres(h: int, w: int, padded_w: int) -> Tensor:
    """Flat indexes in the padded grid of the positions 0..h·w-1 of the grid."""
    pos = torch.arange(h * w)
    return (pos // w + RADIUS) * padded_w + pos % w + RADIUS


def grid_symbols(decoder: FittedDecoder, exact: ExactNetwork, grid: Tensor) -> tuple[Tensor, Tensor]:
    """(symbols, table indexes) of an integer grid (h, w), in raster order, as the decoder derives them."""
    h, w = grid.shape
    buf = _padded(h, w)
    buf[RADIUS:, RADIUS : RADIUS + w] = ExactNetwork.fixed_point(grid.double())
    flat = buf.reshape(-1)
    ctx = flat[_centres(h, w, buf.shape[1])[None, :] + _tap_offsets(decoder, buf.shape[1])[:, None]]
    out = exact.columns(ctx[None], out_frac=laplace.OUT_BITS)[0]
    index, m = laplace.table_index(out[0], out[1])
    return (grid.reshape(-1).double() - m).long(), index


def encode_grids(decoder: FittedDecoder, exact: ExactNetwork, grids: list[Tensor]) -> bytes:
    """Stream 1: every grid's integers (finest first), each grid in wave order."""
    slope = wave_slope(decoder.taps)
    symbols, indexes = [], []
    for grid in grids:
        sym, index = grid_symbols(decoder, exact, grid)
        order, _ = waves(*grid.shape, slope)
        symbols.append(sym[order])
        indexes.append(index[order])
    return _encode(torch.cat(symbols), torch.cat(indexes))


def decode_grids(
    decoder: FittedDecoder, exact: ExactNetwork, data: bytes, sizes: list[tuple[int, int]]
) -> list[Tensor]:
    """The integer grids of stream 1, of the sizes given (finest first)."""
    part = laplace.tables().decoder(data, sum(h * w for h, w in sizes) + MIN_SYMBOLS)
    return [_decode_grid(decoder, exact, part, h, w) for h, w in sizes]


def decode_image(streams: list[bytes], h: int, w: int, arch: Arch) -> Tensor:
    """The reference decoder of one tile: float32 pixels (1, 3, h, w), unclamped (``fast.decode_tile``'s)."""
    if len(streams) != 2:
        raise ValueError(f"an overfit tile has 2 streams, got {len(streams)}")
    decoder = decode_params(streams[0], arch)
    with intra_op_threads(1):  # the wave walk is thousands of small steps (``engine.intra_op_threads``)
        grids = decode_grids(decoder, decoder.exact_arm(), streams[1], grid_sizes(h, w, arch.grids))
    with torch.inference_mode():
        return decoder.image(grids).float()


def _decode_grid(decoder: FittedDecoder, exact: ExactNetwork, part, h: int, w: int) -> Tensor:
    """One h×w grid, wave by wave, from the stream decoder ``part`` (``RansTables.decoder``)."""
    order, sizes = waves(h, w, wave_slope(decoder.taps))
    buf = _padded(h, w)
    flat = buf.reshape(-1)
    centres = _centres(h, w, buf.shape[1])[order]
    taps = _tap_offsets(decoder, buf.shape[1])[:, None]
    scale = float(2**laplace.OUT_BITS)
    start = 0
    for n in sizes:
        at = centres[start : start + n]
        start += n
        out = exact.columns(flat[at[None, :] + taps][None], out_frac=laplace.OUT_BITS)[0]
        index, m = laplace.table_index(out[0], out[1])
        values = part(index.int()).double() + m
        flat[at] = (values * scale).clamp_(-(2.0**CLAMP_BITS), 2.0**CLAMP_BITS)
    return (buf[RADIUS:, RADIUS : RADIUS + w] / scale).float()


def _encode(symbols: Tensor, indexes: Tensor) -> bytes:
    pad = MIN_SYMBOLS
    symbols = torch.cat([symbols.long(), torch.zeros(pad, dtype=torch.long)])
    indexes = torch.cat([indexes.long(), torch.zeros(pad, dtype=torch.long)])
    return laplace.tables().encode(symbols.int(), indexes.int())
