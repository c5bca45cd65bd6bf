"""Inference: network + CompressAI's rANS coder, turning image tensors into byte streams and back.

Entropy tables are converted to Python lists once per model (``EntropyTables``), not per image as
CompressAI's ``compress()`` does; the coder itself is CompressAI's C++ rANS (``compressai.ans``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
from compressai import ans
from torch import Tensor

from .exact import ExactHyperSynthesis
from .model import AECModel


@dataclass
class EntropyTables:
    """What coding needs, prepared once per model: the CDFs in the list form the rANS coder takes
    and the integer-exact hyper-synthesis that turns hyper-latent symbols into scale indexes."""

    z_cdf: list[list[int]]
    z_cdf_len: list[int]
    z_offset: list[int]
    y_cdf: list[list[int]]
    y_cdf_len: list[int]
    y_offset: list[int]
    hyper: ExactHyperSynthesis

    @classmethod
    def from_model(cls, model: AECModel) -> EntropyTables:
        eb, gc = model.entropy_bottleneck, model.gaussian_conditional
        if eb._quantized_cdf.numel() == 0 or gc._quantized_cdf.numel() == 0 or not model.y_gain_table.any():
            raise RuntimeError("entropy tables missing: call build_tables(model) first")
        device = model.log_y_gain.device
        return cls(
            eb._quantized_cdf.tolist(),
            eb._cdf_length.reshape(-1).tolist(),
            eb._offset.reshape(-1).tolist(),
            gc._quantized_cdf.tolist(),
            gc._cdf_length.reshape(-1).tolist(),
            gc._offset.reshape(-1).tolist(),
            ExactHyperSynthesis(model.h_s, eb._get_medians(), gc.scale_table, device),
        )


def fit_quantiles(model: AECModel, steps: int = 3000, lr: float = 1e-2) -> float:
    """Fit the entropy bottleneck's quantiles (each channel's median and tails) to its density.

    They follow the auxiliary loss, which training tracks only slowly while the hyper-latent's scale
    moves (measured: aux loss 3149 at step 4400). The loss needs no data, so a few thousand Adam
    steps here fit them (3149 → 2.6 in 5 s): medians centre the symbols and the tails bound the CDF
    tables, so fewer symbols fall outside the tables into the costly bypass code. Returns the loss.
    """
    quantiles = model.entropy_bottleneck.quantiles
    opt = torch.optim.Adam([quantiles], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = model.entropy_bottleneck.loss()
            loss.backward()
            opt.step()
    quantiles.grad = None
    return float(loss.detach())


def build_tables(model: AECModel) -> None:
    """(Re)build the quantized CDFs from the current parameters; done at export and validation."""
    fit_quantiles(model)
    model.entropy_bottleneck.update(force=True)
    model.gaussian_conditional.update()
    model.freeze_gains()


def scale_indexes(model: AECModel, scales: Tensor) -> Tensor:
    """Index into the scale table: the number of table entries (but the last) below the scale."""
    table = model.gaussian_conditional.scale_table.to(scales)
    return torch.bucketize(scales.contiguous(), table[:-1].contiguous()).int()


def _encode(symbols: Tensor, indexes: Tensor, cdf, cdf_len, offset) -> bytes:
    return ans.RansEncoder().encode_with_indexes(
        symbols.reshape(-1).tolist(), indexes.reshape(-1).tolist(), cdf, cdf_len, offset
    )


def _decode(data: bytes, indexes: Tensor, cdf, cdf_len, offset) -> Tensor:
    # CompressAI's C++ decoder reads without bounds checks; a valid stream is consumed exactly, a
    # damaged one can run past its end (in bypass mode ~15 bytes per stream byte: found by
    # scripts/fuzz.py as a SIGSEGV on a run of 0xFF). A valid stream needs at most 52 bits per symbol
    # plus an 8-byte flush, so longer is damage; zero padding keeps every over-read inside our buffer.
    if len(data) > 8 * indexes.numel() + 64:
        raise ValueError(f"stream of {len(data)} bytes is longer than any coding of {indexes.numel()} symbols")
    data = bytes(data) + bytes(16 * len(data) + 8 * indexes.numel() + 64)
    values = ans.RansDecoder().decode_with_indexes(data, indexes.reshape(-1).tolist(), cdf, cdf_len, offset)
    return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)


def _z_indexes(model: AECModel, shape: tuple[int, ...]) -> Tensor:
    C = shape[0]
    return torch.arange(C, dtype=torch.int32)[:, None, None].expand(shape)


@dataclass
class Streams:
    """Entropy-coded streams of one image: hyper-latent first, then latent."""

    z: bytes
    y: bytes
    z_shape: tuple[int, int]


def _float_dtype(model: AECModel) -> torch.dtype:
    return model.log_y_gain.dtype


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512_BF16 or AMX), where oneDNN's channels-last and
    bf16 convolutions are fast. Without them (older AVX-512 / AVX2 parts) both measured slower."""
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


def _fast_cpu() -> bool:
    return os.environ.get("AECODEC_CPU_FAST", "auto") != "0" and cpu_has_native_bf16()


def half_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for g_a/g_s on ``device``, None for float32.

    CUDA: fp16 — activations stay below ~10 on photos (Kodak), far from fp16's 65504, and it moved
    PSNR by at most 0.0035 dB. CPUs with native bf16: bf16 (g_a/g_s 2.5x/2.2x faster than fp32
    channels-last on 2 Zen 5 cores; its cost in dB is measured by ``benchmarks.ablation half``).
    ``AECODEC_CPU_FAST=0`` keeps the CPU in float32. Neither transform feeds what the decoder must
    reproduce: g_a only decides the encoder's symbols, g_s only the pixels.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and _fast_cpu():
        return torch.bfloat16
    return None


def _layout(device: torch.device) -> torch.memory_format:
    """Channels-last wherever the transforms run in half precision: on CUDA (tensor cores) and on
    CPUs with native bf16 (768x512 g_a/g_s, 2 Zen 5 cores, fp32: 388/257 ms contiguous, 141/158 ms
    channels-last). Not on CPUs without: on a 2-core AVX-512 machine it made g_a 1.3x slower."""
    return torch.contiguous_format if half_dtype(device) is None else torch.channels_last


def _transform(module: torch.nn.Sequential, x: Tensor) -> Tensor:
    """``module(x)`` in ``x``'s dtype, its layers but the last under ``half_dtype`` autocast where
    there is one. The last layer stays float32: its output is the latent to be rounded (g_a) or
    the pixels (g_s), where bf16's 8-bit mantissa alone costs up to 1/255. A non-finite result
    (fp16 overflow) is recomputed in float32."""
    dtype = half_dtype(x.device)
    if dtype is None:
        return module(x)
    with torch.autocast(x.device.type, dtype=dtype):
        hidden = module[:-1](x)
    out = module[-1](hidden.to(x.dtype))
    return out if bool(torch.isfinite(out).all()) else module(x)


def prepare(model: AECModel) -> AECModel:
    """Put the analysis/synthesis weights in the layout ``analyze``/``synthesize_latent`` feed them."""
    layout = _layout(model.log_y_gain.device)
    model.g_a.to(memory_format=layout)
    model.g_s.to(memory_format=layout)
    return model


@torch.inference_mode()
def analyze(model: AECModel, x: Tensor) -> Tensor:
    """The latent ``y`` of a batch ``x`` (B, 3, H, W) in [0, 1], H and W multiples of PAD_MULTIPLE.

    Kept apart from ``code`` because ``y`` does not depend on the quality: a rate search runs the
    analysis transform once and only re-codes the latent.
    """
    return _transform(model.g_a, x.to(_float_dtype(model)).contiguous(memory_format=_layout(x.device)))


@torch.inference_mode()
def quantize(model: AECModel, tables: EntropyTables, y: Tensor, quality: float) -> Latents:
    """Symbols and coding tables for latents ``y`` at ``quality`` (what the decoder will rebuild).

    Only the encoder's own float values (``y``, ``z``) decide the symbols; everything the decoder
    must reproduce (indexes, means) comes from ``tables.hyper`` on the symbols themselves.
    """
    y_gain, z_gain = model.inference_gains(quality)
    medians = tables.hyper.medians.view(1, -1, 1, 1)
    z = model.h_a(y).double().cpu()
    z_sym = torch.round(z * z_gain.view(1, -1, 1, 1) - medians).int()
    idx, means = tables.hyper(z_sym, z_gain, y_gain)
    y_sym = torch.round(y.double().cpu() * y_gain.view(1, -1, 1, 1) - means).int()
    return Latents(z_sym, y_sym, idx, means, y_gain)


def entropy_code(model: AECModel, tables: EntropyTables, lat: Latents) -> list[Streams]:
    """rANS-code quantized latents: one ``Streams`` per batch item."""
    z_idx = _z_indexes(model, lat.z_sym.shape[1:])
    out = []
    for b in range(lat.y_sym.shape[0]):
        zs = _encode(lat.z_sym[b], z_idx, tables.z_cdf, tables.z_cdf_len, tables.z_offset)
        ys = _encode(lat.y_sym[b], lat.indexes[b], tables.y_cdf, tables.y_cdf_len, tables.y_offset)
        out.append(Streams(zs, ys, tuple(lat.z_sym.shape[2:])))
    return out


def code(model: AECModel, tables: EntropyTables, y: Tensor, quality: float) -> list[Streams]:
    """Entropy-code latents ``y`` at ``quality``: one ``Streams`` per batch item."""
    return entropy_code(model, tables, quantize(model, tables, y, quality))


def compress(model: AECModel, tables: EntropyTables, x: Tensor, quality: float) -> list[Streams]:
    """Code a batch ``x`` (B, 3, H, W) in [0, 1], H and W multiples of PAD_MULTIPLE."""
    return code(model, tables, analyze(model, x), quality)


@torch.inference_mode()
def decode_latents(model: AECModel, tables: EntropyTables, streams: list[Streams], quality: float) -> Latents:
    """rANS-decode a batch of same-size streams: symbols, indexes and means (all on the CPU)."""
    y_gain, z_gain = model.inference_gains(quality)
    zh, zw = streams[0].z_shape
    z_idx = _z_indexes(model, (model.arch.N, zh, zw))
    z_sym = torch.stack([_decode(s.z, z_idx, tables.z_cdf, tables.z_cdf_len, tables.z_offset) for s in streams])
    idx, means = tables.hyper(z_sym, z_gain, y_gain)
    y_sym = torch.stack(
        [_decode(s.y, idx[b], tables.y_cdf, tables.y_cdf_len, tables.y_offset) for b, s in enumerate(streams)]
    )
    return Latents(z_sym, y_sym, idx, means, y_gain)


@dataclass
class Latents:
    """Decoded symbols and the tables derived from them; exact, so equal on every machine."""

    z_sym: Tensor
    y_sym: Tensor
    indexes: Tensor
    means: Tensor
    y_gain: Tensor

    def y_hat(self) -> Tensor:
        return (self.y_sym.double() + self.means) / self.y_gain.view(1, -1, 1, 1)


@torch.inference_mode()
def synthesize_latent(model: AECModel, y_hat: Tensor) -> Tensor:
    """g_s of a latent, clamped to [0, 1]; NaN/inf from damaged streams become 0/1, never errors."""
    device = model.log_y_gain.device
    x = _transform(model.g_s, y_hat.to(device, _float_dtype(model)).contiguous(memory_format=_layout(device))).float()
    return torch.nan_to_num_(x, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1)


def synthesize(model: AECModel, latents: Latents) -> Tensor:
    return synthesize_latent(model, latents.y_hat())


def decompress(model: AECModel, tables: EntropyTables, streams: list[Streams], quality: float) -> Tensor:
    """Decode a batch of same-size streams to (B, 3, H, W) in [0, 1] (still padded)."""
    return synthesize(model, decode_latents(model, tables, streams, quality))
