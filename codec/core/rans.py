"""What a CompressAI rANS stream can be, with no torch: the longest valid coding of ``n`` symbols.

A valid stream needs at most 52 bits per symbol plus an 8-byte flush, so a longer one is damage; both
decoders (``engine.guarded`` for CompressAI's, the fitted kind's compiled one) refuse it before decoding.
"""

from __future__ import annotations


def max_stream_bytes(symbols: int) -> int:
    return 8 * symbols + 64


def check_stream_length(size: int, symbols: int) -> None:
    """ValueError when ``size`` bytes are longer than any coding of ``symbols`` symbols."""
    if size > max_stream_bytes(symbols):
        raise ValueError(f"stream of {size} bytes is longer than any coding of {symbols} symbols")
