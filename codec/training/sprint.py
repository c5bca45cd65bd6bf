"""The GPU sprint's parts (``scripts/gpu_sprint.py``; the whole path: docs/TRAINING.md).

A lent GPU machine takes at most 64 MiB of working tree and returns at most 8 files of 16 MiB (64 MiB in
all) from ``$OUT``. So the sprint carries:

- a *pack*: training photos as their original files (already JPEG q95 4:4:4, no second generation of
  loss) in one uncompressed tar, as many as fit the budget, chosen at random;
- and returns a *compact checkpoint* in pieces: the weight average in fp16 where shipped weights are fp16
  (the export's content) plus the raw weights as an fp16 difference from it (near-lossless: the
  difference is small), no optimizer state (a resumed run restarts Adam, with its warm-up). For the
  context model that is ~31 MiB, so two generations fit the 64 MiB that come back: each generation is
  written beside the last complete one and only then replaces it, and a kill at any moment leaves a
  complete generation.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.base import TABLE_BUFFERS

#: Largest file written to ``$OUT`` (the tool returns files up to 16 MiB).
PIECE_BYTES = 15 * 2**20
#: Files the tool returns from ``$OUT``.
MAX_FILES = 8
#: Bytes returned in all; two generations of pieces (old and new) must fit under it.
MAX_RETURN = 64 * 2**20
#: Name of a generation's index: pieces are ``sprint-GGGG-I.part``.
INDEX = re.compile(r"sprint-(\d{4})\.json$")


# -- the pack -------------------------------------------------------------------------------------
def choose_pack(files: list[Path], budget: int, seed: int = 0) -> list[Path]:
    """Files in random order, each kept when the tar still fits ``budget`` bytes (headers, end blocks and
    the padding to whole records counted)."""
    order = list(files)
    random.Random(seed).shuffle(order)
    chosen, used = [], 1024  # tar end-of-archive blocks
    for f in order:
        size = 512 + -(-f.stat().st_size // 512) * 512
        if -(-(used + size) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE <= budget:
            chosen.append(f)
            used += size
    return chosen


def write_pack(files: list[Path], path: Path) -> int:
    """An uncompressed tar of ``files`` (flat names), written atomically; returns its size in bytes."""
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for f in files:
            tar.add(f, arcname=f.name)
    os.replace(tmp, path)
    return path.stat().st_size


def read_pack(path: Path, threads: int = 8) -> list[np.ndarray]:
    """The pack's images, decoded as uint8 RGB arrays (decoding in ``threads`` threads)."""
    with tarfile.open(path) as tar:
        blobs = [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()]

    def decode(blob: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(blob)) as im:
            return np.array(im.convert("RGB"))

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(decode, blobs))


# -- the compact checkpoint --------------------------------------------------------------------
def compact(ck: dict, half_stored: tuple[str, ...], with_delta: bool = True) -> dict:
    """A training checkpoint (``train.save_checkpoint``) as the sprint ships it: ``avg`` = the weight
    average (the raw weights where none is kept), fp16 under ``half_stored``; ``delta`` = raw − avg in fp16
    (left out when ``with_delta`` is False: then a resume starts from the average)."""
    model, ema = ck["model"], ck.get("ema") or {}
    avg, delta = {}, {}
    for name, value in model.items():
        if name.endswith(TABLE_BUFFERS):  # rebuilt by build_tables
            continue
        base = ema.get(name, value).float() if value.is_floating_point() else value
        if value.is_floating_point() and name.startswith(half_stored):
            base = base.half()
        avg[name] = base
        if with_delta and name in ema:
            delta[name] = (value.float() - base.float()).half()
    return {
        "avg": avg,
        "delta": delta if with_delta else None,
        "ema_names": sorted(ema),
        "state": ck["state"],
        "kind": ck["kind"],
        "arch": ck["arch"],
    }


def expand(c: dict) -> dict:
    """A training checkpoint from ``compact``'s form (no optimizer state): raw weights = avg + delta."""
    model, ema = {}, {}
    for name, value in c["avg"].items():
        value = value.float() if value.is_floating_point() else value
        if name in c["ema_names"]:
            ema[name] = value.clone()
        d = (c["delta"] or {}).get(name)
        model[name] = value + d.float() if d is not None else value
    ck = {"model": model, "optimizer": None, "state": c["state"], "kind": c["kind"], "arch": c["arch"]}
    if ema:
        ck["ema"] = ema
    return ck


def serialize(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def deserialize(blob: bytes) -> dict:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def compact_blob(ck: dict, half_stored: tuple[str, ...]) -> tuple[bytes, bool]:
    """The compact checkpoint's bytes, with the raw weights' delta when two generations of it still fit
    what comes back (``MAX_RETURN``); returns (bytes, delta kept)."""
    blob = serialize(compact(ck, half_stored))
    if fits_twice(len(blob)):
        return blob, True
    return serialize(compact(ck, half_stored, with_delta=False)), False


def blob_pieces(size: int) -> int:
    return max(1, -(-size // PIECE_BYTES))


def fits_twice(size: int) -> bool:
    """Whether two generations of a ``size``-byte checkpoint (pieces and indexes) fit what comes back."""
    return 2 * size <= MAX_RETURN - 2**18 and 2 * (blob_pieces(size) + 1) <= MAX_FILES


# -- pieces in $OUT ------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def generations(folder: Path) -> list[int]:
    """Generations that have an index in ``folder``, newest first."""
    return sorted((int(m.group(1)) for p in folder.iterdir() if (m := INDEX.match(p.name))), reverse=True)


def write_generation(folder: Path, gen: int, blob: bytes, meta: dict) -> list[str]:
    """Write ``blob`` as generation ``gen`` (pieces, then the index that makes it complete), then delete
    every other generation and leftover; returns the generation's file names.

    Order keeps a complete generation at every moment and at most two generations (plus one file being
    written) in ``folder``: leftovers of an unfinished generation are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = _complete(folder)
    for p in folder.iterdir():
        if p.name.startswith("sprint-") and (keep is None or not p.name.startswith(f"sprint-{keep:04d}")):
            p.unlink()
    n = blob_pieces(len(blob))
    if not fits_twice(len(blob)):
        raise ValueError(f"a checkpoint of {len(blob) / 2**20:.1f} MiB does not fit two generations in $OUT")
    pieces = []
    for i in range(n):
        data = blob[i * PIECE_BYTES : (i + 1) * PIECE_BYTES]
        name = f"sprint-{gen:04d}-{i}.part"
        _write_atomic(folder / name, data)
        pieces.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    index = f"sprint-{gen:04d}.json"
    _write_atomic(folder / index, (json.dumps({**meta, "generation": gen, "pieces": pieces}, indent=1) + "\n").encode())
    for p in folder.iterdir():
        if p.name.startswith("sprint-") and not p.name.startswith(f"sprint-{gen:04d}"):
            p.unlink()
    return [index] + [p["name"] for p in pieces]


def _complete(folder: Path) -> int | None:
    for gen in generations(folder):
        if read_generation(folder, gen) is not None:
            return gen
    return None


def read_generation(folder: Path, gen: int) -> tuple[bytes, dict] | None:
    """Generation ``gen``'s bytes and index, or None when a piece is missing or damaged."""
    meta = json.loads((folder / f"sprint-{gen:04d}.json").read_text())
    parts = []
    for piece in meta["pieces"]:
        path = folder / piece["name"]
        if not path.exists():
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != piece["sha256"]:
            return None
        parts.append(data)
    return b"".join(parts), meta


def read_newest(folders: list[Path]) -> tuple[dict, dict]:
    """The newest complete generation found in ``folders`` (several calls' outputs may be gathered):
    (training checkpoint, index)."""
    found = []
    for folder in folders:
        for gen in generations(folder):
            got = read_generation(folder, gen)
            if got is not None:
                found.append((gen, got))
                break
    if not found:
        raise FileNotFoundError(f"no complete sprint checkpoint in {', '.join(map(str, folders))}")
    gen, (blob, meta) = max(found, key=lambda t: t[0])
    return expand(deserialize(blob)), meta


class Shipper:
    """``train``'s ``on_checkpoint``: every checkpoint becomes the next generation of pieces in ``out``,
    with ``stats()`` (steps, speed, memory) in its index."""

    def __init__(self, out: Path, half_stored: tuple[str, ...], stats: Callable[[dict], dict]) -> None:
        self.out, self.half_stored, self.stats = out, half_stored, stats
        self.gen = max(generations(out), default=-1) + 1 if out.exists() else 0

    def __call__(self, path: Path, state: dict) -> None:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        blob, with_delta = compact_blob(ck, self.half_stored)
        meta = {"step": state["step"], "seconds": state["seconds"], "raw_weights": with_delta, **self.stats(state)}
        write_generation(self.out, self.gen, blob, meta)
        self.gen += 1
