"""The one encode path: ``api.encode`` (a batch of one), ``batch.encode_images`` and the command (``jobs.Encoder``)
all run it.

The options are checked once (``EncodeOptions.checked``) and the model loaded once per call (``setup``); each image
becomes one file, packed once, returned with what the encoder knows of it (``Encoded``: its size and quality, so
``-v`` reads nothing back)::

    EncodeOptions ──setup──► Setup(checked options, codec, tile, steps) ──┐
    image ──planes.to_planes──► (H, W, 3) uint8 + fields ─────────────────┴─encode_arrays──► Encoded(data, w, h, q)

A GPU is mostly idle on one image at a time (a Kodak image is a few milliseconds of convolutions): images whose
padded size is the same and that fit in one tile share each pass of the analysis transform, ``batch`` at a time
(``_together``); the others, and an image alone in its size, are analyzed tile by tile (``_alone``). On the CPU the
results match up to float rounding of the transforms (a symbol can differ at a rounding boundary). Entropy coding
stays per image on the CPU. CompressAI's rANS holds the GIL (``python -m benchmarks.gil``), so threads cannot
overlap it with the network; with ``workers`` > 0 each shared pass's latents are entropy-coded in a pool of worker
processes while the next batch runs (``_pool``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core import progress
from ..core import quality as Q
from ..core.errors import AecError
from ..core.tensors import psnr, to_tensor
from ..format import bitstream as bs
from ..format import stored
from ..models.base import DEFAULT_SETTINGS, EncodeSettings
from ..weights.handle import Codec
from ..weights.imported import ENV as IMPORTED_ENV
from ..weights.imported import user_models_dir
from ..weights.store import load_codec, weights_dir
from . import decoding, effort, tiling
from .options import EncodeOptions
from .planes import to_planes


@dataclass(frozen=True)
class Encoded:
    """One coded image: its file, and what the encoder knew of it (``-v``'s size and quality, read nowhere
    else). ``fits``: whether a size search met its budget (a quality always does)."""

    data: bytes
    width: int
    height: int
    quality: float
    fits: bool = True


@dataclass(frozen=True)
class Setup:
    """One call's checked options with the model that codes them and what the model made of them: the effort's
    optimization ``steps``. ``on_fit`` (not an option: a callable does not travel to a worker) is given each
    tile's fit result by a kind that fits per image."""

    options: EncodeOptions
    codec: Codec
    steps: int
    on_fit: Callable[[Any], None] | None = None

    @property
    def quality(self) -> float:
        return self.options.quality

    @property
    def tile(self) -> int:
        return self.options.tile

    @property
    def settings(self) -> EncodeSettings:
        return EncodeSettings(self.options.effort, self.options.iterations, self.on_fit)


def setup(options: EncodeOptions, codec: Codec | None = None, on_fit: Callable[[Any], None] | None = None) -> Setup:
    """``options`` checked (unless they are: ``is_checked``) and the model loaded (unless ``codec`` is given), then
    what the model must accept before any image: the tile side, the effort (or a kind's fitting iterations), a
    size search. AecError (ValueError for a quality the model lacks) names the option."""
    if not options.is_checked:
        options = options.checked(codec)
    if codec is None:
        codec = load_codec(options.model_id, options.device)
    model = codec.model
    try:
        tiling.check_tile_size(options.tile, model.stride)
        steps = model.encoder_steps(options.effort, options.iterations)
    except ValueError as e:
        raise AecError(str(e)) from None
    if options.searching and model.fits_per_image:
        raise AecError(
            f"model {codec.model_id} fits each image as it codes it, so it cannot search a size: "
            "give a quality (-q) instead of a target size"
        )
    return Setup(options, codec, steps, on_fit)


def encode_images(
    s: Setup, images: Sequence[Image.Image | np.ndarray], batch: int = 1, workers: int = 0
) -> list[Encoded]:
    """Each image (any mode, ICC, EXIF, alpha) coded, in order (``encode_arrays``)."""
    planes = [to_planes(im) for im in images]
    return encode_arrays(s, [p[0] for p in planes], [p[1] for p in planes], batch, workers)


def encode_arrays(
    s: Setup, rgbs: Sequence[np.ndarray], extras: Sequence[dict] | None = None, batch: int = 1, workers: int = 0
) -> list[Encoded]:
    """Each (H, W, 3) uint8 array coded, in order; ``extras[i]`` fills image i's AecFile fields (layout, alpha,
    icc, exif). A size search runs per image; otherwise same-size one-tile images share the network ``batch`` at
    a time, their entropy coding in ``workers`` processes when > 0 (the same bytes as without)."""
    extras = list(extras) if extras is not None else [{} for _ in rgbs]
    if len(extras) != len(rgbs):
        raise ValueError(f"{len(rgbs)} images but {len(extras)} extras")
    if s.options.searching:
        return [_searched(s, rgb, extra) for rgb, extra in zip(rgbs, extras, strict=True)]
    if workers > 0 and s.codec.model.fits_per_image:
        raise ValueError("workers re-load the model by id and would lose the fitting settings: use workers=0")
    sizes = [decoding.one_tile_size(*r.shape[:2], s.codec.model.stride, tile=s.tile) for r in rgbs]
    chunks, alone = decoding.groups(sizes, max(1, batch))
    alone += [chunk[0] for chunk in chunks if len(chunk) == 1]
    chunks = [chunk for chunk in chunks if len(chunk) > 1]
    coded: list[bs.AecFile | Future | None] = [None] * len(rgbs)
    pool = _pool(s.codec, workers) if workers > 0 and chunks else None
    try:
        for chunk in chunks:
            files = _together(s, [rgbs[i] for i in chunk], [extras[i] for i in chunk], pool)
            for i, f in zip(chunk, files, strict=True):
                coded[i] = f
        for i in alone:
            coded[i] = _alone(s, rgbs[i], extras[i])
        done = [f.result() if isinstance(f, Future) else f for f in coded]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [_finished(f, rgb, s.codec) for f, rgb in zip(done, rgbs, strict=True)]


def _finished(f: bs.AecFile, rgb: np.ndarray, codec: Codec) -> Encoded:
    """A coded file packed once, or its stored alternative (``smallest``), with its size and quality."""
    return Encoded(smallest(f, bs.pack(f), rgb, codec), f.width, f.height, f.quality)


def _alone(s: Setup, rgb: np.ndarray, extra: dict) -> bs.AecFile:
    """One image analyzed (and optimized) tile by tile: any size, bounded memory."""
    h, w = rgb.shape[:2]
    check_tile_count(s.codec, s.tile, h, w)
    y = tiling.analyze(s.codec.model.at(s.quality), rgb, s.tile, s.codec.device)
    sides = None
    if s.steps:
        y, sides = _optimize(s.codec, rgb, y, s.tile, s.quality, s.steps)
    return latent_file(s.codec, y, h, w, s.tile, s.quality, extra, sides, s.settings)


def _together(
    s: Setup, rgbs: list[np.ndarray], extras: list[dict], pool: ProcessPoolExecutor | None
) -> list[bs.AecFile | Future]:
    """Same-size one-tile images through one analysis pass (and one optimization), each then entropy-coded
    here or, with a ``pool``, in a worker."""
    codec, q = s.codec, s.quality
    x = torch.cat([to_tensor(rgb, codec.model.stride) for rgb in rgbs]).to(codec.device)
    y = codec.model.at(q).analyze(x).float().cpu()
    z = None
    if s.steps:
        y, z = _optimize_batch(codec, x, y, [rgb.shape[:2] for rgb in rgbs], q, s.steps)
    out: list[bs.AecFile | Future] = []
    for j, (rgb, extra) in enumerate(zip(rgbs, extras, strict=True)):
        h, w = rgb.shape[:2]
        side = None if z is None else z[j : j + 1]
        if pool is None:
            sides = None if side is None else [side]
            out.append(latent_file(codec, y[j : j + 1], h, w, s.tile, q, extra, sides, s.settings))
        else:
            z_j = None if side is None else side.numpy()
            out.append(pool.submit(_file_in_worker, codec.model_id, y[j : j + 1].numpy(), h, w, s.tile, q, extra, z_j))
    return out


def check_tile_count(codec: Codec, tile: int, height: int, width: int) -> None:
    """AecError when an image of that size would be more tiles of ``tile`` than a decoder accepts."""
    try:
        tiling.check_tile_count(height, width, tile, codec.model.stride)
    except ValueError as e:
        raise AecError(f"{e}: use a larger tile") from None


def latent_file(
    codec: Codec,
    y: torch.Tensor,
    h: int,
    w: int,
    tile: int,
    quality: float,
    extra: dict,
    sides: list[torch.Tensor] | None = None,
    settings: EncodeSettings = DEFAULT_SETTINGS,
) -> bs.AecFile:
    """The ``.aec`` file of an (h, w) image's latent ``y`` coded at ``quality`` in tiles of ``tile``.

    ``sides`` holds each tile's side latent where the encoder effort chose them; ``settings``: the call's.
    """
    q = bs.quantize_quality(quality)
    tiles = tiling.grid(h, w, tile, codec.model.stride)
    streams = tiling.code(codec.model.at(q), y, tiles, q, sides, settings)
    tiled = tile if len(tiles) > 1 else 0
    return bs.AecFile(
        w, h, q, model_id=codec.model_id, weights_hash=codec.hash_at(q), streams=streams, tile=tiled, **extra
    )


#: Images thinner than this on a side are also tried as stored planes (``smallest``): the network codes
#: at least its stride (64 px) on each side, and measured on a 1x500 column of a validation photo at
#: quality 6 it spent 4.4 kB for 25.4 dB where the PNG of the column takes 1.5 kB.
THIN = 8


def is_flat(rgb: np.ndarray) -> bool:
    """One colour: the network reproduces flat saturated colours up to 50-60 levels off at the corners
    (measured on 64x64 and 256x256 red with the v4 weights; no padding involved), a PNG of it is exact
    and small."""
    return bool((rgb.min(axis=(0, 1)) == rgb.max(axis=(0, 1))).all())


def smallest(f: bs.AecFile, data: bytes, rgb: np.ndarray, codec: Codec) -> bytes:
    """``data`` (the packed ``f``), or a file of the planes ``rgb`` stored as an image (``PIXL``,
    ``codec.format.stored``).

    A flat image is always stored exactly. A thin one keeps the smallest of ``data``, its planes stored
    exactly, and its planes simplified to at least ``data``'s PSNR (decoded with ``codec``, which wrote
    it). Other images are not tried: a lossless image of a photo is several times its coded size, and
    compressing it costs time. A stored file names no model: its decoder needs none.
    """
    flat = is_flat(rgb)
    if not flat and min(rgb.shape[:2]) >= THIN:
        return data
    planes = rgb[..., 0] if f.layout == bs.LAYOUT_GRAY else rgb
    payloads = [stored.lossless_bytes(planes)]
    if not flat:
        coded = decoding.as_rgb(decoding.decode_one(decoding.opened(f, codec, bs.NO_LIMIT)))
        simpler = stored.simplified_bytes(planes, psnr(planes, coded[..., 0] if planes.ndim == 2 else coded))
        payloads += [simpler] if simpler is not None else []
    files = [
        bs.pack(dataclasses.replace(f, streams=[], tile=0, pixels=p, model_id="", weights_hash=bytes(8)))
        for p in payloads
    ]
    return min(files if flat else [data, *files], key=len)


def _optimize(
    codec: Codec, rgb: np.ndarray, y: torch.Tensor, tile: int, quality: float, steps: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``tiling.optimize``, its gain reported (``effort.report``)."""
    y, sides, gain = tiling.optimize(codec.model.at(quality), rgb, y, tile, quality, steps)
    effort.report(gain)
    return y, sides


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


def _searched(s: Setup, rgb: np.ndarray, extra: dict) -> Encoded:
    """The highest quality of the model's range whose whole file fits the options' budget (``max_bytes``, or
    ``target_bpp`` of the image's pixels), by bisection on real encoded sizes; when even the lowest quality is
    too big, that file with ``fits`` False. A flat or thin image may come back stored (``smallest``)."""
    h, w = rgb.shape[:2]
    check_tile_count(s.codec, s.tile, h, w)
    o = s.options
    budget = o.max_bytes if o.max_bytes is not None else int(o.target_bpp * h * w / 8)
    f, data = _search_size(s, rgb, budget, extra)
    data = smallest(f, data, rgb, s.codec)
    return Encoded(data, w, h, f.quality, fits=len(data) <= budget)


def _search_size(s: Setup, rgb: np.ndarray, budget: int, extra: dict) -> tuple[bs.AecFile, bytes]:
    """``_searched``'s coded file and its bytes, before the stored alternative.

    The analysis transform runs once per network (once for a model that codes every quality with one): only
    the latent is re-coded per probe. With effort the search runs on the plain latents (the optimization
    depends on λ: one per probe would multiply its cost by the ~10 probes) and the latents are then optimized
    once at the quality found; that file is kept when it fits (it usually is smaller), else the plain one.
    """
    codec, h, w = s.codec, *rgb.shape[:2]
    latents: dict[int, torch.Tensor] = {}

    def latent(quality: float) -> torch.Tensor:
        model = codec.model.at(quality)
        if id(model) not in latents:
            latents[id(model)] = tiling.analyze(model, rgb, s.tile, codec.device)
        return latents[id(model)]

    def at(i: int) -> tuple[bs.AecFile, bytes]:
        quality = grid[i] / Q.QUALITY_SCALE
        f = latent_file(codec, latent(quality), h, w, s.tile, quality, extra)
        return f, bs.pack(f)

    grid = Q.search_steps(codec.model.levels, codec.model.qualities)
    lo, hi = 0, len(grid) - 1
    best = at(lo)
    if len(best[1]) > budget:
        return best
    top = at(hi)
    if len(top[1]) <= budget:
        lo, best = hi, top
    # Invariant: size(lo) <= budget < size(hi). Sizes grow with quality (not strictly per step,
    # so the answer is the highest probed quality that fits).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probe = at(mid)
        if len(probe[1]) <= budget:
            lo, best = mid, probe
        else:
            hi = mid
    if s.steps:
        quality = grid[lo] / Q.QUALITY_SCALE
        y, sides = _optimize(codec, rgb, latent(quality), s.tile, quality, s.steps)
        f = latent_file(codec, y, h, w, s.tile, quality, extra, sides)
        data = bs.pack(f)
        if len(data) <= budget:
            best = f, data
    return best


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


def _file_in_worker(
    model_id: str, y: np.ndarray, h: int, w: int, tile: int, quality: float, extra: dict, z: np.ndarray | None
) -> bs.AecFile:
    sides = None if z is None else [torch.from_numpy(z)]
    return latent_file(load_codec(model_id, "cpu"), torch.from_numpy(y), h, w, tile, quality, extra, sides)
