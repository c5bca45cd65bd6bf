"""The rate-distortion run: every (codec, setting) on every image, then the report files.

Shared by ``aecodec bench`` and ``python -m benchmarks.rd`` (which adds published curves, reuse of
earlier runs and the weights manifest), so both measure and write the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core.errors import AecError
from ..format import files
from . import coders, metrics, report

#: Every codec name a run accepts: aecodec and Pillow's.
CODEC_NAMES = ("aecodec", *(pc.name for pc in coders.PILLOW_CODECS))
#: The files a run writes into its output folder, by role.
REPORT_FILES = {
    "json": "rd.json",
    "csv": "rd.csv",
    "per_image": "rd_per_image.csv",
    "plot": "rd.png",
    "bdrate": "bdrate.md",
}


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
    return {
        "codec": coder.codec,
        "quality": coder.quality,
        "bytes": len(data),
        "bpp": metrics.bpp(len(data), h, w),
        "psnr": metrics.psnr(rgb, out),
        "ms_ssim": metrics.ms_ssim(rgb, out),
        "enc_s": t1 - t0,
        "dec_s": t2 - t1,
    }


def build_coders(
    qualities: list[float] | None,
    pillow_qualities: list[float],
    device: str,
    jxl: bool = True,
    model_id: str | None = None,
    only: tuple[str, ...] = CODEC_NAMES,
    efforts: tuple[int, ...] = (0,),
) -> tuple[list[coders.Coder], dict[str, str], list[str]]:
    """Every (codec, setting) to run, the codec descriptions, and notes on what was skipped.

    ``efforts`` are aecodec's encoder effort levels, each its own curve (``coders.aecodec_name``).
    ``qualities`` None: every integer quality of the model's range.
    """
    from ..core.quality import integer_qualities
    from ..weights.store import load_codec

    todo, descriptions, notes = [], {}, []
    if "aecodec" in only:
        codec = load_codec(model_id, device=device)
        for e in efforts:
            sweep = qualities or integer_qualities(codec.model.levels, codec.model.qualities)
            todo += coders.aecodec_coders(codec, sweep, e)
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


def warm_up(todo: list[coders.Coder]) -> None:
    """One untimed pass per codec on a small image, so first-call setup does not land in the times."""
    rgb = np.full((64, 64, 3), 128, np.uint8)
    for name in dict.fromkeys(c.codec for c in todo):
        c = next(c for c in todo if c.codec == name)
        c.decode(c.encode(rgb))


def measure_images(
    paths: Iterable[Path], todo: list[coders.Coder], notes: list[str], failed: list[str] | None = None
) -> list[dict]:
    """Per-image records of every setting on every image (``paths`` may be a progress bar over the list).

    An unreadable image is an AecError naming it; with ``failed`` it is instead added there (one line naming
    it) and the other images still run. A note is added when some image is too small for MS-SSIM (its values
    are NaN, null in JSON).
    """
    warm_up(todo)
    records, short_side = [], []
    for path in paths:
        try:
            rgb = np.asarray(files.open_image(files.read_bytes(str(path)), str(path)).convert("RGB"))
        except AecError as e:  # its message names the path
            if failed is None:
                raise
            failed.append(str(e))
            continue
        short_side.append(min(rgb.shape[:2]))
        records += [{"image": path.name, **measure(coder, rgb)} for coder in todo]
    if short_side and min(short_side) < metrics.MS_SSIM_MIN_SIDE:
        notes.append(
            f"MS-SSIM is NaN/null for images under {metrics.MS_SSIM_MIN_SIDE} px on the short side "
            "(pytorch-msssim default window and 5 scales)"
        )
    return records


def environment() -> dict:
    """The library versions and threads a run's numbers depend on."""
    import PIL
    import torch

    return {"torch": torch.__version__, "pillow": PIL.__version__, "threads": torch.get_num_threads()}


def report_files(
    dataset: str,
    images: list[str],
    records: list[dict],
    curves: dict[str, dict],
    descriptions: dict[str, str],
    notes: list[str],
    published: dict[str, dict] | None = None,
) -> dict[str, bytes]:
    """The content of each ``REPORT_FILES`` file, keyed by file name.

    ``curves`` are usually ``report.aggregate(records)``, possibly with curves of earlier runs added;
    ``published`` curves are drawn dashed and enter the BD-rate tables.
    """
    published = published or {}
    title = f"{dataset} ({len(images)} images)"
    rd_json = {
        "dataset": dataset,
        "images": images,
        "notes": notes,
        "environment": environment(),
        "codecs": {c: {"name": c, "description": descriptions[c], "results": r} for c, r in curves.items()},
    }
    content = {
        "json": report.json_text(rd_json).encode(),
        "csv": report.curves_csv(curves).encode(),
        "per_image": report.per_image_csv(records).encode(),
        "plot": report.plot_png(curves, published, title),
        "bdrate": report.bdrate_markdown(curves, published, title, notes).encode(),
    }
    return {REPORT_FILES[role]: data for role, data in content.items()}
