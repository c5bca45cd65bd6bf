"""Models trained elsewhere against CompressAI's own coding path on the same weights (issue 35).

Per architecture and quality: our entropy-coded streams (and whole ``.aec`` files) against the strings of
CompressAI's ``compress()`` on the same network and the same padded image, and our decode (the exact entropy
path, then the synthesis) against its ``decompress()``. The variable-rate models (``*-vbr``) at each of
CompressAI's levels s: its ``update(force=True, scale=Gain[s])`` then ``compress(x, stage=2, s=s)`` and
``decompress(..., stage=2, s=s)``. Weights: a model imported with ``aecodec import
compressai`` (``--model cai-ARCH-METRIC``; the zoo's weights need a machine that reaches its servers), or with
``--random`` networks at random initialisation at the zoo's sizes for each quality: their bits say what the exact
path costs on such networks, not on trained ones. Where no zoo weights can be had, ``--from-ours ID`` gives trained
ones: our own gained mean-scale hyperprior (kind ``gain-msh``, the architecture of ``mbt2018-mean`` plus gains)
with each level's gains folded into the weights, one ``mbt2018-mean`` network per zoo quality at the same λ.

    python -m benchmarks.zoo --data ../shared/data/kodak --limit 4 --random
    python -m benchmarks.zoo --data ../shared/data/kodak --limit 1 --random --archs mbt2018-mean-vbr --qualities 1,8
    python -m benchmarks.zoo --data ../shared/data/kodak --limit 4 --from-ours aec-gain-msh-128-192-v4
    python -m benchmarks.zoo --data ../shared/data/kodak --limit 2 --from-ours aec-gain-msh-128-192-v4 \
        --archs mbt2018-mean-vbr
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
from codec.models import zoo_vbr
from codec.models.zoo import CLASSES, ZooArch, ZooModel, ZooNet
from codec.models.zoo_vbr import VBR_CLASSES, VbrArch, ZooVbrModel
from codec.weights.handle import Codec
from codec.weights.store import load_codec

DEFAULT_ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def random_codec(arch: str, zoo_qualities: list[int], widen: float, seed: int = 0) -> Codec:
    """A model of random networks at the zoo's sizes (``compressai.zoo.image.cfgs``), g_a's last layer scaled by
    ``widen``, tables built."""
    from compressai.zoo.image import cfgs

    if arch in VBR_CLASSES:
        return random_vbr_codec(arch, widen, seed)
    channels = {Q.compressai_quality(k): cfgs[arch][k] for k in zoo_qualities}
    torch.manual_seed(seed)
    model = ZooModel(ZooArch(arch, "mse", channels))
    with torch.no_grad():
        for net in model.nets():
            net.g_a[-1].weight.mul_(widen)
    model.eval().build_tables()
    return Codec(model, f"random-{arch}")


def random_vbr_codec(arch: str, widen: float, seed: int = 0) -> Codec:
    """A variable-rate model at random initialisation at the zoo's size (``image_vbr.cfgs``), variable z step."""
    from compressai.zoo.image_vbr import cfgs

    torch.manual_seed(seed)
    model = ZooVbrModel(VbrArch(arch, "mse", *cfgs[arch], True))
    with torch.no_grad():
        model.g_a[-1].weight.mul_(widen)
    model.eval().build_tables()
    return Codec(model, f"random-{arch}")


@torch.no_grad()
def folded(sd: dict[str, torch.Tensor], level: int) -> dict[str, torch.Tensor]:
    """A ``gain-msh`` state dict with the gains of ``level`` (0-based) folded in: the ``mbt2018-mean`` network
    that codes as that level does (y·g_y out of g_a and into g_s, z·g_z out of h_a and into h_s, h_s's scales
    and means times g_y)."""
    gy, gz = sd["y_gain_table"][level].double(), sd["z_gain_table"][level].double()
    out = {k: v.double().clone() if v.is_floating_point() else v.clone() for k, v in sd.items() if "gain" not in k}
    out["g_a.6.weight"] *= gy.view(-1, 1, 1, 1)
    out["g_a.6.bias"] *= gy
    out["g_s.0.weight"] /= gy.view(-1, 1, 1, 1)  # transposed: (in, out, k, k)
    out["h_a.0.weight"] /= gy.view(1, -1, 1, 1)
    out["h_a.4.weight"] *= gz.view(-1, 1, 1, 1)
    out["h_a.4.bias"] *= gz
    out["h_s.0.weight"] /= gz.view(-1, 1, 1, 1)
    out["h_s.4.weight"] *= gy.repeat(2).view(-1, 1, 1, 1)
    out["h_s.4.bias"] *= gy.repeat(2)
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def ours_codec(model: str, zoo_qualities: list[int]) -> Codec:
    """``mbt2018-mean`` networks from our gain-msh weights ``model``, one per zoo quality (see the module), through
    the importer's own checks and conversion."""
    from codec.weights.importer import convert

    sd = load_codec(model, "cpu").model.state_dict()
    nets = {Q.compressai_quality(k): None for k in zoo_qualities}
    zoo = ZooModel(ZooArch("mbt2018-mean", "mse", {q: (128, 192) for q in nets}))
    for q in nets:
        zoo.add_module(f"{ZooModel.PREFIX}{q}", convert(folded(sd, q - 1), "mbt2018-mean", q, f"{model} level {q}"))
    return Codec(zoo.eval(), f"folded-{model}")


def ours_vbr_codec(model: str) -> Codec:
    """``mbt2018-mean-vbr`` from our gain-msh weights ``model``: the gains of CompressAI's top level (its Gain 1)
    folded in, its default Gain ladder below that (coarser steps of the same network), z at step 1 (no variable-step
    network) and its initial ``QuantABCD``, through the importer's own checks and conversion: a trained
    hyper-synthesis, whose scales fall near the table's thresholds as trained ones do."""
    from codec.weights.importer import convert_variable_rate

    top = Q.compressai_quality(len(Q.COMPRESSAI_LAMBDAS))
    sd = folded(load_codec(model, "cpu").model.state_dict(), top - 1)
    torch.manual_seed(0)
    fresh = zoo_vbr.reference("mbt2018-mean-vbr", 128, 192, False).state_dict()
    sd.update({k: v for k, v in fresh.items() if k == "Gain" or k.startswith("QuantABCD.")})
    label = f"{model} level {top}"
    return Codec(convert_variable_rate(sd, "mbt2018-mean-vbr", "mse", label), f"folded-vbr-{model}")


def reference_of(net: ZooNet | ZooVbrModel, quality: float) -> tuple[torch.nn.Module, dict]:
    """CompressAI's own network with the same tensors (its ``load_state_dict`` sizes the tables; those of a
    variable z step come from its ``update(scale=...)``) and the arguments of its compress/decompress."""
    if not isinstance(net, ZooVbrModel):
        ref = CLASSES[net.arch](net.N, net.M).eval()
        ref.load_state_dict(net.state_dict())
        return ref, {}
    a = net.arch
    ref = zoo_vbr.reference(a.arch, a.N, a.M, a.variable_z).eval()
    eb = tuple(f"entropy_bottleneck.{t}" for t in ("_quantized_cdf", "_offset", "_cdf_length") if a.variable_z)
    ref.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(("grid.", *eb))}, strict=False)
    s = Q.zoo_quality(quality) - 1
    ref.update(force=True, scale=ref.Gain[s])
    return ref, {"stage": 2, "s": s}


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
    ref, kwargs = reference_of(net, quality)
    out = ref.compress(x, **kwargs)
    t2 = time.perf_counter()
    ref.decompress(out["strings"], out["shape"], **kwargs)
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
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="With --random: architectures (and *-vbr).")
    p.add_argument("--qualities", default="1,4,8", help="With --random: CompressAI's zoo qualities.")
    p.add_argument("--widen", type=float, default=1.0, help="With --random: scale of g_a's last layer.")
    p.add_argument(
        "--from-ours",
        help="Our gain-msh weights, each level's gains folded in (see above); with --archs mbt2018-mean-vbr, the "
        "top level's in a variable-rate network.",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo = [int(q) for q in args.qualities.split(",")]
    if args.random:
        codecs = [(a, random_codec(a, zoo, args.widen)) for a in args.archs.split(",")]
    elif args.from_ours and "mbt2018-mean-vbr" in args.archs.split(","):
        codecs = [("mbt2018-mean-vbr", ours_vbr_codec(args.from_ours))]
    elif args.from_ours:
        codecs = [("mbt2018-mean", ours_codec(args.from_ours, zoo))]
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
        levels = Q.integer_qualities(codec.model.levels, codec.model.qualities)  # a VBR model's: its levels
        if isinstance(codec.model, ZooVbrModel) and (args.random or args.from_ours):
            levels = [float(Q.compressai_quality(k)) for k in zoo]
        for q in levels:
            measure(codec, q, images[0][:64, :64])  # warm-up
            print(report(getattr(codec.model.arch, "arch", name), q, [measure(codec, q, rgb) for rgb in images]))


if __name__ == "__main__":
    main()
