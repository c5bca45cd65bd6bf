"""Tiled coding: bounded memory on huge images without visible seams.

The padded image is cut into a grid of ``tile × tile`` pixel tiles (the last row/column smaller).
Each tile's latent is entropy-coded on its own (its own streams), so tiles decode independently.
Seams stay invisible because the transforms see context across tile borders: the analysis
transform runs on the tile plus a margin of its neighbours and keeps the tile's part of the latent,
and the synthesis transform runs on the tile's latent plus the same margin (in latent pixels) of its
neighbours and keeps the tile's part of the image. Coded bits cover each tile exactly once; only
the side information's per-tile overhead is extra.

Only the model interface is used (``codec.models.base``): its ``stride`` and ``latent_stride``
place tiles and margins. Memory: the latent of the whole image is held (C·H·W/latent_stride²
floats: 192 MB for 8000×8000 with the hyperprior), the network only ever sees one tile plus margins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core import progress
from ..core.tensors import padded_size
from .options import TILE  # noqa: F401  (the default tile side: the encode option's, ``EncodeOptions.tile``)

if TYPE_CHECKING:
    import torch

    from ..models.base import EncodeSettings, Model, Streams
    from . import effort

# torch is imported by the functions that run a torch model: a fitted file's tiles decode without it
# (``codec.models.light``: its model gives numpy arrays, which ``decode`` places as it does tensors).

#: Largest tile side an encoder writes and a decoder accepts: the network works on one tile (plus
#: margins) at a time, so this bounds the decoder's memory whatever a header claims. Measured with
#: the hyperprior: decoding one 1024² tile peaks at 1.3 GB RSS; a 2048² tile would need about 4x.
MAX_TILE = 1024
#: A file may have at most one tile per this many pixels of its own padded area (``max_tiles``), rounded up.
#: Each tile costs its synthesis window, up to 9x its own pixels for 64-px tiles, plus a fixed overhead
#: (entropy decoding, the hyper-synthesis; ~0.14 s on a busy 2-core CPU): measured, 1024² in 64-px tiles
#: decoded 21x slower than as one tile, and 16384x1 in 256 tiles of 64 px 39.4 s against 8.9 s in 16 tiles
#: of 1024 px. Relative to the image's own area the bound keeps time in proportion to its (padded) pixels;
#: every image in 1024-px tiles passes it (each tile but a row's last covers at least 1024 x 64 px).
PIXELS_PER_TILE = 256 * 256
#: Tiles any file may have whatever its size (~9 s of work at most), so small images can still be tiled.
MIN_TILES = 64


@dataclass(frozen=True)
class Tile:
    """A tile in padded pixel coordinates: rows [y0, y1), columns [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int

    def latent(self, stride: int) -> tuple[slice, slice]:
        """Its rows and columns in a latent of ``stride`` pixels per latent pixel."""
        return slice(self.y0 // stride, self.y1 // stride), slice(self.x0 // stride, self.x1 // stride)

    def latent_size(self, stride: int) -> tuple[int, int]:
        return (self.y1 - self.y0) // stride, (self.x1 - self.x0) // stride


def check_tile_size(tile: int, stride: int) -> int:
    if tile < stride or tile % stride or tile > MAX_TILE:
        raise ValueError(f"tile size must be a positive multiple of {stride} up to {MAX_TILE}, got {tile}")
    return tile


def max_tiles(height: int, width: int, stride: int) -> int:
    """Most tiles a file of this size may have: one per ``PIXELS_PER_TILE`` of its area padded to ``stride``
    (rounded up), at least ``MIN_TILES``. The one place that bounds the cost of tiling."""
    hp, wp = padded_size(height, width, stride)
    return max(MIN_TILES, -(-hp * wp // PIXELS_PER_TILE))


def tile_count(height: int, width: int, tile: int, stride: int) -> int:
    """Tiles of side ``tile`` covering the image padded to ``stride``: ``len(grid(...))``, without building it."""
    hp, wp = padded_size(height, width, stride)
    return -(-hp // tile) * -(-wp // tile)


def check_tile_count(height: int, width: int, tile: int, stride: int) -> None:
    """ValueError when more tiles of side ``tile`` cover the image than a decoder accepts (``max_tiles``)."""
    count, limit = tile_count(height, width, tile, stride), max_tiles(height, width, stride)
    if count > limit:
        raise ValueError(
            f"{count} tiles of {tile} px, over the limit of {limit} for {width}x{height} (one per "
            f"{PIXELS_PER_TILE} pixels of the padded image, at least {MIN_TILES})"
        )


def grid(height: int, width: int, tile: int, stride: int) -> list[Tile]:
    """Tiles covering the image padded to ``stride``, in raster order."""
    hp, wp = padded_size(height, width, stride)
    return [
        Tile(y0, min(y0 + tile, hp), x0, min(x0 + tile, wp)) for y0 in range(0, hp, tile) for x0 in range(0, wp, tile)
    ]


def _margin(model: Model) -> int:
    """The model's context each side (``Model.tile_margin``), rounded up to its stride."""
    return -(-model.tile_margin // model.stride) * model.stride


def _window(t: Tile, hp: int, wp: int, margin: int) -> Tile:
    return Tile(max(0, t.y0 - margin), min(hp, t.y1 + margin), max(0, t.x0 - margin), min(wp, t.x1 + margin))


def _pixels(rgb: np.ndarray, w: Tile) -> torch.Tensor:
    """Window of the edge-replicated padded image as (1, 3, h, w) in [0, 1], built without padding the whole image."""
    import torch

    rows = np.minimum(np.arange(w.y0, w.y1), rgb.shape[0] - 1)
    cols = np.minimum(np.arange(w.x0, w.x1), rgb.shape[1] - 1)
    patch = rgb[rows[:, None], cols[None, :]]
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float().div_(255)


def analyze(model: Model, rgb: np.ndarray, tile: int, device: torch.device) -> torch.Tensor:
    """Latent of the whole image (1, C, Hp/s, Wp/s) on the CPU, computed tile by tile with context."""
    import torch

    hp, wp = padded_size(*rgb.shape[:2], model.stride)
    tiles = grid(*rgb.shape[:2], tile, model.stride)
    if len(tiles) == 1:
        return model.analyze(_pixels(rgb, tiles[0]).to(device)).float().cpu()
    s = model.latent_stride
    y = None
    for t in progress.over(tiles, "analysis", "tile"):
        w = _window(t, hp, wp, _margin(model))
        yw = model.analyze(_pixels(rgb, w).to(device)).float().cpu()
        if y is None:
            y = torch.empty(1, yw.shape[1], hp // s, wp // s)
        top, left = (t.y0 - w.y0) // s, (t.x0 - w.x0) // s
        h, wd = t.latent_size(s)
        y[:, :, t.y0 // s : t.y1 // s, t.x0 // s : t.x1 // s] = yw[:, :, top : top + h, left : left + wd]
    return y


def mask(w: Tile, height: int, width: int) -> torch.Tensor:
    """(1, 1, h, w) weights of a window's pixels: 1 inside the image, 0 on its padding."""
    import torch

    m = torch.zeros(1, 1, w.y1 - w.y0, w.x1 - w.x0)
    m[:, :, : max(0, height - w.y0), : max(0, width - w.x0)] = 1
    return m


def optimize(
    model: Model, rgb: np.ndarray, y: torch.Tensor, tile: int, quality: float, steps: int
) -> tuple[torch.Tensor, list[torch.Tensor], effort.Gain]:
    """``effort.optimize`` tile by tile: the optimized latent of the whole image (CPU), each tile's
    side latent, and the total gain.

    A tile's latent is optimized with its neighbours' (already optimized ones included) as fixed
    context, for the pixels of the tile and its margin (which its latent also shapes at the
    decoder), synthesized from a latent window reaching a margin further: memory stays bounded by
    the tile size as in ``analyze``.
    """
    import torch

    from . import effort

    height, width = rgb.shape[:2]
    hp, wp = padded_size(height, width, model.stride)
    tiles = grid(height, width, tile, model.stride)
    y = y.clone()
    zs, total = [], effort.Gain()
    s, margin, device = model.latent_stride, _margin(model), model.device
    with progress.effort_bar(steps * len(tiles)) as bar:
        for t in tiles:
            rows, cols = t.latent(s)
            if len(tiles) == 1:
                target = effort.Target(_pixels(rgb, t).to(device), mask(t, height, width).to(device))
            else:
                seen, ctx = _window(t, hp, wp, margin), _window(t, hp, wp, 2 * margin)
                pixels = torch.zeros(1, 3, ctx.y1 - ctx.y0, ctx.x1 - ctx.x0)
                counted = torch.zeros(1, 1, *pixels.shape[2:])
                inside = slice(seen.y0 - ctx.y0, seen.y1 - ctx.y0), slice(seen.x0 - ctx.x0, seen.x1 - ctx.x0)
                pixels[:, :, inside[0], inside[1]] = _pixels(rgb, seen)
                counted[:, :, inside[0], inside[1]] = mask(seen, height, width)
                inner = (
                    slice((t.y0 - ctx.y0) // s, (t.y1 - ctx.y0) // s),
                    slice((t.x0 - ctx.x0) // s, (t.x1 - ctx.x0) // s),
                )
                context = y[:, :, ctx.latent(s)[0], ctx.latent(s)[1]].to(device)
                target = effort.Target(pixels.to(device), counted.to(device), context, inner)
            y_t, z_t, gain = effort.optimize(
                model, y[:, :, rows, cols].to(device), target, quality, steps, progress=bar.update
            )
            y[:, :, rows, cols] = y_t.cpu()
            zs.append(z_t.cpu())
            total.add(gain)
    return y, zs, total


def code(
    model: Model,
    y: torch.Tensor,
    tiles: list[Tile],
    quality: float,
    zs: list[torch.Tensor] | None = None,
    settings: EncodeSettings | None = None,
) -> list[Streams]:
    """Entropy-code each tile's latent independently; one list of streams per tile, in raster order.

    ``zs`` holds each tile's side latent where the encoder effort chose them (default ``side_analysis``);
    ``settings`` go to every tile's ``encode_latent`` (None: the defaults).
    """
    if settings is None:
        from ..models.base import DEFAULT_SETTINGS as settings
    out = []
    for i, t in enumerate(progress.over(tiles, "coding", "tile")):
        rows, cols = t.latent(model.latent_stride)
        side = None if zs is None else zs[i].to(model.device)
        (streams,) = model.encode_latent(y[:, :, rows, cols].to(model.device), quality, side, settings)
        out.append(streams)
    return out


def decode_latent(model: Model, streams: list[Streams], tiles: list[Tile], quality: float) -> torch.Tensor:
    """ŷ (1, C, h/s, w/s), float32 on the CPU, of the rectangle of whole tiles ``tiles`` covers (in raster order);
    one tile's as its model gives it (a torch-free model's: an array)."""
    s = model.latent_stride
    if len(tiles) == 1:
        return model.decode_latent([streams[0]], tiles[0].latent_size(s), quality)
    import torch

    y0, x0 = tiles[0].y0, tiles[0].x0
    y_hat = None
    for t, st in zip(tiles, streams, strict=True):
        part = model.decode_latent([st], t.latent_size(s), quality)
        if y_hat is None:
            y_hat = torch.empty(1, part.shape[1], (tiles[-1].y1 - y0) // s, (tiles[-1].x1 - x0) // s)
        y_hat[:, :, (t.y0 - y0) // s : (t.y1 - y0) // s, (t.x0 - x0) // s : (t.x1 - x0) // s] = part
    return y_hat


def _synthesize_tile(model: Model, band: torch.Tensor, band_y0: int, t: Tile, w: Tile, out: np.ndarray) -> None:
    """Write tile ``t``'s pixels into ``out``, synthesized from window ``w`` of a band of latent rows
    whose first row is pixel row ``band_y0``."""
    height, width = out.shape[:2]
    if t.y0 >= height or t.x0 >= width:
        return  # pure padding
    s = model.latent_stride
    x = model.synthesize(band[:, :, (w.y0 - band_y0) // s : (w.y1 - band_y0) // s, w.x0 // s : w.x1 // s])
    _place(x, t, w, out)


def _place(x: torch.Tensor, t: Tile, w: Tile, out: np.ndarray) -> None:
    """Write tile ``t``'s pixels into ``out`` from ``x`` (1, 3, h, w) in [0, 1], the synthesis of window ``w``.

    Rounded in numpy (the same float32 multiply and round half to even as torch's): torch's thread pool wakes
    for each such small op, which on a busy machine waited 0.1 s a tile (a 1-px-high tile's time, 40x over)."""
    height, width = out.shape[:2]
    top, left = t.y0 - w.y0, t.x0 - w.x0
    h_keep, w_keep = min(t.y1, height) - t.y0, min(t.x1, width) - t.x0
    patch = x[0, :, top : top + h_keep, left : left + w_keep]
    if not isinstance(patch, np.ndarray):  # a torch model's tensor; a torch-free model gives float32 arrays
        patch = patch.float().cpu().numpy()
    levels = np.rint(patch * np.float32(255)).astype(np.uint8)
    out[t.y0 : t.y0 + h_keep, t.x0 : t.x0 + w_keep] = levels.transpose(1, 2, 0)


def synthesize(model: Model, y_hat: torch.Tensor, tiles: list[Tile], height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 image of a whole latent, synthesized tile by tile with latent context."""
    s = model.latent_stride
    hp, wp = y_hat.shape[2] * s, y_hat.shape[3] * s
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in tiles:
        _synthesize_tile(model, y_hat, 0, t, _window(t, hp, wp, _margin(model)) if len(tiles) > 1 else t, out)
    return out


def decode(model: Model, streams: list[Streams], tiles: list[Tile], quality: float, height: int, width: int):
    """(height, width, 3) uint8 image from tile streams, one row of tiles at a time.

    Beside the output image only a row of tiles' latents and the margins of its neighbours that its
    synthesis windows reach into are held, so memory beyond the output is bounded by the width, not
    the image: a header claiming a huge image of empty tiles costs time in proportion to its pixels.
    Pixels are those of ``synthesize`` on the whole latent: every window sees the same values. A model
    whose tiles need no context (``tile_margin`` 0) has each tile decoded and written out on its own.
    """
    if len(tiles) == 1:
        return synthesize(model, decode_latent(model, streams, tiles, quality), tiles, height, width)
    if _margin(model) == 0:
        return _decode_apart(model, streams, tiles, quality, height, width)
    import torch

    hp, wp = tiles[-1].y1, tiles[-1].x1
    s, margin = model.latent_stride, _margin(model)
    starts = sorted({t.y0 for t in tiles})
    rows = [[i for i, t in enumerate(tiles) if t.y0 == y0] for y0 in starts]
    out = np.empty((height, width, 3), dtype=np.uint8)
    above: torch.Tensor | None = None  # the last margin rows of the latent above the row being synthesized
    current = decode_latent(model, [streams[i] for i in rows[0]], [tiles[i] for i in rows[0]], quality)
    for r in progress.over(range(len(rows)), "decoding tile rows", "row"):  # row r's lower margin reaches into r + 1
        below = None
        if r + 1 < len(rows):
            below = decode_latent(model, [streams[i] for i in rows[r + 1]], [tiles[i] for i in rows[r + 1]], quality)
        parts = [p for p in (above, current, None if below is None else below[:, :, : margin // s]) if p is not None]
        band = torch.cat(parts, dim=2)
        band_y0 = starts[r] - (0 if above is None else above.shape[2] * s)
        for i in rows[r]:
            t = tiles[i]
            _synthesize_tile(model, band, band_y0, t, _window(t, hp, wp, margin), out)
        del band, parts
        above, current = current[:, :, current.shape[2] - margin // s :].clone(), below
    return out


def _decode_apart(
    model: Model, streams: list[Streams], tiles: list[Tile], quality: float, height: int, width: int
) -> np.ndarray:
    """``decode`` for tiles without context: beside the output only the tile being decoded is held."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    s = model.latent_stride
    for t, st in zip(progress.over(tiles, "decoding tiles", "tile"), streams, strict=True):
        x = model.synthesize(model.decode_latent([st], t.latent_size(s), quality))  # every tile, padding too
        if t.y0 < height and t.x0 < width:
            _place(x, t, t, out)
    return out
