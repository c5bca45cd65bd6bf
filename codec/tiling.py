"""Tiled coding: bounded memory on huge images without visible seams.

The padded image is cut into a grid of ``tile × tile`` pixel tiles (the last row/column smaller).
Each tile's latent is entropy-coded on its own (its own hyper-latent and rANS streams), so tiles
decode independently. Seams stay invisible because the transforms see context across tile
borders: the analysis transform runs on the tile plus ``MARGIN`` pixels of its neighbours and
keeps the tile's part of the latent, and the synthesis transform runs on the tile's latent plus
``MARGIN / 16`` latent pixels of its neighbours and keeps the tile's part of the image. Coded
bits cover each tile exactly once; only the hyper-latent's per-tile overhead is extra.

Memory: the latent of the whole image is held (M·H·W/256 floats: 192 MB for 8000×8000), the
network only ever sees one tile plus margins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import engine
from .model import PAD_MULTIPLE, AECModel
from .tensors import padded_size

#: Default tile side in pixels; images up to this size are coded as one tile (no margins at all).
TILE = 1024
#: Context each side, in pixels; a multiple of the latent stride 16. 64 px covers most of the
#: transforms' effective receptive field (measured: see docs/FORMAT.md, tiled vs untiled PSNR).
MARGIN = 64
LATENT_STRIDE = 16


@dataclass(frozen=True)
class Tile:
    """A tile in padded pixel coordinates: rows [y0, y1), columns [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int

    def latent(self) -> tuple[slice, slice]:
        s = LATENT_STRIDE
        return slice(self.y0 // s, self.y1 // s), slice(self.x0 // s, self.x1 // s)


def check_tile_size(tile: int) -> int:
    if tile < PAD_MULTIPLE or tile % PAD_MULTIPLE:
        raise ValueError(f"tile size must be a positive multiple of {PAD_MULTIPLE}, got {tile}")
    return tile


def grid(height: int, width: int, tile: int) -> list[Tile]:
    """Tiles covering the padded image, in raster order."""
    hp, wp = padded_size(height, width)
    return [
        Tile(y0, min(y0 + tile, hp), x0, min(x0 + tile, wp)) for y0 in range(0, hp, tile) for x0 in range(0, wp, tile)
    ]


def _window(t: Tile, hp: int, wp: int, margin: int) -> Tile:
    return Tile(max(0, t.y0 - margin), min(hp, t.y1 + margin), max(0, t.x0 - margin), min(wp, t.x1 + margin))


def _pixels(rgb: np.ndarray, w: Tile) -> torch.Tensor:
    """Window of the edge-replicated padded image as (1, 3, h, w) in [0, 1], built without padding the whole image."""
    rows = np.minimum(np.arange(w.y0, w.y1), rgb.shape[0] - 1)
    cols = np.minimum(np.arange(w.x0, w.x1), rgb.shape[1] - 1)
    patch = rgb[rows[:, None], cols[None, :]]
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float().div_(255)


def analyze(model: AECModel, rgb: np.ndarray, tile: int, device: torch.device) -> torch.Tensor:
    """Latent of the whole image (1, M, Hp/16, Wp/16) on the CPU, computed tile by tile with context."""
    hp, wp = padded_size(*rgb.shape[:2])
    tiles = grid(*rgb.shape[:2], tile)
    if len(tiles) == 1:
        return engine.analyze(model, _pixels(rgb, tiles[0]).to(device)).float().cpu()
    s = LATENT_STRIDE
    y = torch.empty(1, model.arch.M, hp // s, wp // s)
    for t in tiles:
        w = _window(t, hp, wp, MARGIN)
        yw = engine.analyze(model, _pixels(rgb, w).to(device)).float().cpu()
        top, left = (t.y0 - w.y0) // s, (t.x0 - w.x0) // s
        y[:, :, t.y0 // s : t.y1 // s, t.x0 // s : t.x1 // s] = yw[
            :, :, top : top + (t.y1 - t.y0) // s, left : left + (t.x1 - t.x0) // s
        ]
    return y


def code(
    model: AECModel, tables: engine.EntropyTables, y: torch.Tensor, tiles: list[Tile], quality: float
) -> list[engine.Streams]:
    """Entropy-code each tile's latent independently; one Streams per tile, in raster order."""
    device = model.log_y_gain.device
    out = []
    for t in tiles:
        rows, cols = t.latent()
        (streams,) = engine.code(model, tables, y[:, :, rows, cols].to(device), quality)
        out.append(streams)
    return out


def decode_latent(
    model: AECModel,
    tables: engine.EntropyTables,
    streams: list[engine.Streams],
    tiles: list[Tile],
    quality: float,
    hp: int,
    wp: int,
) -> torch.Tensor:
    """ŷ of the whole image (1, M, Hp/16, Wp/16), float32 on the CPU."""
    s = LATENT_STRIDE
    y_hat = torch.empty(1, model.arch.M, hp // s, wp // s)
    for t, st in zip(tiles, streams, strict=True):
        rows, cols = t.latent()
        y_hat[:, :, rows, cols] = engine.decode_latents(model, tables, [st], quality).y_hat().float()
    return y_hat


def synthesize(model: AECModel, y_hat: torch.Tensor, tiles: list[Tile], height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 image, synthesized tile by tile with latent context."""
    device = model.log_y_gain.device
    hp, wp = y_hat.shape[2] * LATENT_STRIDE, y_hat.shape[3] * LATENT_STRIDE
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in tiles:
        if t.y0 >= height or t.x0 >= width:
            continue  # pure padding
        w = _window(t, hp, wp, MARGIN) if len(tiles) > 1 else t
        rows, cols = w.latent()
        x = engine.synthesize_latent(model, y_hat[:, :, rows, cols].to(device))
        top, left = t.y0 - w.y0, t.x0 - w.x0
        h_keep, w_keep = min(t.y1, height) - t.y0, min(t.x1, width) - t.x0
        patch = x[0, :, top : top + h_keep, left : left + w_keep].mul(255).round_().to(torch.uint8)
        out[t.y0 : t.y0 + h_keep, t.x0 : t.x0 + w_keep] = patch.permute(1, 2, 0).cpu().numpy()
    return out
