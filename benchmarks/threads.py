"""Pixels across CPU thread counts: how many samples a decode at N threads moves against one thread.

    python -m benchmarks.threads --image ../shared/data/kodak/kodim23.png --quality 6 --threads 1,2,3,4
    AECODEC_CPU_FAST=0 python -m benchmarks.threads ...        # float32 even on CPUs with native bf16

The latents (symbols, scales, means) are the same at any thread count by construction (``codec.core.exact``); the
float synthesis sums in an order that depends on the thread count. Each count is decoded twice, so the
report also shows whether one count repeats itself. What is promised: docs/FORMAT.md, Compatibility.
"""

from __future__ import annotations

import json

import click
import numpy as np
import torch
from PIL import Image

import codec
from codec.weights.store import load_codec

from .common import use_weights


@click.command()
@click.option("--image", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--quality", type=float, default=6.0, show_default=True)
@click.option(
    "--threads", "counts", default="1,2,3,4", show_default=True, help="Thread counts (the first is the reference)."
)
@click.option("--weights", default=None)
def main(image, quality, counts, weights) -> None:
    use_weights(weights)
    c = load_codec()
    with Image.open(image) as im:
        data = codec.encode(im, quality=quality, codec=c)
    rows, reference = [], None
    for n in [int(x) for x in counts.split(",")]:
        torch.set_num_threads(n)
        for run in (1, 2):
            pixels = np.asarray(codec.decode(data, codec=c)).astype(np.int16)
            reference = pixels if reference is None else reference
            diff = np.abs(pixels - reference)
            rows.append(
                {"threads": n, "run": run, "samples_differ": int((diff > 0).sum()), "max_levels": int(diff.max())}
            )
    click.echo(
        json.dumps(
            {"model": c.model_id, "image": image, "quality": quality, "samples": int(reference.size), "runs": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
