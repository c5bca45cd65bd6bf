"""The codec on the GPU machine, in one JSON (docs/TRAINING.md, "The GPU sprint"); about a minute there.

    python3 scripts/gpu_check.py [--sprint .sprint] [--device cpu] [--out DIR]

1. The fixtures (``tests/fixtures``) of every model the weights hold: decoded on the device, are the latent
   symbols the recorded ones (they must be: the entropy path is exact) and how far are the pixels from the
   recorded decode (float transforms: bf16/fp16 on CUDA).
2. The fixture images encoded on the device: do the CPU and the device decode the same symbols from those files.
3. Batch throughput (``codec.coding.batch``, ``--batch`` images per network pass) in megapixels per second for each
   ``--sizes``, encode and decode, after one warm-up; peak GPU memory.

Weights: ``SPRINT/weights`` when ``prepare`` put the starting weights there, else the repository's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
FIXTURES = ROOT / "tests" / "fixtures"


def fixture_checks(dev, cpu, table: dict, folder: Path) -> list[dict]:
    """Per fixture: symbols as recorded after a device decode, pixel distance to the recorded decode, and
    whether CPU and device decode the same symbols from the device's own encoding."""
    import numpy as np
    from PIL import Image

    from codec import api
    from codec.format import bitstream as bs
    from tests.support import decoded_digests

    out = []
    for name, want in sorted(table["files"].items()):
        data = (folder / name).read_bytes()
        got = decoded_digests(data, dev)
        reference = np.asarray(Image.open(folder / name.replace(".aec", ".png")).convert(want["mode"]), dtype=np.int16)
        decoded = np.asarray(api.decode(data, codec=dev).convert(want["mode"]), dtype=np.int16)
        quality = bs.unpack(data).quality
        own = api.encode(Image.open(folder / name.replace(".aec", ".png")), quality=quality, codec=dev)
        out.append(
            {
                "file": f"{folder.name}/{name}",
                "symbols_as_recorded": got["symbols_sha256"] == want["symbols_sha256"],
                "pixels_identical": got["pixels_sha256"] == want["pixels_sha256"],
                "pixels_max_abs_diff": int(np.abs(decoded - reference).max()),
                "device_encoding_same_bytes_as_recorded": own == data,
                "device_encoding_symbols_cpu_equal_device": decoded_digests(own, cpu)["symbols_sha256"]
                == decoded_digests(own, dev)["symbols_sha256"],
            }
        )
    return out


def test_images(sizes: list[tuple[int, int]], count: int, sprint: Path):
    """``count`` photo-like images per size: crops of the sprint's pack when there is one, else smooth noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    photos = []
    if (sprint / "pack.tar").exists():
        from codec.training.sprint import read_pack

        photos = read_pack(sprint / "pack.tar")[: 4 * count]
    out = {}
    for w, h in sizes:
        images = []
        for i in range(count):
            if photos:
                p = photos[i % len(photos)]
                tiled = np.tile(p, (-(-h // p.shape[0]), -(-w // p.shape[1]), 1))  # photos are smaller than 2K
                images.append(np.ascontiguousarray(tiled[:h, :w]))
            else:
                base = rng.random((h // 8 + 1, w // 8 + 1, 3))
                images.append((np.kron(base, np.ones((8, 8, 1)))[:h, :w] * 255).astype(np.uint8))
        out[f"{w}x{h}"] = images
    return out


def throughput(codec, images: dict, batch: int, quality: float, deadline: float) -> dict:
    """Megapixels per second of batch encode and decode for each size (one warm-up pass first)."""
    import torch

    from codec.coding.batch import decode_arrays, encode_arrays

    def sync() -> None:
        if codec.device.type == "cuda":
            torch.cuda.synchronize(codec.device)

    out = {}
    for size, rgbs in images.items():
        if time.time() > deadline:
            out[size] = "skipped: over the time budget"
            continue
        mp = sum(r.shape[0] * r.shape[1] for r in rgbs) / 1e6
        datas = encode_arrays(rgbs[:batch], quality, codec, batch=batch)  # warm-up (cuDNN picks its kernels)
        decode_arrays(datas, codec, batch=batch)
        sync()
        t = time.perf_counter()
        datas = encode_arrays(rgbs, quality, codec, batch=batch)
        sync()
        enc = time.perf_counter() - t
        t = time.perf_counter()
        decode_arrays(datas, codec, batch=batch)
        sync()
        dec = time.perf_counter() - t
        bpp = 8 * sum(len(d) for d in datas) / (mp * 1e6)
        out[size] = {
            "images": len(rgbs),
            "encode_mp_per_s": round(mp / enc, 2),
            "decode_mp_per_s": round(mp / dec, 2),
            "encode_s": round(enc, 3),
            "decode_s": round(dec, 3),
            "bpp": round(bpp, 4),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sprint", default=str(ROOT / ".sprint"))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="default: $OUT, else the current folder")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sizes", default="768x512,2048x1080", help="WxH list for the throughput")
    p.add_argument("--quality", type=float, default=6.0)
    p.add_argument("--seconds", type=float, default=150.0, help="skip the throughput sizes left after this")
    p.add_argument("--fixtures", default=None, help="only the fixtures of these models (comma list)")
    args = p.parse_args()
    t0 = time.time()
    sprint = Path(args.sprint)
    from gpu_sprint import ensure_packages

    ensure_packages(sprint)
    if (sprint / "weights" / "manifest.json").exists():
        os.environ["AECODEC_WEIGHTS"] = str((sprint / "weights").resolve())
    import torch

    from codec.core.devices import resolve_device
    from codec.weights.store import load_codec, read_manifest

    device = resolve_device(args.device)
    manifest = read_manifest()
    report: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__}
    report["fixtures"] = []
    for path in sorted(FIXTURES.glob("**/fixtures.json")):
        table = json.loads(path.read_text())
        wanted = args.fixtures is None or table["model"] in args.fixtures.split(",")
        if wanted and table["model"] in manifest["models"]:
            dev, cpu = load_codec(table["model"], device), load_codec(table["model"], "cpu")
            report["fixtures"] += fixture_checks(dev, cpu, table, path.parent)
    report["symbols_all_as_recorded"] = all(f["symbols_as_recorded"] for f in report["fixtures"]) and bool(
        report["fixtures"]
    )
    codec = load_codec(manifest["default"], device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    images = test_images(sizes, args.batch, sprint)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    report["model"] = manifest["default"]
    report["throughput"] = throughput(codec, images, args.batch, args.quality, t0 + args.seconds)
    if device == "cuda":
        report["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out or os.environ.get("OUT") or ".")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out / "gpu_check.json")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
