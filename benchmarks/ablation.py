"""Costs of two engineering choices, measured on a folder of images (issue numbers in the docs):

- ``exact``: the integer-exact hyper-synthesis (``codec/core/exact.py``) against the float one it replaces —
  BD-rate of the exact path's real streams vs CompressAI's stock float path on the same network.
- ``fp16``: storing the transforms' weights as fp16 — PSNR change at equal symbols.
- ``half``: running g_a/g_s in bf16 on a CPU with native bf16 (``engine.half_dtype``) against
  float32 — PSNR and rate change of the whole encode/decode, and the time of each.

    python -m benchmarks.ablation exact --data DIR [--limit N]
    python -m benchmarks.ablation fp16 --data DIR [--limit N]
    python -m benchmarks.ablation half --data DIR [--limit N]
"""

from __future__ import annotations

import copy
import json
import os
import time

import click
import numpy as np
import torch

from codec.bench.bdrate import bd_rate
from codec.coding import tiling
from codec.core import engine
from codec.core.tensors import psnr, to_tensor, to_uint8
from codec.training.data import load_rgb
from codec.weights.manifest import installed_levels
from codec.weights.store import load_codec

from .common import ALL_QUALITIES_HELP, all_qualities, parse_floats, select_images, use_weights
from .speed import reference_compress, reference_decompress


def _streams_bytes(strings) -> int:
    return sum(len(s) for group in strings for s in group)


def _round_trip(model, y: torch.Tensor, q: float, h: int, w: int) -> tuple[int, np.ndarray]:
    """(stream bytes, decoded pixels) of one image's latent through the model's coding path."""
    (st,) = model.encode_latent(y, q)
    return sum(map(len, st)), to_uint8(model.synthesize(model.decode_latent([st], tuple(y.shape[2:]), q)), h, w)


def exact_vs_float(paths, qualities: list[float]) -> dict:
    """Mean bpp/PSNR per quality for both paths (streams only, no container), and the BD-rate."""
    c = load_codec(device="cpu")
    curves = {"exact": {"bpp": [], "psnr": []}, "float": {"bpp": [], "psnr": []}}
    for q in qualities:
        acc = {k: ([], []) for k in curves}
        for p in paths:
            rgb = load_rgb(p)
            h, w = rgb.shape[:2]
            x = to_tensor(rgb, c.model.stride)
            n, out = _round_trip(c.model, c.model.analyze(x), q, h, w)
            acc["exact"][0].append(n * 8 / (h * w))
            acc["exact"][1].append(psnr(rgb, out))
            ref = reference_compress(c.model, x, q)
            rout = to_uint8(reference_decompress(c.model, ref["strings"], ref["shape"], q), h, w)
            acc["float"][0].append(_streams_bytes(ref["strings"]) * 8 / (h * w))
            acc["float"][1].append(psnr(rgb, rout))
        for k, (b, s) in acc.items():
            curves[k]["bpp"].append(float(np.mean(b)))
            curves[k]["psnr"].append(float(np.mean(s)))
    curves["bd_rate_exact_vs_float_percent"] = bd_rate(
        curves["float"]["bpp"], curves["float"]["psnr"], curves["exact"]["bpp"], curves["exact"]["psnr"]
    )
    return curves


def fp16_cost(paths, qualities: list[float]) -> dict:
    """PSNR of the decode with fp16-rounded transform weights minus fp32, per quality (same bitstream)."""
    c = load_codec(device="cpu")
    half = copy.deepcopy(c.model)
    with torch.no_grad():
        for name, p in half.named_parameters():
            if name.startswith(half.half_stored):
                p.copy_(p.half().float())
    half.prepare()
    out = {}
    for q in qualities:
        d = []
        for p in paths:
            rgb = load_rgb(p)
            h, w = rgb.shape[:2]
            y = tiling.analyze(c.model, rgb, tiling.TILE, c.device)
            n, full = _round_trip(c.model, y, q, h, w)
            n16, low = _round_trip(half, tiling.analyze(half, rgb, tiling.TILE, c.device), q, h, w)
            d.append((psnr(rgb, low) - psnr(rgb, full), n16 / n - 1))
        out[f"{q:g}"] = {
            "delta_psnr_db": float(np.mean([a for a, _ in d])),
            "delta_rate": float(np.mean([b for _, b in d])),
        }
    return out


def _code_cpu(c, rgb: np.ndarray, q: float, fast: bool) -> tuple[int, np.ndarray, float]:
    """(stream bytes, decoded pixels, seconds) with the CPU fast path on or off."""
    os.environ["AECODEC_CPU_FAST"] = "auto" if fast else "0"
    c.model.prepare()
    h, w = rgb.shape[:2]
    t = time.perf_counter()
    n, out = _round_trip(c.model, tiling.analyze(c.model, rgb, tiling.TILE, c.device), q, h, w)
    return n, out, time.perf_counter() - t


def half_cost(paths, qualities: list[float]) -> dict:
    """Mean PSNR/rate change and time ratio of the CPU's bf16 transforms against float32."""
    if not engine.cpu_has_native_bf16():
        raise click.ClickException("this CPU has no native bf16: the codec runs float32 here")
    c = load_codec(device="cpu")
    out = {}
    try:
        for q in qualities:
            d = []
            for p in paths:
                rgb = load_rgb(p)
                n32, x32, t32 = _code_cpu(c, rgb, q, fast=False)
                n16, x16, t16 = _code_cpu(c, rgb, q, fast=True)
                d.append((psnr(rgb, x16) - psnr(rgb, x32), n16 / n32 - 1, t16 / t32))
            a = np.array(d)
            out[f"{q:g}"] = {
                "delta_psnr_db": float(a[:, 0].mean()),
                "worst_delta_psnr_db": float(a[:, 0].min()),
                "delta_rate": float(a[:, 1].mean()),
                "time_ratio": float(a[:, 2].mean()),
            }
    finally:
        os.environ.pop("AECODEC_CPU_FAST", None)
    return out


@click.command()
@click.argument("what", type=click.Choice(["exact", "fp16", "half"]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", type=int, default=None)
@click.option("--qualities", help=ALL_QUALITIES_HELP)
@click.option("--weights", default=None, help="Weights folder (default: the shipped weights/).")
def main(what: str, data: str, limit: int | None, qualities: str | None, weights: str | None) -> None:
    use_weights(weights)
    paths = select_images(data, limit)
    qs = parse_floats(qualities) if qualities else all_qualities(installed_levels()[1])
    result = {"exact": exact_vs_float, "fp16": fp16_cost, "half": half_cost}[what](paths, qs)
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
