"""Speed benchmark: encode/decode time, MP/s and peak memory of aecodec, CompressAI's stock coding path
on the same network, and Pillow's JPEG/WebP/AVIF, all in one process so the ratios hold.

    python -m benchmarks.speed --data data/kodak [--limit N] [--repeats R] [--device auto|cpu|cuda]

Writes ``benchmarks/results/speed.json`` and ``speed.md``.
"""

from __future__ import annotations

import copy
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import PIL
import torch
from tqdm import tqdm

from codec.bench import coders
from codec.core import engine
from codec.core.quality import DEFAULT_QUALITY
from codec.core.tensors import psnr, to_tensor, to_uint8
from codec.models.hyperprior import GainHyperprior
from codec.training.data import load_rgb

from .common import RESULTS_DIR, devices, select_images, use_weights, write_json


# -- CompressAI's reference path -------------------------------------------------------------
@torch.inference_mode()
def reference_compress(model: GainHyperprior, x: torch.Tensor, quality: float) -> dict:
    """``MeanScaleHyperprior.compress()`` as CompressAI writes it, on our network and gains.

    The entropy coding goes through ``EntropyBottleneck.compress`` / ``GaussianConditional.compress``,
    which rebuild the CDF lists on every call and decode ``z`` again inside compress, where
    ``codec.core.engine.RansTables`` converts its tables once per model.
    """
    y_gain, z_gain = model.gains(quality)
    y = model.g_a(x).float()
    z = model.h_a(y).float() * z_gain
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
    scales, means = model.hyper_params(z_hat, z_gain, y_gain)
    indexes = model.gaussian_conditional.build_indexes(scales)
    y_strings = model.gaussian_conditional.compress(y * y_gain, indexes, means=means)
    return {"strings": [y_strings, z_strings], "shape": tuple(z.size()[-2:])}


@torch.inference_mode()
def reference_decompress(
    model: GainHyperprior, strings: list[list[bytes]], shape: tuple[int, int], quality: float
) -> torch.Tensor:
    """``MeanScaleHyperprior.decompress()`` on our network: (B, 3, Hp, Wp) in [0, 1], still padded."""
    y_gain, z_gain = model.gains(quality)
    z_hat = model.entropy_bottleneck.decompress(strings[1], shape)
    scales, means = model.hyper_params(z_hat, z_gain, y_gain)
    indexes = model.gaussian_conditional.build_indexes(scales)
    y_hat = model.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means)
    return model.g_s(y_hat / y_gain).float().clamp_(0, 1)


# -- memory ----------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _maxrss_kb() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, kB on Linux


class PeakMemory:
    """Peak memory of a block above the level at its start: resident set, and CUDA allocations.

    On Linux the process high-water mark is reset first (``/proc/self/clear_refs``), so the peak
    belongs to this block alone; elsewhere it is the growth of ``ru_maxrss``, which can read 0 when
    an earlier block already went higher.
    """

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._base = _status_kb("VmRSS")
            self._peak = lambda: _status_kb("VmHWM")
        except OSError:
            self._base = None
        if self._base is None:
            self._base, self._peak = _maxrss_kb(), _maxrss_kb
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        self.rss_mb = max(self._peak() - self._base, 0) / 1024
        self.cuda_mb = None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.cuda_mb = (torch.cuda.max_memory_allocated() - self._cuda_base) / 2**20


# -- methods ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A thing to time: ``encode(rgb) -> payload``, ``decode(payload) -> rgb``, ``size(payload) -> bytes``."""

    name: str
    device: str
    setting: str
    encode: Callable[[np.ndarray], object]
    decode: Callable[[object], np.ndarray]
    size: Callable[[object], int]


def model_method(device: str, quality: float, model_id: str) -> Method:
    """aecodec through its public API with another installed model (``--also``), named by its id."""
    from codec.weights.store import load_codec

    codec = load_codec(model_id, device=device)
    setting = f"q{quality:g}, model {model_id} ({codec.model.kind})"
    return api_method(f"aecodec-{device} {model_id}", device, setting, codec, quality)


def api_method(name: str, device: str, setting: str, codec, quality: float) -> Method:
    """Encode and decode through ``codec.api`` with ``codec``: what a user of the package gets."""
    from codec import api

    return Method(
        name,
        device,
        setting,
        lambda rgb: api.encode(rgb, quality, codec=codec),
        lambda data: np.asarray(api.decode(data, codec=codec).convert("RGB")),
        len,
    )


def model_ratios(summary: dict[str, dict], devs: list[str], also: tuple[str, ...]) -> dict[str, dict]:
    """Each ``--also`` model's time per image as a multiple of the default model's, per device."""
    out = {}
    for d in devs:
        base = summary[f"aecodec-{d}"]
        for model_id in also:
            m = summary[f"aecodec-{d} {model_id}"]
            out[f"{d} {model_id}"] = {
                "encode_time_ratio": m["encode_ms"] / base["encode_ms"],
                "decode_time_ratio": m["decode_ms"] / base["decode_ms"],
            }
    return out


def reference_applies(model: torch.nn.Module) -> bool:
    """Whether CompressAI's stock path (``reference_compress``) runs the same network as the model: it is
    the gained mean-scale hyperprior alone, so for another kind (the context model adds its context nets)
    it would time a different, cheaper network (for ctx v1 the two decodes were 33.5 dB apart)."""
    return type(model) is GainHyperprior


def aecodec_methods(device: str, quality: float) -> list[Method]:
    """aecodec through its public API, and CompressAI's stock path on the same loaded network when that
    path is the same network (``reference_applies``)."""
    from codec.weights.store import load_codec

    codec = load_codec(device=device)
    ours = api_method(f"aecodec-{device}", device, f"q{quality:g}, model {codec.model_id}", codec, quality)
    if not reference_applies(codec.model):
        return [ours]
    # The stock path runs as a CompressAI user would: a copy of the network in the default layout.
    model, dev = copy.deepcopy(codec.model).to(memory_format=torch.contiguous_format), codec.device

    def ref_encode(rgb: np.ndarray) -> tuple:
        out = reference_compress(model, to_tensor(rgb, model.stride).to(dev), quality)
        return out, rgb.shape[:2]

    def ref_decode(payload: tuple) -> np.ndarray:
        out, (h, w) = payload
        return to_uint8(reference_decompress(model, out["strings"], out["shape"], quality), h, w)

    def ref_size(payload: tuple) -> int:
        return sum(len(s) for group in payload[0]["strings"] for s in group)

    setting = f"{ours.setting} (streams only)"
    return [ours, Method(f"compressai-ref-{device}", device, setting, ref_encode, ref_decode, ref_size)]


def batched_throughput(rgbs: list[np.ndarray], device: str, quality: float, batch: int, workers: int = 0) -> dict:
    """Folder throughput of ``codec.coding.batch`` (images already in memory: PNG reading/writing excluded).

    One warm-up pass first (weights load, cuDNN autotuning), then one timed pass each way.
    """
    from codec.coding.batch import decode_arrays, encode_arrays
    from codec.weights.store import load_codec

    codec = load_codec(device=device)
    encode_arrays(rgbs[:batch], quality, codec, batch)  # warm-up (not with workers: their start-up counts)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    datas = encode_arrays(rgbs, quality, codec, batch, workers)
    sync()
    t1 = time.perf_counter()
    decode_arrays(datas, codec, batch)
    sync()
    t2 = time.perf_counter()
    mp = sum(r.shape[0] * r.shape[1] for r in rgbs) / 1e6
    return {
        "images": len(rgbs),
        "batch": batch,
        "workers": workers,
        "encode_mps": mp / (t1 - t0),
        "decode_mps": mp / (t2 - t1),
    }


def file_to_file_throughput(paths: list[Path], device: str, quality: float, batch: int) -> dict:
    """Folder throughput of the ``aecodec`` command itself: PNG in, ``.aec`` out, and back to PNG.

    Runs the CLI in this process (weights already loaded by a warm-up call), so it counts what a user
    waits for after start-up: reading and decoding PNGs, the codec, writing files.
    """
    import tempfile

    from codec.cli import main as cli

    def invoke(*args: str) -> float:
        t0 = time.perf_counter()
        try:
            cli.main(list(args), standalone_mode=False)
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"aecodec {' '.join(args[:1])} exited with {e.code}") from None
        return time.perf_counter() - t0

    common = ["--device", device, "--batch", str(batch)]
    with tempfile.TemporaryDirectory() as tmp:
        invoke("encode", str(paths[0]), "-o", f"{tmp}/warm.aec", *common)
        enc = invoke("encode", *map(str, paths), "-o", f"{tmp}/aec/", "-q", str(quality), *common)
        dec = invoke("decode", *sorted(str(p) for p in Path(tmp, "aec").iterdir()), "-o", f"{tmp}/png/", *common)
    mp = sum(np.prod(PIL.Image.open(p).size) for p in paths) / 1e6
    return {"images": len(paths), "batch": batch, "encode_mps": mp / enc, "decode_mps": mp / dec}


def _wall(cmd: list[str], repeats: int) -> float:
    """Median wall time of a command run in a fresh process (start-up included), in seconds."""
    import subprocess

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.decode().strip()}")
    return statistics.median(times)


def command_start_up(path: Path, device: str, quality: float, repeats: int) -> dict:
    """What a one-image ``aecodec encode`` / ``decode`` costs as a fresh process against the same call in
    a warm process (weights loaded, PNG read and written either way); the difference is the start-up, to be
    compared with the cost of ``import torch`` alone (python -c "import torch" minus python -c "pass")."""
    import tempfile

    from codec.cli import main as cli

    python = [sys.executable]
    opts = ["--device", device, "--threads", str(torch.get_num_threads()), "-f"]
    with tempfile.TemporaryDirectory() as tmp:
        aec, png = f"{tmp}/one.aec", f"{tmp}/one.png"
        enc = ["encode", str(path), "-o", aec, "-q", str(quality), *opts]
        dec = ["decode", aec, "-o", png, *opts]

        def warm(args: list[str]) -> float:
            times = []
            for _ in range(repeats + 1):  # the first call loads the weights
                t0 = time.perf_counter()
                try:
                    cli.main(args, standalone_mode=False)
                except SystemExit as e:
                    if e.code:
                        raise RuntimeError(f"aecodec {args[0]} exited with {e.code}") from None
                times.append(time.perf_counter() - t0)
            return statistics.median(times[1:])

        in_process = {"encode": warm(enc), "decode": warm(dec)}
        command = {
            k: _wall([*python, "-m", "codec.cli", *args], repeats) for k, args in (("encode", enc), ("decode", dec))
        }
    torch_import = _wall([*python, "-c", "import torch"], repeats) - _wall([*python, "-c", "pass"], repeats)
    return {
        "image": path.name,
        "import_torch_s": torch_import,
        **{f"{k}_in_process_s": v for k, v in in_process.items()},
        **{f"{k}_command_s": v for k, v in command.items()},
        **{f"{k}_start_up_s": command[k] - in_process[k] for k in command},
    }


#: One setting per classical codec: Pillow's default quality, WebP at the RD benchmark's method=6.
PILLOW_SPEED = {"jpeg": 75, "webp": 80, "avif": 75}


def pillow_methods() -> tuple[list[Method], list[str]]:
    out, notes = [], []
    for pc in coders.PILLOW_CODECS:
        if pc.name not in PILLOW_SPEED:
            continue
        reason = coders.unavailable_reason(pc)
        if reason:
            notes.append(reason)
            continue
        coder = coders.pillow_coders(pc, [PILLOW_SPEED[pc.name]])[0]
        opts = "".join(f", {k}={v}" for k, v in pc.options)
        out.append(Method(pc.name, "cpu", f"quality={PILLOW_SPEED[pc.name]}{opts}", coder.encode, coder.decode, len))
    return out, notes


# -- timing ----------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_one(method: Method, rgb: np.ndarray, repeats: int) -> dict:
    """Median encode and decode time over ``repeats`` after one warm-up, and the peak memory of the timed runs."""
    payload = method.encode(rgb)
    method.decode(payload)  # warm-up: allocator, cuDNN and table setup stay out of the times
    enc, dec = [], []
    with PeakMemory() as mem:
        for _ in range(repeats):
            _sync(method.device)
            t0 = time.perf_counter()
            payload = method.encode(rgb)
            _sync(method.device)
            t1 = time.perf_counter()
            out = method.decode(payload)
            _sync(method.device)
            enc.append(t1 - t0)
            dec.append(time.perf_counter() - t1)
    h, w = rgb.shape[:2]
    return {
        "encode_s": statistics.median(enc),
        "decode_s": statistics.median(dec),
        "bytes": method.size(payload),
        "pixels": h * w,
        "peak_rss_mb": mem.rss_mb,
        "peak_cuda_mb": mem.cuda_mb if method.device.startswith("cuda") else None,
        "output": out,
    }


def summarize(rows: list[dict]) -> dict:
    """Throughput over all images (total pixels / total time) and the worst per-image peak memory."""
    mp = sum(r["pixels"] for r in rows) / 1e6
    enc, dec = sum(r["encode_s"] for r in rows), sum(r["decode_s"] for r in rows)
    cuda = [r["peak_cuda_mb"] for r in rows if r["peak_cuda_mb"] is not None]
    return {
        "encode_ms": 1000 * enc / len(rows),
        "decode_ms": 1000 * dec / len(rows),
        "encode_mps": mp / enc,
        "decode_mps": mp / dec,
        "bpp": 8 * sum(r["bytes"] for r in rows) / (mp * 1e6),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "peak_cuda_mb": max(cuda) if cuda else None,
    }


def ratios(summary: dict[str, dict], devs: list[str]) -> dict[str, dict]:
    """aecodec's time per image as a fraction of CompressAI's stock path, per device (below 1: faster)."""
    out = {}
    for d in devs:
        a, r = summary.get(f"aecodec-{d}"), summary.get(f"compressai-ref-{d}")
        if a and r:
            out[d] = {
                "encode_time_ratio": r["encode_mps"] / a["encode_mps"],
                "decode_time_ratio": r["decode_mps"] / a["decode_mps"],
                "total_time_ratio": (a["encode_ms"] + a["decode_ms"]) / (r["encode_ms"] + r["decode_ms"]),
            }
    return out


def _cpu_model() -> str:
    """The CPU's model name (Linux), which decides the CPU path and explains the timings."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def environment() -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_path": "bf16 channels-last" if engine.half_dtype(torch.device("cpu")) else "fp32",
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"# Speed: {result['dataset']} ({len(result['images'])} images, median of {result['repeats']} runs each)",
        "",
        "Times per image; MP/s = total megapixels / total time. Peak memory: resident-set growth during the timed",
        "runs (and CUDA allocations). `compressai-ref` is CompressAI's stock `compress()`/`decompress()` entropy",
        "coding on the same network; its bpp counts the streams only, without the `.aec` container.",
        "",
        "| method | setting | encode ms | decode ms | encode MP/s | decode MP/s | bpp | peak RSS MB | peak CUDA MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in s.items():
        cuda = "" if m["peak_cuda_mb"] is None else f"{m['peak_cuda_mb']:.1f}"
        lines.append(
            f"| {name} | {result['methods'][name]['setting']} | {m['encode_ms']:.1f} | "
            f"{m['decode_ms']:.1f} | {m['encode_mps']:.2f} | {m['decode_mps']:.2f} | {m['bpp']:.3f} | "
            f"{m['peak_rss_mb']:.1f} | {cuda} |"
        )
    if result["ratios"]:
        lines += [
            "",
            "aecodec's time ÷ CompressAI stock `compress()`/`decompress()` time (below 1: aecodec is faster):",
            "",
            "| device | encode | decode | encode + decode | PSNR between the two decodes (min) |",
            "|---|---:|---:|---:|---:|",
        ]
        for d, r in result["ratios"].items():
            lines.append(
                f"| {d} | {r['encode_time_ratio']:.2f} | {r['decode_time_ratio']:.2f} | {r['total_time_ratio']:.2f} | "
                f"{result['reference_psnr_db'].get(d):.1f} dB |"
            )
    if result.get("model_ratios"):
        lines += [
            "",
            "Other models' time per image ÷ the default model's (`--also`; the same images, runs interleaved):",
            "",
            "| device and model | encode | decode |",
            "|---|---:|---:|",
        ]
        for key, r in result["model_ratios"].items():
            lines.append(f"| {key} | {r['encode_time_ratio']:.2f} | {r['decode_time_ratio']:.2f} |")
    env = result["environment"]
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items())]
    if result.get("batched"):
        lines += [
            "",
            "Folder throughput of `codec.coding.batch` (images in memory: PNG reading/writing excluded):",
            "",
            "| device | images | batch | entropy-coding workers | encode MP/s | decode MP/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for d, b in result["batched"].items():
            cells = [d, b["images"], b["batch"], b["workers"], f"{b['encode_mps']:.2f}", f"{b['decode_mps']:.2f}"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    if result.get("file_to_file"):
        lines += [
            "",
            "Folder throughput of the `aecodec encode` / `decode` command, file to file (PNG reading and writing",
            "included, weights loaded beforehand):",
            "",
            "| device | images | batch | encode MP/s | decode MP/s |",
            "|---|---:|---:|---:|---:|",
        ]
        for d, b in result["file_to_file"].items():
            cells = [d, b["images"], b["batch"], f"{b['encode_mps']:.2f}", f"{b['decode_mps']:.2f}"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    if result.get("start_up"):
        lines += [
            "",
            "One image through the `aecodec` command as a fresh process, against the same call in a warm process",
            "(seconds, median); start-up = the difference, next to the cost of `import torch` alone:",
            "",
            "| device | image | import torch | encode warm | encode command | encode start-up | decode warm "
            "| decode command | decode start-up |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d, r in result["start_up"].items():
            keys = [f"{k}_{s}_s" for k in ("encode", "decode") for s in ("in_process", "command", "start_up")]
            cells = [d, r["image"], *(f"{r[k]:.2f}" for k in ["import_torch_s", *keys])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *(f"- {n}" for n in result["notes"])] if result["notes"] else []
    return "\n".join(lines) + "\n"


def run(
    data: str | Path,
    out: str | Path | None = None,
    limit: int | None = None,
    repeats: int = 5,
    device: str = "auto",
    quality: float = DEFAULT_QUALITY,
    batch: int = 0,
    workers: int = 0,
    also: tuple[str, ...] = (),
) -> dict:
    """Time every method on every image; writes speed.json and speed.md and returns the result."""
    out = Path(out) if out else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = select_images(data, limit)
    devs = devices(device)
    methods = [m for d in devs for m in aecodec_methods(d, quality)]
    methods += [model_method(d, quality, model_id) for d in devs for model_id in also]
    pillow, notes = pillow_methods()
    methods += pillow
    rows: dict[str, list[dict]] = {m.name: [] for m in methods}
    # PSNR between our decode and the stock path's: ours takes scale indexes from the integer-exact
    # hyper-synthesis, the stock path from the float one, so the two are close but not bit-equal.
    matches: dict[str, list[float]] = {d: [] for d in devs}
    for path in tqdm(paths, desc="speed", unit="img"):
        rgb = load_rgb(path)
        outputs = {}
        for m in methods:
            r = time_one(m, rgb, repeats)
            outputs[m.name] = r.pop("output")
            rows[m.name].append({"image": path.name, **r})
        for d in devs:  # the stock path must decode (nearly) the same image, or the ratio compares different work
            if f"compressai-ref-{d}" in outputs:
                matches[d].append(psnr(outputs[f"aecodec-{d}"], outputs[f"compressai-ref-{d}"]))
    if not any(matches.values()):
        notes.append("no CompressAI reference: its stock path is not this model's network (speed.reference_applies)")
    summary = {name: summarize(rs) for name, rs in rows.items()}
    rgbs = [load_rgb(p) for p in paths] if batch else []
    batched = {d: batched_throughput(rgbs, d, quality, batch, workers) for d in devs} if batch else {}
    files = {d: file_to_file_throughput(paths, d, quality, batch) for d in devs} if batch else {}
    start_up = {d: command_start_up(paths[0], d, quality, min(repeats, 3)) for d in devs}
    result = {
        "dataset": Path(data).resolve().name,
        "images": [p.name for p in paths],
        "repeats": repeats,
        "quality": quality,
        "environment": environment(),
        "notes": notes,
        "summary": summary,
        "ratios": ratios(summary, devs),
        "model_ratios": model_ratios(summary, devs, also),
        "reference_psnr_db": {d: float(min(v)) for d, v in matches.items() if v},
        "batched": batched,
        "file_to_file": files,
        "start_up": start_up,
        "methods": {m.name: {"device": m.device, "setting": m.setting, "per_image": rows[m.name]} for m in methods},
    }
    write_json(out / "speed.json", result)
    (out / "speed.md").write_text(markdown(result))
    return result


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: benchmarks/results].")
@click.option("--limit", type=int, help="Use only the first N images.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CPU, and CUDA as well when present.",
)
@click.option("--quality", type=float, default=DEFAULT_QUALITY, show_default=True, help="aecodec quality.")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (sets AECODEC_WEIGHTS).")
@click.option("--threads", type=int, help="torch CPU threads [default: torch's choice].")
@click.option(
    "--batch",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also time codec.coding.batch and the aecodec command over the whole folder, this many images per network "
    "pass (0: skip).",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Entropy-coding processes (--batch)."
)
@click.option("--also", multiple=True, help="Time this installed model too, against the default (repeatable).")
def main(data, out, limit, repeats, device, quality, weights, threads, batch, workers, also) -> None:
    """Encode/decode speed and memory of aecodec, CompressAI's stock path and Pillow's codecs."""
    use_weights(weights)
    if threads:
        torch.set_num_threads(threads)
    result = run(data, out, limit, repeats, device, quality, batch, workers, tuple(also))
    click.echo(markdown(result))


if __name__ == "__main__":
    main()
