"""Time of one training step, eager against ``--compile``, interleaved in one process.

    python -m benchmarks.train_step [--kind gain-ctx] [--crop 256] [--batch 4] [--steps 7]

Steps of the two modes alternate, so that whatever else the machine does slows both alike: timed one
mode after the other, the same compiled step measured anywhere from 1.42 to 2.07 s on the 2-core CPU.
Pause a running training (``kill -STOP``) while this runs. Random weights: the time does not depend on them.
"""

from __future__ import annotations

import statistics
import time

import click
import torch

from codec.training.config import parse_arch
from codec.training.train import (
    TrainConfig,
    apply_gradients,
    build_model,
    compiled_forward,
    lambdas_for,
    make_optimizer,
    rd_loss,
    sample_qualities,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kind", default="gain-ctx", show_default=True, help="Registered model kind.")
@click.option("--arch", multiple=True, metavar="KEY=VALUE", help="Overrides of the kind's default_arch().")
@click.option("--crop", type=int, default=256, show_default=True)
@click.option("--batch", type=int, default=4, show_default=True)
@click.option("--steps", type=int, default=7, show_default=True, help="Timed steps of each mode.")
@click.option("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
def main(kind: str, arch: tuple[str, ...], crop: int, batch: int, steps: int, threads: int) -> None:
    """Print the median and every time of eager and compiled training steps (CPU, fp32)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(kind=kind, arch=parse_arch(arch))
    model = build_model(cfg).to(memory_format=torch.channels_last)
    levels = model.levels
    model.train()
    opt, params = make_optimizer(model, cfg)
    compiled = compiled_forward(model)
    gen = torch.Generator().manual_seed(0)
    scaler = torch.amp.GradScaler(enabled=False)  # fp32, as the training on this CPU

    def step(forward) -> float:
        x = torch.rand(batch, 3, crop, crop, generator=gen)
        q = sample_qualities(batch, levels, gen)
        start = time.perf_counter()
        out = forward(x.contiguous(memory_format=torch.channels_last), q, None)
        apply_gradients(rd_loss(out, x, lambdas_for(q), "mse"), opt, params, scaler)
        return time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(2):  # the first compiled steps compile
        step(compiled), step(model)
    click.echo(f"warm-up (compiling included): {time.perf_counter() - start:.1f} s")
    times = {"eager": [], "compiled": []}
    for _ in range(steps):
        times["eager"].append(step(model))
        times["compiled"].append(step(compiled))
    for mode, ts in times.items():
        click.echo(
            f"{mode}: median {statistics.median(ts):.3f} s/step; all {', '.join(f'{t:.2f}' for t in sorted(ts))}"
        )


if __name__ == "__main__":
    main()
