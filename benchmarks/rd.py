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
import time
from pathlib import Path

import click
import numpy as np
import PIL
import torch
from tqdm import tqdm

from codec.data import load_rgb

from . import coders, metrics, report
from .common import (
    ALL_QUALITIES_HELP,
    REPO_ROOT,
    RESULTS_DIR,
    all_qualities,
    parse_floats,
    select_images,
    use_weights,
    write_json,
)

DEFAULT_ANCHORS_DIR = REPO_ROOT.parent / "shared" / "anchors" / "kodak"


def measure(coder: coders.Coder, rgb: np.ndarray) -> dict:
    """One codec setting on one image: real file size, quality metrics and wall-clock times."""
    t0 = time.perf_counter()
    data = coder.encode(rgb)
    t1 = time.perf_counter()
    out = coder.decode(data)
    t2 = time.perf_counter()
    h, w = rgb.shape[:2]
    if out.shape != rgb.shape:
        raise RuntimeError(f"{coder.codec} q{coder.quality:g} decoded {out.shape}, expected {rgb.shape}")
    ssim = metrics.ms_ssim(rgb, out)
    return {
        "codec": coder.codec,
        "quality": coder.quality,
        "bytes": len(data),
        "bpp": metrics.bpp(len(data), h, w),
        "psnr": metrics.psnr(rgb, out),
        "ms_ssim": ssim,
        "enc_s": t1 - t0,
        "dec_s": t2 - t1,
    }


#: Every codec name ``--codecs`` accepts: aecodec and Pillow's.
CODEC_NAMES = ("aecodec", *(pc.name for pc in coders.PILLOW_CODECS))


def build_coders(
    qualities: list[float] | None,
    pillow_qualities: list[float],
    device: str,
    jxl: bool,
    model_id: str | None = None,
    only: tuple[str, ...] = CODEC_NAMES,
    efforts: tuple[int, ...] = (0,),
) -> tuple[list[coders.Coder], dict[str, str], list[str]]:
    """Every (codec, setting) to run, the codec descriptions, and notes on what was skipped.

    ``efforts`` are aecodec's encoder effort levels, each its own curve (``coders.aecodec_name``).
    ``qualities`` None: every integer quality of the model's range.
    """
    from codec.weights import load_codec

    todo, descriptions, notes = [], {}, []
    if "aecodec" in only:
        codec = load_codec(model_id, device=device)
        for e in efforts:
            todo += coders.aecodec_coders(codec, qualities or all_qualities(codec.model.levels), e)
            descriptions[coders.aecodec_name(e)] = f"aecodec, model {codec.model_id} on {codec.device}, effort {e}"
    for pc in coders.PILLOW_CODECS:
        if pc.name not in only:
            continue
        reason = "JPEG XL skipped (--no-jxl)" if pc.format == "JXL" and not jxl else coders.unavailable_reason(pc)
        if reason:
            notes.append(reason)
            continue
        todo += coders.pillow_coders(pc, pillow_qualities)
        descriptions[pc.name] = pc.description
    return todo, descriptions, notes


def record_in_manifest(curves: dict, model_id: str, dataset: str, images: int) -> None:
    """Store aecodec's measured points in its weights manifest entry (under the dataset's name)."""
    from codec.export import write_manifest_entry
    from codec.weights import read_manifest, weights_dir

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


def warm_up(todo: list[coders.Coder]) -> None:
    """One untimed pass per codec on a small image, so first-call setup does not land in the times."""
    rgb = np.full((64, 64, 3), 128, np.uint8)
    for name in dict.fromkeys(c.codec for c in todo):
        c = next(c for c in todo if c.codec == name)
        c.decode(c.encode(rgb))


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
    warm_up(todo)
    records, short_side = [], []
    for path in tqdm(paths, desc=f"rd {name}", unit="img"):
        rgb = load_rgb(path)
        short_side.append(min(rgb.shape[:2]))
        for coder in todo:
            records.append({"image": path.name, **measure(coder, rgb)})
    if min(short_side) < metrics.MS_SSIM_MIN_SIDE:
        notes.append(
            f"MS-SSIM is NaN/null for images under {metrics.MS_SSIM_MIN_SIDE} px on the short side "
            "(pytorch-msssim default window and 5 scales)"
        )
    curves = report.aggregate(records)
    if reuse:
        reuse_curves(Path(reuse), curves, descriptions, notes, [p.name for p in paths])
    anchor_dir = Path(anchors) if anchors else DEFAULT_ANCHORS_DIR
    published = report.load_anchors(anchor_dir, anchor_set) if "kodak" in name.lower() and anchor_dir.is_dir() else {}
    title = f"{name} ({len(paths)} images)"
    env = {"torch": torch.__version__, "pillow": PIL.__version__, "threads": torch.get_num_threads()}
    write_json(
        out / "rd.json",
        {
            "dataset": name,
            "images": [p.name for p in paths],
            "notes": notes,
            "environment": env,
            "codecs": {c: {"name": c, "description": descriptions[c], "results": r} for c, r in curves.items()},
        },
    )
    report.write_csv(out / "rd.csv", curves)
    report.write_per_image_csv(out / "rd_per_image.csv", records)
    report.plot_rd(out / "rd.png", curves, published, title)
    (out / "bdrate.md").write_text(report.bdrate_markdown(curves, published, title, notes))
    if record:
        from codec.weights import load_codec

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
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in CODEC_NAMES]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown codec {unknown}; choose from {', '.join(CODEC_NAMES)}", param_hint="--codecs"
        )
    return names


def _effort_levels(text: str) -> tuple[int, ...]:
    from codec.quality import effort_iterations

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
