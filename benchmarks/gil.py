"""Does CompressAI's rANS coder release the GIL? (It decides threads vs processes for overlap.)

    python -m benchmarks.gil [--symbols 1179648]

Times one ``RansEncoder.encode_with_indexes`` call and one ``RansDecoder.decode_with_indexes``
call on Gaussian-table symbols, then two of them at once in two threads. Released GIL: two calls
in two threads take about as long as one (given two free cores); held: about twice as long.
"""

from __future__ import annotations

import threading
import time

import click
import numpy as np
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import GaussianConditional

from codec.core.engine import RansTables
from codec.models.hyperprior import scale_table


def _timed(fn, threads: int) -> float:
    workers = [threading.Thread(target=fn) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--symbols", type=int, default=192 * 48 * 32 * 4, show_default=True, help="Symbols per call.")
def main(symbols: int) -> None:
    gc = GaussianConditional(scale_table())
    gc.update()
    t = RansTables.from_entropy_model(gc)
    tables = t.cdf, t.cdf_len, t.offset
    rng = np.random.default_rng(0)
    idx = rng.integers(5, 40, symbols).astype(np.int32).tolist()
    sym = rng.integers(-3, 4, symbols).astype(np.int32).tolist()
    data = RansEncoder().encode_with_indexes(sym, idx, *tables)

    def enc() -> None:
        RansEncoder().encode_with_indexes(sym, idx, *tables)

    def dec() -> None:
        RansDecoder().decode_with_indexes(data, idx, *tables)

    for name, fn in (("encode", enc), ("decode", dec)):
        fn()  # warm-up
        one = min(_timed(fn, 1) for _ in range(3))
        two = min(_timed(fn, 2) for _ in range(3))
        verdict = "held (serialized)" if two > 1.6 * one else "released (parallel)"
        click.echo(f"rANS {name}: 1 call {one * 1e3:.0f} ms, 2 calls in 2 threads {two * 1e3:.0f} ms -> GIL {verdict}")


if __name__ == "__main__":
    main()
