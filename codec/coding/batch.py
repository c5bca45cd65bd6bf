"""Batched coding: many images through the network together, the way a GPU is kept busy.

One image at a time leaves a GPU mostly idle (a Kodak image is a few milliseconds of convolutions).
Here images whose padded size is the same and that fit in one tile share each pass of the analysis
(encode) or synthesis (decode) transform, ``batch`` at a time; entropy coding stays per image on the
CPU. Anything else (tiled images) falls back to the one-image path. The files are the same format
and decode with the one-image path; on CPU the results match it up to float rounding of the
transforms (a symbol can differ at a rounding boundary, a pixel by one level).

CompressAI's rANS holds the GIL (``python -m benchmarks.gil``: two calls in two threads take twice
as long as one), so threads cannot overlap entropy coding with the network. With ``workers`` > 0,
``encode_arrays`` hands each image's latent to a pool of worker processes and goes on with the next
batch while they code: on a GPU the network and the entropy coding then run at the same time.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import torch
from PIL import Image

from ..api import (
    checked_quality,
    checked_tile,
    effort_steps,
    encode_array,
    encoder_steps,
    pack_latent,
    resolve_codec,
    smallest,
    to_planes,
)
from ..core import progress
from ..core.devices import BATCH
from ..core.tensors import to_tensor
from ..format import bitstream as bs
from ..models.base import EncodeSettings
from ..weights.handle import Codec
from ..weights.imported import ENV as IMPORTED_ENV
from ..weights.imported import user_models_dir
from ..weights.store import load_codec, weights_dir
from . import decoding, effort, tiling
from .decoding import groups as _groups
from .decoding import one_tile_size as _one_tile_size


def encode_arrays(
    rgbs: Sequence[np.ndarray],
    quality: float,
    codec: Codec | None = None,
    batch: int = BATCH,
    workers: int = 0,
    tile: int = tiling.TILE,
    extras: Sequence[dict] | None = None,
    effort: int = 0,
    iterations: int | None = None,
) -> list[bytes]:
    """``.aec`` bytes of each (H, W, 3) uint8 array at ``quality``, in order.

    ``extras[i]`` fills image i's AecFile fields (layout, alpha, icc, exif), as ``encode_array``'s
    keywords do. ``workers`` > 0 entropy-codes in that many processes (spawned, one torch thread
    each), which load the same shipped weights by model id; the bytes are the same as without them.
    ``effort`` > 0 optimizes the latents of a batch together (``codec.coding.effort``), as the network runs;
    a kind that fits per image takes ``iterations`` (or its preset for ``effort``) instead.
    """
    codec = resolve_codec(codec)
    q = checked_quality(quality, codec)
    checked_tile(tile, codec)
    effort_steps(effort)
    steps = encoder_steps(codec, effort, iterations)
    settings = EncodeSettings(effort, iterations)
    if workers > 0 and codec.model.fits_per_image:
        raise ValueError("workers re-load the model by id and would lose the fitting settings: use workers=0")
    stride = codec.model.stride
    extras = list(extras) if extras is not None else [{} for _ in rgbs]
    if len(extras) != len(rgbs):
        raise ValueError(f"{len(rgbs)} images but {len(extras)} extras")
    out: list[bytes | Future] = [b""] * len(rgbs)
    chunks, alone = _groups([_one_tile_size(*r.shape[:2], stride, tile=tile) for r in rgbs], max(1, batch))
    pool = _pool(codec, workers) if workers > 0 and chunks else None
    try:
        for chunk in chunks:
            x = torch.cat([to_tensor(rgbs[i], stride) for i in chunk]).to(codec.device)
            y = codec.model.at(q).analyze(x).float().cpu()
            z = None
            if steps:
                y, z = _optimize_batch(codec, x, y, [rgbs[i].shape[:2] for i in chunk], q, steps)
            for j, i in enumerate(chunk):
                h, w = rgbs[i].shape[:2]
                side = None if z is None else z[j : j + 1]
                if pool is None:
                    sides = None if side is None else [side]
                    out[i] = pack_latent(codec, y[j : j + 1], h, w, tile, q, extras[i], sides, settings)
                else:
                    latent, side = y[j : j + 1].numpy(), None if side is None else side.numpy()
                    out[i] = pool.submit(_pack_in_worker, codec.model_id, latent, h, w, tile, q, extras[i], side)
        for i in alone:
            out[i] = encode_array(rgbs[i], q, codec, tile, effort, iterations, **extras[i])  # already ``smallest``
        datas = [o.result() if isinstance(o, Future) else o for o in out]
        lone = set(alone)
        return [data if i in lone else smallest(data, rgbs[i], codec) for i, data in enumerate(datas)]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def encode_images(
    images: Sequence[Image.Image | np.ndarray],
    quality: float,
    codec: Codec | None = None,
    batch: int = BATCH,
    workers: int = 0,
    tile: int = tiling.TILE,
    effort: int = 0,
    iterations: int | None = None,
) -> list[bytes]:
    """``api.encode`` of each image (any mode, ICC, EXIF, alpha), the network run ``batch`` at a time."""
    planes = [to_planes(im) for im in images]
    extras = [p[1] for p in planes]
    return encode_arrays([p[0] for p in planes], quality, codec, batch, workers, tile, extras, effort, iterations)


def _pool(codec: Codec, workers: int) -> ProcessPoolExecutor:
    if codec.model_id == "untracked":
        raise ValueError("workers need a codec loaded from shipped weights (they load it again by model id)")
    # spawn, not fork: forking a process whose OpenMP threads already ran can deadlock the child.
    ctx = multiprocessing.get_context("spawn")
    folders = (str(weights_dir()), str(user_models_dir()))
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=folders)


def _init_worker(weights: str, imported: str) -> None:
    os.environ["AECODEC_WEIGHTS"] = weights
    os.environ[IMPORTED_ENV] = imported
    torch.set_num_threads(1)


def _optimize_batch(
    codec: Codec, x: torch.Tensor, y: torch.Tensor, sizes: list[tuple[int, int]], quality: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``effort.optimize`` of a batch of same-size images (each its own padding masked): (y, z) on the CPU."""
    full = tiling.Tile(0, x.shape[2], 0, x.shape[3])
    mask = torch.cat([tiling.mask(full, h, w) for h, w in sizes]).to(codec.device)
    with progress.effort_bar(steps) as bar:
        y, z, gain = effort.optimize(
            codec.model.at(quality), y.to(codec.device), effort.Target(x, mask), quality, steps, progress=bar.update
        )
    effort.report(gain)
    return y.cpu(), z.cpu()


def _pack_in_worker(
    model_id: str, y: np.ndarray, h: int, w: int, tile: int, quality: float, extra: dict, z: np.ndarray | None
) -> bytes:
    sides = None if z is None else [torch.from_numpy(z)]
    return pack_latent(load_codec(model_id, "cpu"), torch.from_numpy(y), h, w, tile, quality, extra, sides)


def decode_arrays(
    datas: Sequence[bytes],
    codec: Codec | None = None,
    batch: int = BATCH,
    max_pixels: int = bs.MAX_PIXELS,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB planes of each ``.aec`` file, in order (alpha, ICC and EXIF are not applied)."""
    items = [decoding.open_file(d, max_pixels, codec, device) for d in datas]
    return [decoding.as_rgb(p) for p in decoding.decode_planes(items, batch)]


def decode_images(
    datas: Sequence[bytes],
    codec: Codec | None = None,
    batch: int = BATCH,
    max_pixels: int = bs.MAX_PIXELS,
    device: str | torch.device | None = None,
) -> list[Image.Image]:
    """``api.decode`` of each ``.aec`` file (mode, alpha, ICC, EXIF), the network run ``batch`` at a time
    (``codec.coding.decoding``, the one decode path)."""
    return decoding.decode_images(datas, codec, batch, max_pixels, device)
