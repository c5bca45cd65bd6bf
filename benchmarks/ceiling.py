"""The transforms' own ceiling: PSNR of ``synthesize(analyze(x))`` with no quantization at all.

    python -m benchmarks.ceiling --data ../shared/data/kodak [--model ID ...]

No quality of a model can decode better than its analysis and synthesis transforms reconstruct an
unquantized latent, so this says whether the top of an R-D curve is held down by quantization (the
top quality far below the ceiling: more levels or finer steps would help) or by the transforms (the
top quality close to it: only training the transforms, or larger ones, raises it).
"""

from __future__ import annotations

import click
import numpy as np
import torch

from codec.core.tensors import psnr, to_tensor, to_uint8
from codec.training.data import image_files, load_rgb
from codec.weights.store import load_codec, read_manifest


@torch.inference_mode()
def ceiling_psnr(model, rgb: np.ndarray, quality: float | None = None, finer: float = 1.0) -> float:
    """PSNR (8-bit RGB) of one image through the model's transforms without quantization, or, with a
    ``quality``, with the latent rounded to that quality's steps divided by ``finer`` (rounded about
    zero, not about the entropy model's means: the distortion a finer ladder could reach)."""
    height, width = rgb.shape[:2]
    y = model.analyze(to_tensor(rgb, model.stride).to(model.device)).float()
    if quality is not None:
        step = model.gains(quality)[0].to(y) * finer
        y = torch.round(y * step) / step
    return psnr(rgb, to_uint8(model.synthesize(y), height, width))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@click.option(
    "--model", "model_ids", multiple=True, help="Model id in the weights folder (default: the default model)."
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--finer", default=4.0, show_default=True, help="Also round at the top quality's steps ÷ this.")
def main(data: str, model_ids: tuple[str, ...], device: str, finer: float) -> None:
    """Print, per model, the mean transform ceiling, the PSNR at the top quality's steps made ``finer``,
    and the top quality's PSNR recorded in the manifest."""
    try:
        files = image_files(data)
    except FileNotFoundError as e:
        raise click.UsageError(str(e)) from None
    images = [load_rgb(p) for p in files]
    entries = read_manifest()["models"]
    click.echo(
        f"| model | images | ceiling PSNR | top steps ÷{finer:g} | recorded top quality |\n|---|---:|---:|---:|---|"
    )
    for model_id in model_ids or (None,):
        codec = load_codec(model_id, device)
        mean = float(np.mean([ceiling_psnr(codec.model, rgb) for rgb in images]))
        top = float(codec.model.levels)
        fine = float(np.mean([ceiling_psnr(codec.model, rgb, top, finer) for rgb in images]))
        kodak = entries.get(codec.model_id, {}).get("kodak")
        recorded = "—"
        if kodak:
            i = int(np.argmax(kodak["quality"]))
            recorded = f"q{kodak['quality'][i]:g}: {kodak['bpp'][i]:.3f} bpp, {kodak['psnr-rgb'][i]:.2f} dB (Kodak)"
        click.echo(f"| {codec.model_id} | {len(images)} | {mean:.2f} dB | {fine:.2f} dB | {recorded} |")


if __name__ == "__main__":
    main()
