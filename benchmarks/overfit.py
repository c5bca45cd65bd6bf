"""The per-image (overfit) kind against the default model, WebP and AVIF on the same crops.

    python -m benchmarks.overfit run [--iterations 1000,3000] [--qualities 2,4,6,8] [--out DIR]
    python -m benchmarks.overfit full [--images kodim01,...] [--qualities 2,4,6,8] [--effort 2] [--out DIR]
    python -m benchmarks.overfit report [--out DIR] [--md benchmarks/results/overfit.md]
    python -m benchmarks.overfit tune --set RATE_WARMUP=0,0.1 [--images ...] [--iterations N]  (val crops)
    python -m benchmarks.overfit decode [--iterations 200] [-q 4] [--reference]   (decode speed, issue 34)

``run`` fits the central 384×384 crops of the first four Kodak images (evaluation only) at each
iteration count and quality, through the public API (``codec.encode(..., model="overfit")``), and
appends each result to ``DIR/overfit.json`` as it completes: a killed run resumes where it stopped.
It takes hours on two cores: run it in the background, one process per core (``--images``), each on one
thread (a 2-thread fit beside other work measured 8x slower per iteration than alone: its threads wait on
each other). ``report`` adds the references on the same crops (the default model at q1-10, Pillow WebP
and AVIF), the BD-rates and the timings, and writes the markdown table. Parameter bits are reported apart
from latent bits: they are a fixed cost per image.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

CROP = 384
IMAGES = ("kodim01", "kodim02", "kodim03", "kodim04")
DEFAULT_OUT = Path("runs/overfit-bench")


def crops(kodak: Path) -> dict[str, np.ndarray]:
    out = {}
    for name in IMAGES:
        rgb = np.asarray(Image.open(kodak / f"{name}.png").convert("RGB"))
        h, w = rgb.shape[:2]
        top, left = (h - CROP) // 2, (w - CROP) // 2
        out[name] = np.ascontiguousarray(rgb[top : top + CROP, left : left + CROP])
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def _append(path: Path, record: dict) -> None:
    """Add one record; a lock beside the file lets several ``run`` processes share it (one per core)."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = _load(path)
        records.append(record)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(path)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


@click.group()
def main() -> None:
    """Benchmark of the overfit kind (see the module docstring)."""


@main.command()
@click.option("--kodak", type=click.Path(path_type=Path), default=Path("../shared/data/kodak"))
@click.option("--iterations", default="1000,3000", show_default=True)
@click.option("--qualities", default="2,4,6,8", show_default=True)
@click.option("--images", default=",".join(IMAGES), show_default=True, help="A subset: one process per core.")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="1: robust on a shared machine (see below).")
def run(kodak: Path, iterations: str, qualities: str, images: str, out: Path, threads: int) -> None:
    """Fit and code every crop at every (iterations, quality); resumable."""
    import torch

    import codec

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "overfit.json"
    done = {(r["image"], r["iterations"], r["quality"]) for r in _load(path)}
    chosen = set(images.split(","))
    if not chosen <= set(IMAGES):
        raise click.BadParameter(f"choose among {', '.join(IMAGES)}", param_hint="--images")
    selected = {name: rgb for name, rgb in crops(kodak).items() if name in chosen}
    fits: list = []
    for its in _ints(iterations):  # a whole crop's curve before the next crop: partial runs still give BD-rates
        for name, rgb in selected.items():
            for q in _ints(qualities):
                if (name, its, q) in done:
                    continue
                fits.clear()
                t0 = time.perf_counter()
                data = codec.encode(rgb, q, model="overfit", iterations=its, on_fit=fits.append)
                t1 = time.perf_counter()
                decoded = np.asarray(codec.decode(data))
                t2 = time.perf_counter()
                (fit,) = fits
                record = {
                    "image": name,
                    "iterations": its,
                    "quality": q,
                    "bytes": len(data),
                    "bpp": len(data) * 8 / rgb.shape[0] / rgb.shape[1],
                    "bpp_params_estimated": fit.bpp_params,
                    "bpp_latents_estimated": fit.bpp_latents,
                    "psnr": _psnr(rgb, decoded),
                    "encode_s": t1 - t0,
                    "decode_s": t2 - t1,
                    "fit_s": fit.seconds,
                }
                _append(path, record)
                click.echo(json.dumps(record), err=True)


@main.command()
@click.option("--kodak", type=click.Path(path_type=Path), default=Path("../shared/data/kodak"))
@click.option("--images", default=",".join(IMAGES), show_default=True, help="Whole images; one process per core.")
@click.option("--qualities", default="2,4,6,8", show_default=True)
@click.option("--effort", type=int, default=2, show_default=True, help="The preset (2: about ten minutes).")
@click.option("--iterations", type=int, default=None, help="Instead of the preset's own.")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
def full(
    kodak: Path, images: str, qualities: str, effort: int, iterations: int | None, out: Path, threads: int
) -> None:
    """Whole Kodak images as a user of ``--effort`` gets them: bytes, PSNR, encode and decode times
    (appended to DIR/full.json; resumable)."""
    import torch

    import codec
    from codec.models.overfit.fit import preset_for

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    its = preset_for(effort, iterations).iterations
    done = {(r["image"], r["iterations"], r["quality"]) for r in _load(out / "full.json")}
    for image in images.split(","):
        rgb = np.asarray(Image.open(kodak / f"{image}.png").convert("RGB"))
        for q in _ints(qualities):
            if (image, its, q) in done:
                continue
            t0 = time.perf_counter()
            data = codec.encode(rgb, q, model="overfit", effort=effort, iterations=iterations)
            t1 = time.perf_counter()
            decoded = np.asarray(codec.decode(data))
            t2 = time.perf_counter()
            record = {
                "image": image,
                "size": f"{rgb.shape[1]}x{rgb.shape[0]}",
                "quality": q,
                "effort": effort,
                "iterations": its,
                "threads": threads,
                "bytes": len(data),
                "bpp": len(data) * 8 / rgb.shape[0] / rgb.shape[1],
                "psnr": _psnr(rgb, decoded),
                "encode_s": t1 - t0,
                "decode_s": t2 - t1,
            }
            _append(out / "full.json", record)
            click.echo(json.dumps(record), err=True)


def _references(images: dict[str, np.ndarray], path: Path) -> dict[str, list[dict]]:
    """Per codec, per image, the (bpp, psnr) points of the default model (q1-10), WebP and AVIF (cached in
    ``path``; images not there yet are added)."""
    refs: dict[str, list[dict]] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: rgb for name, rgb in images.items() if name not in {p["image"] for p in refs.get("default", [])}}
    if not missing:
        return refs
    import codec
    from codec.bench.coders import pillow_decode, pillow_encode

    def point(name: str, quality: int, data: bytes, decoded: np.ndarray) -> dict:
        rgb = missing[name]
        bpp = len(data) * 8 / rgb.shape[0] / rgb.shape[1]
        return {"image": name, "quality": quality, "bpp": bpp, "psnr": _psnr(rgb, decoded)}

    for name, rgb in missing.items():
        for q in range(1, 11):
            data = codec.encode(rgb, q)
            refs.setdefault("default", []).append(point(name, q, data, np.asarray(codec.decode(data))))
        for fmt, opts in (("webp", {"method": 6}), ("avif", {})):
            for q in range(5, 100, 10):
                data = pillow_encode(rgb, fmt.upper(), q, **opts)
                refs.setdefault(fmt, []).append(point(name, q, data, pillow_decode(data)))
    path.write_text(json.dumps(refs, indent=1))
    return refs


def _full_table(kodak: Path, out: Path) -> list[str]:
    """The whole-image section of the report: BD-rates against the same images' curves, then each point."""
    from codec.bench.bdrate import bd_rate

    fulls = _load(out / "full.json")
    if not fulls:
        return []
    names = sorted({r["image"] for r in fulls})
    images = {n: np.asarray(Image.open(kodak / f"{n}.png").convert("RGB")) for n in names}
    refs = _references(images, out / "references-full.json")
    lines = [
        "",
        "Whole images (`python -m benchmarks.overfit full`, one thread each; BD-rate over the images whose",
        "qualities are all there, mean curves; records: [overfit-full-runs.json](overfit-full-runs.json), a copy of",
        "the run's `full.json`):",
        "",
        "| effort (iterations) | images | vs default model (q1-10) | vs WebP m6 | vs AVIF | encode s (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for its in sorted({r["iterations"] for r in fulls}):
        rs = [r for r in fulls if r["iterations"] == its]
        qualities = {r["quality"] for r in rs}
        done = [n for n in names if {r["quality"] for r in rs if r["image"] == n} == qualities]
        rs = [r for r in rs if r["image"] in done]
        if len(qualities) < 2 or not done:
            continue
        rate, dist = _mean_curve(rs)
        bd = {c: bd_rate(*_mean_curve([p for p in pts if p["image"] in done]), rate, dist) for c, pts in refs.items()}
        lines.append(
            f"| {rs[0].get('effort', '-')} ({its}) | {', '.join(done)} | {bd['default']:+.1f} % | {bd['webp']:+.1f} % "
            f"| {bd['avif']:+.1f} % | {np.median([r['encode_s'] for r in rs]):.0f} |"
        )
    lines += [
        "",
        "| image | q | iterations | threads | bpp | PSNR dB | encode s | s/iteration | decode s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(fulls, key=lambda r: (r["iterations"], r["image"], r["quality"])):
        lines.append(
            f"| {r['image']} {r['size']} | {r['quality']} | {r['iterations']} | {r['threads']} | {r['bpp']:.4f} | "
            f"{r['psnr']:.2f} | {r['encode_s']:.0f} | {r['encode_s'] / r['iterations']:.2f} | {r['decode_s']:.1f} |"
        )
    return lines


def _mean_curve(points: list[dict], key: str = "quality") -> tuple[list[float], list[float]]:
    """Mean bpp and mean PSNR over the images, per setting (the BD-rate convention of codec.bench)."""
    by: dict = {}
    for p in points:
        by.setdefault(p[key], []).append(p)
    settings = sorted(by)
    return [float(np.mean([p["bpp"] for p in by[s]])) for s in settings], [
        float(np.mean([p["psnr"] for p in by[s]])) for s in settings
    ]


@main.command()
@click.option("--kodak", type=click.Path(path_type=Path), default=Path("../shared/data/kodak"))
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--md", type=click.Path(path_type=Path), default=Path("benchmarks/results/overfit.md"))
def report(kodak: Path, out: Path, md: Path) -> None:
    """BD-rates and timings of the results so far, against the references on the same crops."""
    from codec.bench.bdrate import bd_rate
    from codec.models.overfit.network import Arch, macs_per_pixel
    from codec.weights.store import load_codec

    images = crops(kodak)
    refs = _references(images, out / "references.json")
    results = _load(out / "overfit.json")
    arch = Arch.from_dict(load_codec("overfit").model.arch_dict())
    lines = [
        "# The overfit kind on four Kodak crops",
        "",
        "Written by `python -m benchmarks.overfit run` then `python -m benchmarks.overfit report` (2 CPU cores,",
        f"shared with other work). Crops: the central {CROP}×{CROP} of {', '.join(IMAGES)}. Arch: {arch.as_dict()};",
        f"decoder cost {macs_per_pixel(arch, CROP, CROP):.0f} MAC/pixel on a crop, "
        f"{macs_per_pixel(arch, 512, 768):.0f} on a 768×512 image.",
        "BD-rate (PSNR, mean curves over the crops; negative: overfit needs fewer bits). Times are medians over the",
        "points (a run paused by SIGSTOP counts its pause in that point's time), one thread each.",
        "The fit: `codec/models/overfit/fit.py` `PRESETS` with `--iterations`; what each part of its recipe is",
        "worth on validation crops: [overfit-recipe.md](overfit-recipe.md); the previous fit's figures:",
        "[overfit-v1.md](overfit-v1.md). The records behind the tables: [overfit-runs.json](overfit-runs.json)",
        "(copied from the run's `overfit.json`; copied back, `run` resumes where it stopped).",
        "",
        "| iterations | crops | vs default model (q1-10) | vs WebP m6 | vs AVIF | params bpp (mean) | encode s/crop "
        "| s/iteration | decode s/crop |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for its in sorted({r["iterations"] for r in results}):
        rs = [r for r in results if r["iterations"] == its]
        qualities = {r["quality"] for r in rs}
        done = sorted(n for n in IMAGES if {r["quality"] for r in rs if r["image"] == n} == qualities)
        rs = [r for r in rs if r["image"] in done]
        if len(qualities) < 2 or not done:
            lines.append(f"| {its} | (none complete) | | | | | | | |")
            continue
        rate, dist = _mean_curve(rs)
        bd = {
            name: bd_rate(*_mean_curve([p for p in pts if p["image"] in done]), rate, dist)
            for name, pts in refs.items()
        }
        lines.append(
            f"| {its} | {len(done)} ({', '.join(done)}) | {bd['default']:+.1f} % | {bd['webp']:+.1f} % | "
            f"{bd['avif']:+.1f} % | {np.mean([r['bpp_params_estimated'] for r in rs]):.4f} | "
            f"{np.median([r['encode_s'] for r in rs]):.0f} | "
            f"{np.median([r['fit_s'] / r['iterations'] for r in rs]):.3f} | "
            f"{np.median([r['decode_s'] for r in rs]):.2f} |"
        )
    lines += [
        "",
        "Per crop (BD-rate against the same crop's curves):",
        "",
        "| iterations | crop | vs default | vs WebP | vs AVIF |",
        "|---:|---|---:|---:|---:|",
    ]
    for its in sorted({r["iterations"] for r in results}):
        for name in IMAGES:
            rs = [r for r in results if r["iterations"] == its and r["image"] == name]
            if len(rs) < 2:
                continue
            rate, dist = _mean_curve(rs)
            bd = [bd_rate(*_mean_curve([p for p in refs[c] if p["image"] == name]), rate, dist) for c in refs]
            lines.append(f"| {its} | {name} ({len(rs)} points) | " + " | ".join(f"{v:+.1f} %" for v in bd) + " |")
    lines += _full_table(kodak, out)
    lines += ["", "Points (mean over the crops):", "", "| codec | setting | bpp | PSNR dB |", "|---|---:|---:|---:|"]
    for its in sorted({r["iterations"] for r in results}):
        rs = [r for r in results if r["iterations"] == its]
        for q in sorted({r["quality"] for r in rs}):
            sel = [r for r in rs if r["quality"] == q]
            lines.append(
                f"| overfit {its} it ({len(sel)} crops) | q{q} | {np.mean([r['bpp'] for r in sel]):.4f} | "
                f"{np.mean([r['psnr'] for r in sel]):.2f} |"
            )
    for name, points in refs.items():
        rate, dist = _mean_curve(points)
        for r, d, s in zip(rate, dist, sorted({p["quality"] for p in refs[name]}), strict=True):
            lines.append(f"| {name} | {s} | {r:.4f} | {d:.2f} |")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


def _varied(preset, setting: str, value: str):
    """``preset`` with one field changed: a ``FitPreset`` field (``latent_gain``) or a phase's (``phase2.lr``;
    ``phase0+1.noise`` changes it in phases 0 and 1)."""
    from dataclasses import fields, replace

    target, _, field = setting.rpartition(".")
    if not target:
        kind = {f.name: f.type for f in fields(preset)}
        if field not in kind or field in ("phases", "iterations"):
            raise click.BadParameter(f"FitPreset has no field {field}", param_hint="--set")
        return replace(preset, **{field: type(getattr(preset, field))(value)})
    indices = {int(i) for i in target.removeprefix("phase").split("+")}
    phases = list(preset.phases)
    for index in indices:
        old = getattr(phases[index], field)
        new = tuple(float(v) for v in value.split("/")) if isinstance(old, tuple) else type(old)(value)
        phases[index] = replace(phases[index], **{field: new})
    return replace(preset, phases=tuple(phases))


def _variants(setting: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(label, [(field, value), …]) per variant: ``F=V1,V2`` is one variant per value; ``F=V;G=W`` is one
    variant changing several fields."""
    if ";" in setting:
        return [(setting, [tuple(part.split("=", 1)) for part in setting.split(";")])]
    name, _, values = setting.partition("=")
    return [(f"{name}={value}", [(name, value)]) for value in values.split(",")]


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=Path("../shared/data/val"), show_default=True)
@click.option("--images", default="wikiphoto_004,mcmaster_03", show_default=True)
@click.option("--crop", type=int, default=256, show_default=True)
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--qualities", default="2,6", show_default=True)
@click.option(
    "--set",
    "settings",
    multiple=True,
    required=True,
    help="FIELD=V1,V2: a field of the fit's preset (latent_gain=8,16) or of phases (phase2.lr=0.01,0.02; "
    "tuples as a/b: phase2.noise=0.25/0.1; phase0+1.lr: both); F=V;G=W: one variant changing both.",
)
def tune(data: Path, images: str, crop: int, iterations: int, qualities: str, settings: tuple[str, ...]) -> None:
    """A/B of the fit's preset on validation crops (never Kodak): the coded loss of each value, one line each.

    The loss is that of what would be coded (estimated bpp with the parameter bits + λ·255²·MSE), so lower is
    better whatever the mix of rate and distortion. One thread, deterministic (seed 0). Each value is a new
    preset passed to the fit: nothing global is changed.
    """
    from dataclasses import replace

    import torch

    from codec.models.overfit import fit as F
    from codec.models.overfit.network import Arch

    torch.set_num_threads(1)
    base = replace(F.PRESETS[0], iterations=iterations)
    for setting in settings:
        for name_img in images.split(","):
            rgb = np.asarray(Image.open(data / f"{name_img}.png").convert("RGB"))
            h, w = rgb.shape[:2]
            top, left = (h - crop) // 2, (w - crop) // 2
            x = torch.from_numpy(rgb[top : top + crop, left : left + crop].copy()).permute(2, 0, 1)[None] / 255.0
            for q in _ints(qualities):
                for label, changes in _variants(setting):
                    preset = base
                    for name, value in changes:
                        preset = _varied(preset, name, value)
                    t0 = time.perf_counter()
                    result = F.fit(x, q, Arch(), preset, parallel=False)
                    click.echo(
                        f"{label} {name_img} q{q} {iterations} it: loss {result.loss:.4f} "
                        f"bpp {result.bpp_latents + result.bpp_params:.4f} PSNR {result.psnr:.2f} "
                        f"({time.perf_counter() - t0:.0f} s)"
                    )


def _timed(fn, repeat: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process) of ``fn()`` over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


#: Runs ``aecodec decode`` and prints its wall seconds, CPU seconds and peak RSS (MB) as JSON. Started as a small
#: process of its own: a child forked from this one (which holds torch and the models) would count this
#: process's memory in its peak RSS, even across the exec.
_LAUNCHER = """
import json, os, subprocess, sys, time
t = time.perf_counter()
child = subprocess.Popen([sys.executable, "-m", "codec.cli", "decode", *sys.argv[1:]])
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps([time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, status]))
"""


def _command(path: Path, repeat: int) -> dict:
    """Median wall and CPU seconds (the child's user + system) and the peak RSS of ``aecodec decode`` on ``path``."""
    import subprocess
    import sys
    import tempfile

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            args = [sys.executable, "-c", _LAUNCHER, str(path), "-o", f"{tmp}/out.png", "--force"]
            *found, status = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
            if status:
                raise RuntimeError(f"aecodec decode {path} failed")
            runs.append(found)
    wall, cpu, rss = (float(np.median([r[i] for r in runs])) for i in range(3))
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss}


def _decode_inputs(kodak: Path, out: Path, quality: int, iterations: int) -> dict[str, dict[str, Path]]:
    """name → {kind: file}: the 384² crop of kodim01 and kodim23 (768×512), fitted and with the default model;
    fitted files are kept in ``out`` (a fit takes minutes) and made again only when missing."""
    import codec

    rgb23 = np.asarray(Image.open(kodak / "kodim23.png").convert("RGB"))
    images = {"kodim01 384² crop": crops(kodak)["kodim01"], "kodim23 768×512": rgb23}
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    for name, rgb in images.items():
        stem = name.split()[0] + ("-crop" if "crop" in name else "")
        fitted, default = out / f"{stem}-q{quality}-{iterations}it.aec", out / f"{stem}-q{quality}-default.aec"
        if not fitted.exists():
            fitted.write_bytes(codec.encode(rgb, quality, model="overfit", iterations=iterations))
        if not default.exists():
            default.write_bytes(codec.encode(rgb, quality))
        files[name] = {"overfit": fitted, "default": default}
    return files


@main.command()
@click.option("--kodak", type=click.Path(path_type=Path), default=Path("../shared/data/kodak"))
@click.option("-q", "--quality", type=int, default=4, show_default=True)
@click.option("--iterations", type=int, default=200, show_default=True, help="Of the fitted files (made once).")
@click.option("--repeat", type=int, default=3, show_default=True, help="Runs per measurement (the median).")
@click.option("--reference", is_flag=True, help="Also time the torch reference decoder (seconds per image).")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT / "decode", show_default=True)
def decode(kodak: Path, quality: int, iterations: int, repeat: int, reference: bool, out: Path) -> None:
    """Decode speed of fitted files against the default model on the same images: in process (``codec.decode``,
    wall and CPU seconds, MP/s) and as whole ``aecodec decode`` commands (wall, CPU, peak RSS)."""
    import codec
    from codec.format import bitstream as bs
    from codec.models.overfit import coding, fast
    from codec.models.overfit.network import Arch

    rows = []
    for name, paths in _decode_inputs(kodak, out, quality, iterations).items():
        for kind, path in paths.items():
            data = path.read_bytes()
            f = bs.unpack(data)
            codec.decode(data)  # warm: the model and the tables are loaded once per process
            wall, cpu = _timed(lambda data=data: codec.decode(data), repeat)
            row = {"image": name, "kind": kind, "bytes": len(data), "in_process_wall_s": wall, "in_process_cpu_s": cpu}
            row["megapixels_per_s"] = f.width * f.height / 1e6 / wall
            if kind == "overfit" and reference and fast.available():
                (st,) = f.streams
                row["reference_wall_s"], row["reference_cpu_s"] = _timed(
                    lambda st=st, f=f: coding.decode_image(st, f.height, f.width, Arch()), 1
                )
            row |= {f"command_{k}": v for k, v in _command(path, repeat).items()}
            rows.append(row)
            click.echo(json.dumps(row), err=True)
    (out / "decode.json").write_text(json.dumps(rows, indent=1) + "\n")
    click.echo(_decode_table(rows))


def _decode_table(rows: list[dict]) -> str:
    head = "| image | kind | bytes | in process s (CPU s) | MP/s | ×default | command s (CPU s) | ×default | RSS MB"
    lines = [head + " |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    default = {r["image"]: r for r in rows if r["kind"] == "default"}
    for r in rows:
        d = default.get(r["image"], r)
        wall, cmd = r["in_process_wall_s"], r["command_wall_s"]
        lines.append(
            f"| {r['image']} | {r['kind']} | {r['bytes']:,} | {wall:.3f} ({r['in_process_cpu_s']:.3f}) "
            f"| {r['megapixels_per_s']:.2f} | {wall / d['in_process_wall_s']:.2f} "
            f"| {cmd:.2f} ({r['command_cpu_s']:.2f}) | {cmd / d['command_wall_s']:.2f} "
            f"| {r['command_peak_rss_mb']:.0f} |"
        )
    for r in rows:
        if "reference_wall_s" in r:
            ref = f"{r['reference_wall_s']:.2f} s ({r['reference_cpu_s']:.2f} s CPU)"
            lines.append(f"torch reference, {r['image']}: {ref}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
