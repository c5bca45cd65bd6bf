"""Inference: network + CompressAI's rANS coder, turning image tensors into byte streams and back.

Entropy tables are converted to Python lists once per model (``EntropyTables``), not per image as
CompressAI's ``compress()`` does; the coder itself is CompressAI's C++ rANS (``compressai.ans``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai import ans
from torch import Tensor

from .model import AECModel


@dataclass
class EntropyTables:
    """CDF tables of one model in the list form the rANS coder takes."""

    z_cdf: list[list[int]]
    z_cdf_len: list[int]
    z_offset: list[int]
    y_cdf: list[list[int]]
    y_cdf_len: list[int]
    y_offset: list[int]

    @classmethod
    def from_model(cls, model: AECModel) -> EntropyTables:
        eb, gc = model.entropy_bottleneck, model.gaussian_conditional
        if eb._quantized_cdf.numel() == 0 or gc._quantized_cdf.numel() == 0:
            raise RuntimeError("entropy tables missing: call build_tables(model) first")
        return cls(
            eb._quantized_cdf.tolist(),
            eb._cdf_length.reshape(-1).tolist(),
            eb._offset.reshape(-1).tolist(),
            gc._quantized_cdf.tolist(),
            gc._cdf_length.reshape(-1).tolist(),
            gc._offset.reshape(-1).tolist(),
        )


def build_tables(model: AECModel) -> None:
    """(Re)build the quantized CDFs from the current parameters; done at export and validation."""
    model.entropy_bottleneck.update(force=True)
    model.gaussian_conditional.update()


def scale_indexes(model: AECModel, scales: Tensor) -> Tensor:
    """Index into the scale table: the number of table entries (but the last) below the scale."""
    table = model.gaussian_conditional.scale_table.to(scales)
    return torch.bucketize(scales.contiguous(), table[:-1].contiguous()).int()


def _encode(symbols: Tensor, indexes: Tensor, cdf, cdf_len, offset) -> bytes:
    return ans.RansEncoder().encode_with_indexes(
        symbols.reshape(-1).tolist(), indexes.reshape(-1).tolist(), cdf, cdf_len, offset
    )


def _decode(data: bytes, indexes: Tensor, cdf, cdf_len, offset) -> Tensor:
    # The C++ decoder reads 32-bit words without bounds checks; a valid stream is consumed exactly,
    # but a damaged one can run past its end. Zero padding (two words per symbol, at most one
    # renormalization read per decode) keeps those reads inside our buffer.
    data = bytes(data) + bytes(8 * indexes.numel() + 64)
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


@torch.inference_mode()
def analyze(model: AECModel, x: Tensor) -> Tensor:
    """The latent ``y`` of a batch ``x`` (B, 3, H, W) in [0, 1], H and W multiples of PAD_MULTIPLE.

    Kept apart from ``code`` because ``y`` does not depend on the quality: a rate search runs the
    analysis transform once and only re-codes the latent.
    """
    return model.g_a(x).float()


@torch.inference_mode()
def code(model: AECModel, tables: EntropyTables, y: Tensor, quality: float) -> list[Streams]:
    """Entropy-code latents ``y`` at ``quality``: one ``Streams`` per batch item."""
    y_gain, z_gain = model.gains(quality)
    z = model.h_a(y).float() * z_gain
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    z_sym = torch.round(z - medians).int()
    z_hat = z_sym.float() + medians
    scales, means = model.hyper_params(z_hat, z_gain, y_gain)
    y_sym = torch.round(y * y_gain - means).int().cpu()
    idx = scale_indexes(model, scales).cpu()
    z_sym = z_sym.cpu()
    z_idx = _z_indexes(model, z_sym.shape[1:])
    out = []
    for b in range(y.shape[0]):
        zs = _encode(z_sym[b], z_idx, tables.z_cdf, tables.z_cdf_len, tables.z_offset)
        ys = _encode(y_sym[b], idx[b], tables.y_cdf, tables.y_cdf_len, tables.y_offset)
        out.append(Streams(zs, ys, tuple(z.shape[2:])))
    return out


def compress(model: AECModel, tables: EntropyTables, x: Tensor, quality: float) -> list[Streams]:
    """Code a batch ``x`` (B, 3, H, W) in [0, 1], H and W multiples of PAD_MULTIPLE."""
    return code(model, tables, analyze(model, x), quality)


@torch.inference_mode()
def decompress(model: AECModel, tables: EntropyTables, streams: list[Streams], quality: float) -> Tensor:
    """Decode a batch of same-size streams to (B, 3, H, W) in [0, 1] (still padded)."""
    device = model.log_y_gain.device
    y_gain, z_gain = model.gains(quality)
    N = model.arch.N
    zh, zw = streams[0].z_shape
    z_idx = _z_indexes(model, (N, zh, zw))
    z_sym = torch.stack([_decode(s.z, z_idx, tables.z_cdf, tables.z_cdf_len, tables.z_offset) for s in streams])
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    z_hat = z_sym.to(device).float() + medians
    scales, means = model.hyper_params(z_hat, z_gain, y_gain)
    idx = scale_indexes(model, scales).cpu()
    y_sym = torch.stack(
        [_decode(s.y, idx[b], tables.y_cdf, tables.y_cdf_len, tables.y_offset) for b, s in enumerate(streams)]
    )
    y_hat = (y_sym.to(device).float() + means) / y_gain
    return model.g_s(y_hat).float().clamp_(0, 1)
