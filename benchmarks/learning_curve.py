"""The learning curve of the shipped weights: one row per version, in ``docs/TRAINING.md`` and a PNG.

    python -m benchmarks.learning_curve [--rd benchmarks/results/kodak/rd.json]

Each version's Kodak points are the ones ``benchmarks.rd --record`` measured and stored in its manifest
entry; the anchors (JPEG, WebP, AVIF through Pillow) are the measured curves of the Kodak ``rd.json``.
The table between the markers in docs/TRAINING.md is rewritten; the plot goes to docs/learning_curve.png.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from codec.bench.report import bd_pair
from codec.weights.store import read_manifest

from .common import REPO_ROOT, RESULTS_DIR

ANCHORS = ("jpeg", "jpeg-optimize", "webp", "avif")
DOC = REPO_ROOT / "docs" / "TRAINING.md"
PLOT = REPO_ROOT / "docs" / "learning_curve.png"
BEGIN, END = "<!-- learning-curve:begin -->", "<!-- learning-curve:end -->"


def rows(manifest: dict, anchors: dict[str, dict]) -> list[dict]:
    """One row per model with recorded Kodak points, in order of training steps."""
    out = []
    for model_id, entry in manifest["models"].items():
        kodak, training = entry.get("kodak"), entry.get("training", {})
        if not kodak:
            continue
        bd = {name: bd_pair(curve, kodak)[0] for name, curve in anchors.items()}
        out.append(
            {
                "model": model_id,
                "kind": entry.get("kind", "gain-msh"),
                "steps": int(training.get("steps") or 0),
                "minutes": float(training.get("seconds") or 0) / 60,
                "device": training.get("device", "?"),
                "bpp": (min(kodak["bpp"]), max(kodak["bpp"])),
                "psnr_top": max(kodak["psnr-rgb"]),
                "bd": bd,
            }
        )
    return sorted(out, key=lambda r: r["steps"])


def _anchor_names(table: list[dict]) -> list[str]:
    return list(table[0]["bd"]) if table else []


def markdown(table: list[dict], default: str) -> str:
    names = _anchor_names(table)
    head = "| model | steps | minutes | device | Kodak bpp span | top PSNR | " + " | ".join(
        f"BD-rate vs {a}" for a in names
    )
    lines = [head + " |", "|---|---:|---:|---|---|---:|" + "---:|" * len(names)]
    for r in table:
        name = f"**{r['model']}** (default)" if r["model"] == default else r["model"]
        cells = " | ".join("n/a" if math.isnan(r["bd"][a]) else f"{r['bd'][a]:+.1f} %" for a in names)
        lines.append(
            f"| {name} | {r['steps']:,} | {r['minutes']:.0f} | {r['device']} | "
            f"{r['bpp'][0]:.3f}–{r['bpp'][1]:.3f} | {r['psnr_top']:.2f} dB | {cells} |"
        )
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [r["steps"] / 1000 for r in table]
    for a in _anchor_names(table):
        ax.plot(steps, [r["bd"][a] for r in table], marker="o", label=f"against {a}")
    for r, x in zip(table, steps, strict=True):
        ax.annotate(r["model"].rsplit("-", 1)[-1], (x, r["bd"]["jpeg"]), textcoords="offset points", xytext=(4, -12))
    ax.axhline(0, color="gray", lw=0.8)
    ax.margins(x=0.08)
    ax.set_xlabel("cumulative training steps (thousands)")
    ax.set_ylabel("Kodak BD-rate, PSNR (%)  — lower is better")
    ax.set_title("aecodec learning curve (shipped weights)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--rd", "rd_json", type=click.Path(exists=True, dir_okay=False), default=str(RESULTS_DIR / "kodak" / "rd.json")
)
def main(rd_json: str) -> None:
    """Rewrite the learning-curve table in docs/TRAINING.md and its plot."""
    measured = json.loads(Path(rd_json).read_text())["codecs"]
    anchors = {a: measured[a]["results"] for a in ANCHORS if a in measured}
    manifest = read_manifest()
    table = rows(manifest, anchors)
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise click.ClickException(f"{DOC} lacks the {BEGIN} / {END} markers")
    pre, rest = text.split(BEGIN, 1)
    post = rest.split(END, 1)[1]
    DOC.write_text(pre + BEGIN + "\n" + markdown(table, manifest.get("default", "")) + "\n" + END + post)
    plot(table, PLOT)
    click.echo(markdown(table, manifest.get("default", "")))


if __name__ == "__main__":
    main()
