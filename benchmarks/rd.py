"""Rate-distortion benchmark: aecodec against Pillow's JPEG/WebP/AVIF (and JPEG XL) on a folder of images.

    python -m benchmarks.rd --data data/kodak [--limit N] [--qualities 1,2,...] [--device auto|cpu|cuda]
        [--codecs aecodec] [--effort 0,2,3]

Writes ``benchmarks/results/<dataset>/``: ``rd.json`` (CompressAI's results format, one entry per
codec), ``rd.csv``, ``rd_per_image.csv``, ``rd.png`` and ``bdrate.md``. Kodak runs also draw the
published curves from ``--anchors``. ``--effort`` runs aecodec at each encoder effort level (named
``aecodec-effortE``; 0 is plain ``aecodec``) and adds a BD-rate table of each against effort 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

from codec.bench import coders, parse_names, report
from codec.bench.rd import CODEC_NAMES, build_coders, measure_images, report_files
from codec.core.errors import AecError
from codec.format.files import write_atomic

from .anchors import load_anchors
from .common import ALL_QUALITIES_HELP, REPO_ROOT, RESULTS_DIR, parse_floats, select_images, use_weights

DEFAULT_ANCHORS_DIR = REPO_ROOT.parent / "shared" / "anchors" / "kodak"


def record_in_manifest(curves: dict, model_id: str, dataset: str, images: int) -> None:
    """Store aecodec's measured points in its weights manifest entry (under the dataset's name)."""
    from codec.training.export import write_manifest_entry
    from codec.weights.store import read_manifest, weights_dir

    entry = read_manifest()["models"][model_id]
    r = curves["aecodec"]
    entry[dataset] = {
        **{k: r[k] for k in ("quality", "bpp", "psnr-rgb", "ms-ssim-rgb")},
        "source": f"benchmarks/results/{dataset}/rd.json (bpp from whole .aec files, PSNR on 8-bit RGB, "
        f"mean of {images} images)",
    }
    write_manifest_entry(weights_dir(), model_id, entry, make_default=False)


def reuse_curves(path: Path, curves: dict, descriptions: dict, notes: list[str], images: list[str]) -> None:
    """Add the curves of codecs not measured in this run from an earlier ``rd.json`` of the same images.

    Classical anchors do not change between runs with the same Pillow; re-measuring them costs most of
    a Kodak run on two cores. The report's notes say which curves came from where.
    """
    old = json.loads(Path(path).read_text())
    if sorted(old.get("images", [])) != sorted(images):
        raise click.UsageError(f"{path} was measured on other images")
    reused = [c for c in old["codecs"] if c not in curves]
    for c in reused:
        curves[c] = old["codecs"][c]["results"]
        descriptions[c] = old["codecs"][c]["description"]
    if reused:
        pillow = old.get("environment", {}).get("pillow", "?")
        notes.append(f"curves of {', '.join(reused)} reused from an earlier run ({path}, Pillow {pillow})")


def run(
    data: str | Path,
    out: str | Path | None = None,
    name: str | None = None,
    limit: int | None = None,
    qualities: list[float] | None = None,
    pillow_qualities: list[float] | None = None,
    device: str = "auto",
    jxl: bool = True,
    anchors: str | Path | None = None,
    anchor_set: str = "default",
    record: bool = False,
    model_id: str | None = None,
    only: tuple[str, ...] = CODEC_NAMES,
    reuse: str | Path | None = None,
    efforts: tuple[int, ...] = (0,),
) -> Path:
    """Run the benchmark and write its report; returns the output folder."""
    name = name or Path(data).resolve().name
    out = Path(out) if out else RESULTS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    paths = select_images(data, limit)
    todo, descriptions, notes = build_coders(
        qualities,
        pillow_qualities or list(coders.PILLOW_QUALITIES),
        device,
        jxl,
        model_id,
        only,
        efforts,
    )
    records = measure_images(tqdm(paths, desc=f"rd {name}", unit="img"), todo, notes)
    curves = report.aggregate(records)
    if reuse:
        reuse_curves(Path(reuse), curves, descriptions, notes, [p.name for p in paths])
    anchor_dir = Path(anchors) if anchors else DEFAULT_ANCHORS_DIR
    published = load_anchors(anchor_dir, anchor_set) if "kodak" in name.lower() and anchor_dir.is_dir() else {}
    images = [p.name for p in paths]
    for file, data in report_files(name, images, records, curves, descriptions, notes, published).items():
        write_atomic(out / file, data, force=True)
    if record:
        from codec.weights.store import load_codec

        record_in_manifest(curves, load_codec(model_id, device=device).model_id, name, len(paths))
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: benchmarks/results/<name>].")
@click.option("--name", help="Dataset name [default: the data folder's name].")
@click.option("--limit", type=int, help="Use only the first N images.")
@click.option("--qualities", help=ALL_QUALITIES_HELP)
@click.option(
    "--pillow-qualities",
    default=",".join(map(str, coders.PILLOW_QUALITIES)),
    show_default=True,
    help="Quality sweep of the Pillow codecs.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (sets AECODEC_WEIGHTS).")
@click.option("--jxl/--no-jxl", default=True, show_default=True, help="JPEG XL when pillow_jxl is installed.")
@click.option(
    "--anchors",
    type=click.Path(file_okay=False),
    help="Published curves for Kodak [default: ../shared/anchors/kodak beside the repo].",
)
@click.option("--anchor-set", type=click.Choice(["default", "all"]), default="default", show_default=True)
@click.option("--record", is_flag=True, help="Store aecodec's points in the weights manifest (field = dataset name).")
@click.option("--model", "model_id", help="aecodec model id [default: the manifest's default].")
@click.option("--codecs", default=",".join(CODEC_NAMES), show_default=True, help="Codecs to measure (comma list).")
@click.option(
    "--reuse",
    type=click.Path(exists=True, dir_okay=False),
    help="Take the curves of codecs not measured now from this earlier rd.json (same images).",
)
@click.option("--effort", "efforts", default="0", show_default=True, help="aecodec encoder effort levels, e.g. 0,2,3.")
def main(
    data,
    out,
    name,
    limit,
    qualities,
    pillow_qualities,
    device,
    weights,
    jxl,
    anchors,
    anchor_set,
    record,
    model_id,
    codecs,
    reuse,
    efforts,
) -> None:
    """Rate-distortion benchmark of aecodec against Pillow's codecs."""
    use_weights(weights)
    folder = run(
        data,
        out,
        name,
        limit,
        parse_floats(qualities) if qualities else None,
        parse_floats(pillow_qualities),
        device,
        jxl,
        anchors,
        anchor_set,
        record,
        model_id,
        _codec_names(codecs),
        reuse,
        _effort_levels(efforts),
    )
    click.echo(f"wrote {folder}")
    click.echo((folder / "bdrate.md").read_text())


def _codec_names(text: str) -> tuple[str, ...]:
    try:
        return parse_names(text, CODEC_NAMES)
    except AecError as e:
        raise click.BadParameter(str(e), param_hint="--codecs") from None


def _effort_levels(text: str) -> tuple[int, ...]:
    from codec.core.quality import effort_iterations

    try:
        levels = tuple(int(t) for t in text.split(",") if t.strip())
        for e in levels:
            effort_iterations(e)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--effort") from None
    if not levels:
        raise click.BadParameter("no effort level given", param_hint="--effort")
    return levels


if __name__ == "__main__":
    main()
