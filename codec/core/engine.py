"""Inference machinery shared by every model: the transforms' precision and layout, and rANS coding.

Models (``codec.models``) build their coding paths from these parts; nothing here knows a model's
streams, channels or strides. The coder is CompressAI's C++ rANS (``compressai.ans``); its tables
are converted to Python lists once per model (``RansTables``), not per image as CompressAI's
``compress()`` does.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from compressai import ans
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from torch import Tensor

from .rans import check_stream_length


@dataclass
class RansTables:
    """One entropy model's quantized CDFs in the list form the rANS coder takes."""

    cdf: list[list[int]]
    cdf_len: list[int]
    offset: list[int]

    @classmethod
    def from_entropy_model(cls, em: EntropyModel) -> RansTables:
        if em.quantized_cdf.numel() == 0:
            raise RuntimeError("entropy tables missing: call build_tables() first")
        return cls(em.quantized_cdf.tolist(), em.cdf_length.reshape(-1).tolist(), em.offset.reshape(-1).tolist())

    def encode(self, symbols: Tensor, indexes: Tensor) -> bytes:
        """One stream of ``symbols``, each coded with the table its index names."""
        return ans.RansEncoder().encode_with_indexes(
            symbols.reshape(-1).tolist(), indexes.reshape(-1).tolist(), self.cdf, self.cdf_len, self.offset
        )

    def decode(self, data: bytes, indexes: Tensor) -> Tensor:
        """The int32 symbols (shape of ``indexes``) of a stream; ValueError when it cannot be one."""
        values = ans.RansDecoder().decode_with_indexes(
            guarded(data, indexes.numel()), indexes.reshape(-1).tolist(), self.cdf, self.cdf_len, self.offset
        )
        return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)

    def decoder(self, data: bytes, symbols: int) -> Callable[[Tensor], Tensor]:
        """Decoding of one stream of ``symbols`` symbols by parts, for models whose tables depend on
        symbols decoded earlier: each call decodes the next ``indexes.numel()`` symbols (int32, shape
        of ``indexes``)."""
        dec = ans.RansDecoder()
        dec.set_stream(guarded(data, symbols))

        def part(indexes: Tensor) -> Tensor:
            values = dec.decode_stream(indexes.reshape(-1).tolist(), self.cdf, self.cdf_len, self.offset)
            return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)

        return part


def guarded(data: bytes, symbols: int) -> bytes:
    """``data`` made safe for CompressAI's decoder, which reads without bounds checks.

    A valid stream is consumed exactly, a damaged one can run past its end (in bypass mode ~15
    bytes per stream byte: found by scripts/fuzz.py as a SIGSEGV on a run of 0xFF). A valid stream
    has a bounded length (``rans.check_stream_length``), so longer is damage; zero padding keeps
    every over-read inside our buffer. Models that decode by parts (``RansDecoder.set_stream``)
    pass the total symbol count of the stream.
    """
    check_stream_length(len(data), symbols)
    return bytes(data) + bytes(16 * len(data) + 8 * symbols + 64)


def fit_quantiles(eb: EntropyBottleneck, steps: int = 3000, lr: float = 1e-2) -> float:
    """Fit an entropy bottleneck's quantiles (each channel's median and tails) to its density.

    They follow the auxiliary loss, which training tracks only slowly while the hyper-latent's scale
    moves (measured: aux loss 3149 at step 4400). The loss needs no data, so a few thousand Adam
    steps here fit them (3149 → 2.6 in 5 s): medians centre the symbols and the tails bound the CDF
    tables, so fewer symbols fall outside the tables into the costly bypass code. Returns the loss.
    """
    quantiles = eb.quantiles
    opt = torch.optim.Adam([quantiles], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = eb.loss()
            loss.backward()
            opt.step()
    quantiles.grad = None
    return float(loss.detach())


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
    """Autocast dtype for the analysis/synthesis transforms on ``device``, None for float32.

    CUDA: fp16 — activations stay below ~10 on photos (Kodak), far from fp16's 65504, and it moved
    PSNR by at most 0.0035 dB. CPUs with native bf16: bf16 (g_a/g_s 2.5x/2.2x faster than fp32
    channels-last on 2 Zen 5 cores; its cost in dB is measured by ``benchmarks.ablation half``).
    ``AECODEC_CPU_FAST=0`` keeps the CPU in float32. Neither transform feeds what the decoder must
    reproduce: the analysis only decides the encoder's symbols, the synthesis only the pixels.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and _fast_cpu():
        return torch.bfloat16
    return None


def layout(device: torch.device) -> torch.memory_format:
    """Channels-last wherever the transforms run in half precision: on CUDA (tensor cores) and on
    CPUs with native bf16 (768x512 g_a/g_s, 2 Zen 5 cores, fp32: 388/257 ms contiguous, 141/158 ms
    channels-last). Not on CPUs without: on a 2-core AVX-512 machine it made g_a 1.3x slower."""
    return torch.contiguous_format if half_dtype(device) is None else torch.channels_last


def transform(module: torch.nn.Sequential, x: Tensor) -> Tensor:
    """``module(x)`` in ``x``'s dtype, its layers but the last under ``half_dtype`` autocast where
    there is one. The last layer stays float32: its output is the latent to be rounded (analysis)
    or the pixels (synthesis), where bf16's 8-bit mantissa alone costs up to 1/255. A non-finite
    result (fp16 overflow) is recomputed in float32."""
    dtype = half_dtype(x.device)
    if dtype is None:
        return module(x)
    with torch.autocast(x.device.type, dtype=dtype):
        hidden = module[:-1](x)
    out = module[-1](hidden.to(x.dtype))
    return out if bool(torch.isfinite(out).all()) else module(x)


@torch.inference_mode()
def analyze_with(module: torch.nn.Sequential, x: Tensor, dtype: torch.dtype) -> Tensor:
    """An analysis transform of an image batch, in the device's precision and layout."""
    return transform(module, x.to(dtype).contiguous(memory_format=layout(x.device)))


@torch.inference_mode()
def synthesize_with(module: torch.nn.Sequential, y_hat: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A synthesis transform of a latent, clamped to [0, 1]; NaN/inf from damaged streams become 0/1."""
    y_hat = y_hat.to(device, dtype).contiguous(memory_format=layout(device))
    x = transform(module, y_hat).float()
    return torch.nan_to_num_(x, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1)


def use_layout(*modules: torch.nn.Module) -> None:
    """Put transforms' weights in the layout ``analyze_with``/``synthesize_with`` feed them."""
    for m in modules:
        m.to(memory_format=layout(next(m.parameters()).device))


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, then restore the caller's count.

    For chains of many small ops (a context model's walk): each op big enough to split is one
    fork/join of the thread pool, whose cost outweighs the split's gain on small tensors, and on a
    busy machine a hand-off waits for the other thread to be scheduled.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
