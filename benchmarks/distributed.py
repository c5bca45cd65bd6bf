"""Throughput of ``aecodec encode`` on this machine: the local command against ``--ray`` with 1 and 2 workers,
and what starting a Ray job costs.

    python -m benchmarks.distributed --data ../shared/data/kodak [--quality 6] [--out benchmarks/results/distributed.md]

Every run is the command itself in a fresh process, timed from launch to exit, so start-up is included:
- ``local``: ``aecodec encode IMAGES -o DIR/``;
- ``ray, new cluster``: ``... --ray --workers N`` with no ``RAY_ADDRESS``: the command starts a local cluster;
- ``ray, joined``: the same with ``RAY_ADDRESS`` of a cluster started beforehand (``ray start --head``), as on a
  real cluster, where the cluster outlives the jobs.
Each is run on all the images and on the first one alone: the one-image time is the start-up overhead, and
(n - 1) / (t_all - t_one) the rate once started. Ray's outputs are checked byte-identical to the local ones.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from .common import RESULTS_DIR, select_images

#: A local cluster of this many CPUs for the joined runs (the machine's cores).
CLUSTER_CPUS = os.cpu_count() or 2


def timed_encode(images: list[Path], out: Path, extra: list[str], env: dict[str, str]) -> float:
    """Seconds from launching ``aecodec encode`` on ``images`` into ``out`` to its exit (which must be 0)."""
    cmd = [sys.executable, "-m", "codec.cli", "encode", *map(str, images), "-o", f"{out}/", "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return seconds


def same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.aec"))
    return names == sorted(p.name for p in b.glob("*.aec")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def measure(images: list[Path], extra: list[str], env: dict[str, str], work: Path, reference: Path | None) -> dict:
    """One setting: times on all images and on one, the rates, and whether its outputs match ``reference``."""
    all_dir, one_dir = Path(tempfile.mkdtemp(dir=work)), Path(tempfile.mkdtemp(dir=work))
    t_all = timed_encode(images, all_dir, extra, env)
    t_one = timed_encode(images[:1], one_dir, extra, env)
    row = {
        "t_all": t_all,
        "t_one": t_one,
        "rate": len(images) / t_all,
        "steady": (len(images) - 1) / (t_all - t_one) if t_all > t_one else float("nan"),
        "identical": None if reference is None else same_outputs(reference, all_dir),
        "dir": all_dir,
    }
    print(f"{' '.join(extra) or 'local'}: {t_all:.1f} s all, {t_one:.1f} s one", file=sys.stderr)
    return row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(env: dict[str, str]) -> str:
    """``ray start --head``, no dashboard; its address (``env`` has RAY_AUTH_MODE=token: the command that joins
    it uses the same token, from ~/.ray/auth_token)."""
    ray = str(Path(sys.executable).with_name("ray"))
    cmd = [ray, "start", "--head", "--num-cpus", str(CLUSTER_CPUS), "--include-dashboard=false"]
    cmd += ["--node-ip-address", "127.0.0.1", "--port", str(free_port()), "--disable-usage-stats"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ray start failed:\n{proc.stderr}")
    for line in (proc.stdout + proc.stderr).splitlines():
        if "RAY_ADDRESS=" in line or "--address=" in line:
            return line.split("=", 1)[1].strip().strip("'\"")
    raise SystemExit(f"no address in ray start's output:\n{proc.stdout}")


def stop_cluster(env: dict[str, str]) -> None:
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop"], env=env, capture_output=True)


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@click.option("--limit", type=int, help="First N images only.")
@click.option("-q", "--quality", default="6", show_default=True)
@click.option("--out", "out_path", default=str(RESULTS_DIR / "distributed.md"), show_default=True)
def main(data: str, limit: int | None, quality: str, out_path: str) -> None:
    images = select_images(data, limit)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"  # Ray's default for a local cluster; stated, so that joining uses it too
    common = ["-q", quality, "--device", "cpu"]
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="aecodec-distributed-"))
    try:
        rows = {"local (torch's threads)": measure(images, common, env, work, None)}
        reference = rows["local (torch's threads)"]["dir"]
        for n in (1, 2):
            rows[f"--ray --workers {n}, new cluster"] = measure(
                images, [*common, "--ray", "--workers", str(n)], env, work, reference
            )
        address = start_cluster(env)
        try:
            joined = {**env, "RAY_ADDRESS": address}
            for n in (1, 2):
                rows[f"--ray --workers {n}, joined cluster"] = measure(
                    images, [*common, "--ray", "--workers", str(n)], joined, work, reference
                )
        finally:
            stop_cluster(env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    text = report(rows, images, quality, data, limit, load_before, load_after)
    Path(out_path).write_text(text)
    print(text)


def report(rows: dict, images: list[Path], quality: str, data: str, limit, load_before, load_after) -> str:
    import ray

    command = f"python -m benchmarks.distributed --data {data}" + (f" --limit {limit}" if limit else "")
    command += f" -q {quality}" if quality != "6" else ""
    lines = [
        f"# Distributed coding: local command against --ray ({len(images)} images of {Path(data).name})",
        "",
        f"`nice -n 19 {command}`",
        "",
        f"One machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; Ray "
        f"{ray.__version__}; encode at -q {quality} on the CPU. **The machine was busy**: other jobs shared its "
        f"cores (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after) and this ran under "
        "`nice -n 19`, so the absolute figures are low and noisy; the ratios are what it shows.",
        "",
        "Each run is the command in a fresh process, launch to exit. *one image*: the same command on the first "
        "image alone, i.e. its start-up overhead plus one image. *once started*: (n − 1) / (all − one).",
        "Ray workers run 1 torch thread each; the local command uses torch's default (all cores).",
        "",
        "| run | all images s | images/s | one image s | images/s once started | bytes as local |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        same = "" if r["identical"] is None else ("identical" if r["identical"] else "**differ**")
        lines.append(f"| {name} | {r['t_all']:.1f} | {r['rate']:.2f} | {r['t_one']:.1f} | {r['steady']:.2f} | {same} |")
    local = rows["local (torch's threads)"]["t_one"]
    lines += [
        "",
        f"Start-up overhead of a job against the local command (one-image time minus the local one's, {local:.1f} s):",
        "",
    ]
    for name, r in rows.items():
        if "ray" in name:
            lines.append(f"- {name}: {r['t_one'] - local:+.1f} s")
    lines += [
        "",
        "Not measured here: more than one machine (none was available), GPUs (none on this machine).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
