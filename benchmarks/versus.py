"""BD-rate of one aecodec run against another: did new weights (or a new encoder setting) pay?

    python -m benchmarks.versus OLD/rd.json NEW/rd.json [--codec aecodec]

Both files come from ``benchmarks.rd`` on the same images; negative means NEW needs fewer bits.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from codec.bench.report import bd_pair


def curve(path: Path, codec: str) -> tuple[dict, list[str]]:
    """The results of ``codec`` in an ``rd.json`` and the images they are means over."""
    data = json.loads(Path(path).read_text())
    if codec not in data["codecs"]:
        raise click.UsageError(f"{path} has no {codec!r} curve (has {', '.join(data['codecs'])})")
    return data["codecs"][codec], data["images"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("old", type=click.Path(exists=True, dir_okay=False))
@click.argument("new", type=click.Path(exists=True, dir_okay=False))
@click.option("--codec", default="aecodec", show_default=True, help="Curve to compare in both files.")
def main(old: str, new: str, codec: str) -> None:
    """Print the BD-rate (PSNR and MS-SSIM dB) of NEW's curve against OLD's."""
    (a, images_a), (b, images_b) = curve(Path(old), codec), curve(Path(new), codec)
    if sorted(images_a) != sorted(images_b):
        raise click.UsageError("the two runs were measured on different images")
    psnr, msssim = bd_pair(a["results"], b["results"])
    click.echo(f"| {a['description']} | {b['description']} | {len(images_a)} | {psnr:+.2f} % | {msssim:+.2f} % |")


if __name__ == "__main__":
    main()
