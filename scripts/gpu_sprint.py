"""Turn lent GPU minutes into trained weights: prepare here, run there, collect here (docs/TRAINING.md).

    python scripts/gpu_sprint.py prepare [--out .sprint] [--start MODEL_ID|CHECKPOINT.pt] [--aside]
    python3 scripts/gpu_sprint.py run --minutes 8            # on the GPU machine; prepare prints the line
    python scripts/gpu_sprint.py collect DIR [DIR ...] [--name ID] [--no-measure]
    python scripts/gpu_sprint.py restore                     # weights/ back from .aside/ (collect does it too)

``prepare`` writes an ignored folder that travels with the code (``carry``): the wheels the GPU machine lacks,
the starting weights and a pack of training photos, as many as fit. ``run`` trains from them with the one
training loop (``codec.training.train.train``) on the pack held in GPU memory and leaves a complete generation of
checkpoint pieces in ``$OUT`` every ``--every`` minutes (``codec.training.sprint``). ``collect`` reassembles the
newest complete generation, exports its weight average, and measures it against the default.

A device call takes at most ``DEVICE_LIMIT`` of working tree, and the shipped weights alone are larger:
when what would travel is over it, ``prepare --aside`` moves the tracked ``weights/*.safetensors`` (the sprint
carries its own starting weights) into the ignored ``.aside/``; ``restore`` and ``collect`` move them back
(they are tracked, so ``git checkout -- weights`` restores them as well).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from codec.training.config import RUNS, TrainConfig  # noqa: E402  (light: no torch, no CompressAI)

#: What the GPU image lacks (the device tool's KINDS.md, outside this repository, lists what it has), pinned as in
#: constraints.txt.
WHEELS = ("compressai==1.2.8", "pytorch-msssim==1.0.0")
#: The GPU machine's interpreter and platform (device README: Python 3.12; compressai's cp312 wheel is
#: manylinux_2_34).
PLATFORM = ("--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_34_x86_64")
#: Where ``run`` installs the wheels on the GPU machine.
SITE = Path("/tmp/aec-sprint-site")
#: What ``prepare`` leaves out of its budget for the sprint's index and rounding.
SLACK = 2**20
#: What a device call takes of working tree and carried folders (device README, Limits).
DEVICE_LIMIT = 64 * 2**20
#: Where ``prepare`` moves the tracked weights while a device call needs the tree small (ignored).
ASIDE = ".aside"
#: Seconds ``run`` keeps for its last checkpoint after the training budget.
RESERVE_S = 40


def fail(msg: str) -> None:
    print(f"gpu_sprint: {' '.join(str(msg).split())}", file=sys.stderr)
    sys.exit(2)


# -- prepare ------------------------------------------------------------------------------------
def download_wheels(dest: Path) -> None:
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *PLATFORM]
    subprocess.run([*cmd, "-d", str(dest), *WHEELS], check=True)


def copy_start(start: str | None, dest: Path) -> dict:
    """The starting weights into ``dest``: a shipped model (a one-entry weights folder) or a training
    checkpoint (compact form, ``start.pt``). Returns the sprint's ``start`` entry."""
    import torch

    from codec.models.registry import kind_class
    from codec.training import sprint
    from codec.weights.store import read_manifest, weights_dir

    if start and start.endswith(".pt"):
        ck = torch.load(start, map_location="cpu", weights_only=True)
        blob, _ = sprint.compact_blob(ck, kind_class(ck["kind"]).half_stored)
        (dest / "start.pt").write_bytes(blob)
        return {"checkpoint": "start.pt", "kind": ck["kind"], "arch": ck["arch"]}
    manifest = read_manifest()
    model_id = start or manifest["default"]
    if model_id not in manifest["models"]:
        fail(f"no model {model_id!r} in {weights_dir()}")
    entry = manifest["models"][model_id]
    (dest / "weights").mkdir()
    shutil.copy2(weights_dir() / entry["file"], dest / "weights" / entry["file"])
    one = {"format": manifest.get("format", 1), "default": model_id, "models": {model_id: entry}}
    (dest / "weights" / "manifest.json").write_text(json.dumps(one, indent=2, sort_keys=True) + "\n")
    return {"init": model_id, "kind": entry.get("kind", "gain-msh"), "arch": entry["arch"]}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _git_files(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True).stdout
    return [n for n in out.decode().split("\0") if n]


def travelling_bytes(root: Path = ROOT) -> int:
    """What a device call sends of this checkout besides carried folders: tracked and untracked, not
    ignored files that are present (device README, Limits)."""
    names = _git_files(root, "--cached", "--others", "--exclude-standard")
    return sum((root / n).stat().st_size for n in names if (root / n).is_file())


def set_aside(root: Path = ROOT) -> list[str]:
    """Move the tracked weight files into ``ASIDE`` (same relative paths); returns what moved."""
    moved = []
    for name in _git_files(root, "--cached", "--", "weights/*.safetensors"):
        src, dst = root / name, root / ASIDE / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(name)
    return moved


def restore_aside(root: Path = ROOT) -> list[str]:
    """Move everything in ``ASIDE`` back; a file whose place is taken by a different one stays aside."""
    aside, back = root / ASIDE, []
    for src in sorted(p for p in aside.rglob("*") if p.is_file()) if aside.is_dir() else []:
        name = src.relative_to(aside).as_posix()
        dst = root / name
        if dst.exists():
            if dst.read_bytes() != src.read_bytes():
                print(f"gpu_sprint: {name} differs from {ASIDE}/{name}; left both in place", file=sys.stderr)
                continue
            src.unlink()
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        back.append(name)
    for folder in sorted((p for p in aside.rglob("*") if p.is_dir()), reverse=True) if aside.is_dir() else []:
        if not any(folder.iterdir()):
            folder.rmdir()
    return back


def restore(args: argparse.Namespace) -> None:
    back = restore_aside()
    print(f"restored {len(back)} files from {ASIDE}/" if back else f"nothing in {ASIDE}/")


def device_lines(out: Path, minutes: float) -> list[str]:
    rel = os.path.relpath(out, ROOT)
    return [
        f"python3 scripts/gpu_sprint.py run --sprint {rel} --minutes {minutes:g}",
        f"python3 scripts/gpu_check.py --sprint {rel}",
    ]


def prepare(args: argparse.Namespace) -> None:
    from codec.training import sprint
    from codec.training.data import image_files

    out = Path(args.out).resolve()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if args.wheels:
        shutil.copytree(args.wheels, tmp / "wheels")
    elif not args.no_wheels:
        download_wheels(tmp / "wheels")
    start = copy_start(args.start, tmp)
    budget = int(args.budget_mib * 2**20) - folder_bytes(tmp) - SLACK
    if budget <= 0:
        fail(f"the wheels and the starting weights alone fill the {args.budget_mib} MiB budget")
    files = image_files(args.train)
    chosen = sprint.choose_pack(files, budget, args.seed)
    if args.max_images:
        chosen = chosen[: args.max_images]
    pack_bytes = sprint.write_pack(chosen, tmp / "pack.tar")
    info = {
        "start": start,
        "pack": {"images": len(chosen), "of": len(files), "bytes": pack_bytes, "from": str(args.train)},
    }
    (tmp / "sprint.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    size, code, mib = folder_bytes(out), travelling_bytes(), 2**20
    print(f"wrote {out}: {size / mib:.1f} MiB ({len(chosen)} of {len(files)} photos, pack {pack_bytes / mib:.1f} MiB)")
    if code + size > DEVICE_LIMIT and args.aside:
        moved = set_aside()
        code = travelling_bytes()
        print(f"moved {len(moved)} weight files to {ASIDE}/ for the device call (`restore` moves them back)")
    print(
        f"travels: working tree {code / mib:.1f} MiB + {out.name} {size / mib:.1f} MiB = {(code + size) / mib:.1f} MiB"
    )
    if code + size > DEVICE_LIMIT:
        hint = "" if args.aside else f" (--aside moves the tracked weights to {ASIDE}/ meanwhile)"
        print(f"warning: over the {DEVICE_LIMIT // mib} MiB a device call takes{hint}", file=sys.stderr)
    print(f"device calls (carry [{os.path.relpath(out, ROOT)!r}]), the second at once while the machine is warm:")
    for line in device_lines(out, args.minutes):
        print("  " + line)


# -- run ----------------------------------------------------------------------------------------
def ensure_packages(sprint_dir: Path) -> None:
    """Install the carried wheels when CompressAI is missing (the GPU machine reaches no registry), then
    import it the lean way (``codec.core.lean``), as the brief saw it work there beside numpy 2 and torch 2.11."""
    if importlib.util.find_spec("compressai") is None:
        wheels = sorted(str(p) for p in (sprint_dir / "wheels").glob("*.whl"))
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade"]
        subprocess.run([*pip, "--target", str(SITE), *wheels], check=True)
        sys.path.insert(0, str(SITE))
    from codec.core.lean import import_compressai_lean

    import_compressai_lean()


def starting_point(sprint_dir: Path, start: dict, run_dir: Path) -> tuple[Path | None, int]:
    """(the checkpoint to start from, written into ``run_dir``, or None; the step the sprint starts at): the
    pack's checkpoint, else its ``init`` weights, whose manifest entry counts the steps they were trained for."""
    import torch

    from codec.training import sprint

    if "checkpoint" in start:
        from_checkpoint = run_dir / "start.pt"
        ck = sprint.expand(sprint.deserialize((sprint_dir / start["checkpoint"]).read_bytes()))
        torch.save(ck, from_checkpoint)
        return from_checkpoint, ck["state"]["step"]
    os.environ["AECODEC_WEIGHTS"] = str(sprint_dir / "weights")
    entry = json.loads((sprint_dir / "weights" / "manifest.json").read_text())["models"][start["init"]]
    return None, int(entry.get("training", {}).get("steps") or 0)


def sprint_config(
    args: argparse.Namespace, sprint_dir: Path, start: dict, run_dir: Path, device: str, t_start: float
) -> tuple[TrainConfig, int]:
    """The training run of this sprint (from the pack's ``start`` and the options; until the whole command,
    begun at ``t_start``, has ``RESERVE_S`` of ``--minutes`` left), and the step it starts at."""
    from_checkpoint, first_step = starting_point(sprint_dir, start, run_dir)
    minutes = (args.minutes * 60 - (time.time() - t_start) - RESERVE_S) / 60
    from codec.models.registry import trainable_class

    cfg = TrainConfig(
        train_dir="",
        kind=start["kind"],
        arch=dict(start["arch"]),
        levels=trainable_class(start["kind"]).from_arch(start["arch"]).levels,  # the start's own count
        run_dir=str(run_dir),
        crop=args.crop,
        batch=args.batch,
        lr=args.lr,
        steps=first_step + args.steps,
        max_minutes=max(minutes, 0.01),
        ckpt_minutes=args.every,
        device=device,
        init=start.get("init"),
        from_checkpoint=str(from_checkpoint) if from_checkpoint else None,
        compile_step=args.compile,
        level_norm=args.level_norm,
        log_every=args.log_every,
        seed=args.seed,
    )
    return cfg, first_step


def run(args: argparse.Namespace) -> None:
    t_start = time.time()
    sprint_dir = Path(args.sprint).resolve()
    info = json.loads((sprint_dir / "sprint.json").read_text())
    ensure_packages(sprint_dir)
    import tempfile

    import torch

    from codec.models.registry import kind_class
    from codec.training import sprint
    from codec.training.data import CropSampler
    from codec.training.train import pick_device, train

    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    images = sprint.read_pack(sprint_dir / "pack.tar")
    sampler = CropSampler.from_images(images, args.crop, args.seed, device)
    start = info["start"]
    run_dir = Path(tempfile.mkdtemp(prefix="aec-sprint-"))
    cfg, first_step = sprint_config(args, sprint_dir, start, run_dir, str(device), t_start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    t_train = time.time()

    def stats(state: dict) -> dict:
        now, steps = time.time(), state["step"] - first_step
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        return {
            "device": name,
            "batch": args.batch,
            "crop": args.crop,
            "pack_images": len(images),
            "wall_s": round(now - t_start, 1),
            "steps_this_sprint": steps,
            "steps_per_s": round(steps / (now - t_train), 3),
            "peak_gpu_gib": round(peak, 2) if peak is not None else None,
        }

    out = Path(args.out or os.environ.get("OUT") or "sprint-out")
    shipper = sprint.Shipper(out, kind_class(start["kind"]).half_stored, stats)
    state = train(cfg, sampler=sampler, on_checkpoint=shipper)
    print(f"sprint stopped at step {state['step']} after {time.time() - t_start:.0f} s; pieces in {out}")


# -- collect ------------------------------------------------------------------------------------
def next_model_id(manifest: dict, kind: str, arch: dict) -> str:
    """``aec-KIND-N-M-vK`` with K one past the highest shipped version of that kind and size."""
    prefix = f"aec-{kind}-{arch.get('N')}-{arch.get('M')}-v"
    versions = [
        int(m[len(prefix) :]) for m in manifest["models"] if m.startswith(prefix) and m[len(prefix) :].isdigit()
    ]
    return f"{prefix}{max(versions, default=0) + 1}"


def collect(args: argparse.Namespace) -> None:
    import torch

    from codec.training import sprint
    from codec.training.export import checkpoint_meta, export, model_from_checkpoint
    from codec.weights.store import read_manifest

    if restore_aside():
        print(f"restored the weights from {ASIDE}/")
    try:
        ck, meta = sprint.read_newest([Path(d) for d in args.dirs])
    except FileNotFoundError as e:
        fail(str(e))
    weights = Path(args.weights_dir)
    manifest = read_manifest(weights)
    name = args.name or next_model_id(manifest, ck["kind"], ck["arch"])
    if name in manifest["models"]:
        fail(f"{weights} already holds a model {name!r}")
    run_dir = Path(args.run_dir or RUNS.expanduser() / name)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "last.pt"
    tmp = ckpt.with_suffix(".tmp")
    torch.save(ck, tmp)
    os.replace(tmp, ckpt)
    print(f"step {meta['step']} (generation {meta['generation']}, {meta.get('device')}); resumable: {ckpt}")
    model, state = model_from_checkpoint(ckpt)
    device_used = f"{meta.get('device')}, bf16 autocast, batch {meta.get('batch')}x{meta.get('crop')}²"
    info = checkpoint_meta(state, args.train_data, device_used)
    if args.no_measure:
        export(model, name, weights, half=True, meta=info, make_default=False)
        print(f"exported {name} into {weights} (not the default; not measured)")
        return
    scratch = Path(args.scratch or Path.home() / ".cache" / "aecodec" / "sprint-measure" / name)
    export(model, name, scratch, half=True, meta=info, make_default=False)
    default, sets = manifest["default"], (("val", args.val), ("kodak", args.kodak))
    shutil.copy2(weights / manifest["models"][default]["file"], scratch)
    entries = read_manifest(scratch)
    entries["models"][default] = manifest["models"][default]
    (scratch / "manifest.json").write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    results = {label: measure(scratch, default, name, Path(data), label, args) for label, data in sets}
    for label, (psnr, msssim) in results.items():
        print(f"BD-rate of {name} against {default} on {label}: {psnr:+.2f} % (PSNR), {msssim:+.2f} % (MS-SSIM dB)")
    if all(psnr < 0 for psnr, _ in results.values()):
        export(model, name, weights, half=True, meta=info, make_default=True)
        subprocess.run([sys.executable, "-m", "benchmarks.learning_curve"], cwd=ROOT, check=False)
        print(f"shipped {name} as the default; record its Kodak points (benchmarks.rd --record) and the README figures")
    else:
        print(f"not shipped: {default} stays the default")


def measure(weights: Path, old: str, new: str, data: Path, label: str, args: argparse.Namespace) -> tuple[float, float]:
    """BD-rate of ``new`` against ``old`` on ``data`` (``benchmarks.rd`` for each, then ``bd_pair``)."""
    from codec.bench.report import bd_pair

    curves = {}
    for model_id in (old, new):
        out = weights / f"rd-{label}-{model_id}"
        cmd = [sys.executable, "-m", "benchmarks.rd", "--data", str(data), "--codecs", "aecodec", "--no-jxl"]
        cmd += ["--weights", str(weights), "--model", model_id, "--out", str(out), "--device", args.device]
        cmd += ["--qualities", args.qualities] if args.qualities else []
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        curves[model_id] = json.loads((out / "rd.json").read_text())["codecs"]["aecodec"]["results"]
    return bd_pair(curves[old], curves[new])


# -- command line --------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("prepare", help="write the folder that travels (wheels, start weights, pack)")
    pre.add_argument("--out", default=str(ROOT / ".sprint"))
    pre.add_argument("--train", default=str(ROOT.parent / "shared" / "data" / "train"))
    pre.add_argument(
        "--start", default=None, help="model id in weights/ or a training checkpoint .pt (default: the default)"
    )
    pre.add_argument("--budget-mib", type=float, default=56.0, help="size of the whole folder")
    pre.add_argument("--max-images", type=int, default=0, help="at most this many photos (0: as many as fit)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--minutes", type=float, default=8.0, help="training minutes in the printed device line")
    pre.add_argument("--wheels", default=None, help="copy wheels from this folder instead of downloading them")
    pre.add_argument("--no-wheels", action="store_true", help="no wheels (a dry run where CompressAI is installed)")
    pre.add_argument("--aside", action="store_true", help=f"if over the device limit, move weights/ to {ASIDE}/")
    r = sub.add_parser("run", help="train on the pack; checkpoint pieces into $OUT")
    r.add_argument("--minutes", type=float, required=True, help="the whole command's wall time, installing included")
    r.add_argument("--sprint", default=str(ROOT / ".sprint"))
    r.add_argument("--out", default=None, help="default: $OUT")
    r.add_argument("--device", default="auto")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--crop", type=int, default=256)
    r.add_argument("--lr", type=float, default=TrainConfig.lr)
    r.add_argument("--steps", type=int, default=10**9, help="stop after this many steps too (dry runs)")
    r.add_argument("--every", type=float, default=2.0, help="minutes between checkpoint generations")
    r.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=TrainConfig.compile_step, help="see `train --help`"
    )
    r.add_argument("--level-norm", action=argparse.BooleanOptionalAction, default=TrainConfig.level_norm)
    r.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    r.add_argument("--seed", type=int, default=TrainConfig.seed)
    c = sub.add_parser("collect", help="reassemble, export, measure against the default, ship if better")
    c.add_argument("dirs", nargs="+", help="folders holding a run's pieces (several calls' outputs allowed)")
    c.add_argument("--name", default=None, help="model id (default: the next version of the kind)")
    c.add_argument("--weights-dir", default=str(ROOT / "weights"))
    c.add_argument("--run-dir", default=None, help="where the resumable last.pt goes")
    c.add_argument("--no-measure", action="store_true", help="only export (not as the default)")
    c.add_argument("--val", default=str(ROOT.parent / "shared" / "data" / "val"))
    c.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    c.add_argument("--qualities", default=None, help="qualities measured (default: all the model's)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--scratch", default=None)
    c.add_argument("--train-data", default="../shared/data/train (GPU sprint pack)")
    sub.add_parser("restore", help=f"move the weights back from {ASIDE}/")
    return p


def main() -> None:
    args = parser().parse_args()
    {"prepare": prepare, "run": run, "collect": collect, "restore": restore}[args.command](args)


if __name__ == "__main__":
    main()
