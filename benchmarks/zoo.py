"""Models trained elsewhere against CompressAI's own coding path on the same weights (issue 35).

Per architecture and quality: our entropy-coded streams (and whole ``.aec`` files) against the strings of
CompressAI's ``compress()`` on the same network and the same padded image, and our decode (the exact entropy
path, then the synthesis) against its ``decompress()``. Weights: a model imported with ``aecodec import
compressai`` (``--model cai-ARCH-METRIC``; the zoo's weights need a machine that reaches its servers), or with
``--random`` networks at random initialisation at the zoo's sizes for each quality (their latents widened, as
tests/test_zoo.py does, so that they are not all zero): their bits say what the exact path costs on such
networks, not on trained ones.

    python -m benchmarks.zoo --data ../shared/data/kodak --limit 4 --random
    python -m benchmarks.zoo --data DIR --model cai-mbt2018-mean-mse
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.common import select_images
from codec import api
from codec.core import quality as Q
from codec.core.tensors import padded_size
from codec.format import files
from codec.models.zoo import CLASSES, ZooArch, ZooModel, ZooNet
from codec.weights.handle import Codec
from codec.weights.store import load_codec

DEFAULT_ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def random_codec(arch: str, zoo_qualities: list[int], widen: float, seed: int = 0) -> Codec:
    """A model of random networks at the zoo's sizes (``compressai.zoo.image.cfgs``), g_a's last layer scaled by
    ``widen``, tables built."""
    from compressai.zoo.image import cfgs

    channels = {Q.compressai_quality(k): cfgs[arch][k] for k in zoo_qualities}
    torch.manual_seed(seed)
    model = ZooModel(ZooArch(arch, "mse", channels))
    with torch.no_grad():
        for net in model.nets():
            net.g_a[-1].weight.mul_(widen)
    model.eval().build_tables()
    return Codec(model, f"random-{arch}")


def reference_of(net: ZooNet) -> torch.nn.Module:
    """CompressAI's own network with the same tensors (its ``load_state_dict`` sizes the tables)."""
    ref = CLASSES[net.arch](net.N, net.M).eval()
    ref.load_state_dict(net.state_dict())
    return ref


def padded(rgb: np.ndarray, stride: int) -> torch.Tensor:
    """The image as our encoder pads it (edge replication to the stride), (1, 3, H, W) in [0, 1]."""
    hp, wp = padded_size(*rgb.shape[:2], stride)
    rows, cols = np.minimum(np.arange(hp), rgb.shape[0] - 1), np.minimum(np.arange(wp), rgb.shape[1] - 1)
    return torch.from_numpy(np.ascontiguousarray(rgb[rows[:, None], cols[None, :]])).permute(2, 0, 1)[None] / 255.0


@torch.inference_mode()
def measure(codec: Codec, quality: float, rgb: np.ndarray) -> dict:
    """One image at one quality: bytes and decode times, ours and CompressAI's."""
    net = codec.model.at(quality)
    x = padded(rgb, net.stride)
    ours = sum(len(s) for s in net.encode_latent(net.analyze(x), quality)[0])
    data = api.encode_array(rgb, quality, codec=codec)
    t0 = time.perf_counter()
    api.decode_array(data, codec=codec)
    t1 = time.perf_counter()
    ref = reference_of(net)
    out = ref.compress(x)
    t2 = time.perf_counter()
    ref.decompress(out["strings"], out["shape"])
    t3 = time.perf_counter()
    theirs = sum(len(s[0]) for s in out["strings"])
    return {"ours": ours, "file": len(data), "theirs": theirs, "dec": t1 - t0, "ref_dec": t3 - t2}


def report(arch: str, quality: float, rows: list[dict]) -> str:
    ours, theirs = sum(r["ours"] for r in rows), sum(r["theirs"] for r in rows)
    files_ = sum(r["file"] for r in rows)
    dec, ref = (statistics.median(r[k] for r in rows) * 1000 for k in ("dec", "ref_dec"))
    return (
        f"| {arch} | {quality:g} ({Q.zoo_quality(quality)}) | {len(rows)} | {ours:,} | {theirs:,} | "
        f"{100 * (ours / theirs - 1):+.3f} % | {files_:,} | {dec:.0f} | {ref:.0f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="A folder of images.")
    p.add_argument("--limit", type=int, default=4, help="The first N images (0: all).")
    p.add_argument("--model", action="append", default=[], help="An imported model id (repeatable).")
    p.add_argument("--random", action="store_true", help="Random networks at the zoo's sizes instead.")
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="With --random: architectures.")
    p.add_argument("--qualities", default="1,4,8", help="With --random: CompressAI's zoo qualities.")
    p.add_argument("--widen", type=float, default=1.0, help="With --random: scale of g_a's last layer.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.random:
        zoo = [int(q) for q in args.qualities.split(",")]
        codecs = [(a, random_codec(a, zoo, args.widen)) for a in args.archs.split(",")]
    else:
        codecs = [(m, load_codec(m, "cpu")) for m in args.model]
    if not codecs:
        raise SystemExit("give --model ID (an imported model) or --random")
    images = [
        np.asarray(files.open_image(files.read_bytes(str(p)), str(p)).convert("RGB"))
        for p in select_images(args.data, args.limit or None)
    ]
    pixels = sum(rgb.shape[0] * rgb.shape[1] for rgb in images)
    print(f"{len(images)} images ({pixels:,} pixels) from {args.data}, {torch.get_num_threads()} threads, CPU")
    print("| architecture | quality ours (zoo) | images | our streams B | compress() B | ours vs compress() "
          "| our .aec files B | our decode ms | decompress() ms |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, codec in codecs:
        for q in codec.model.qualities:
            measure(codec, q, images[0][:64, :64])  # warm-up
            print(report(getattr(codec.model.arch, "arch", name), q, [measure(codec, q, rgb) for rgb in images]))


if __name__ == "__main__":
    main()
