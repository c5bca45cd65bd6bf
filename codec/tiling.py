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

import numpy as np
import torch

from .models.base import Model, Streams
from .tensors import padded_size

#: Default tile side in pixels; images up to this size are coded as one tile (no margins at all).
TILE = 1024
#: Context each side, in pixels, rounded up to the model's stride. 64 px covers most of the
#: hyperprior's effective receptive field (measured: see docs/FORMAT.md, tiled vs untiled PSNR).
MARGIN = 64


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
    if tile < stride or tile % stride:
        raise ValueError(f"tile size must be a positive multiple of {stride}, got {tile}")
    return tile


def grid(height: int, width: int, tile: int, stride: int) -> list[Tile]:
    """Tiles covering the image padded to ``stride``, in raster order."""
    hp, wp = padded_size(height, width, stride)
    return [
        Tile(y0, min(y0 + tile, hp), x0, min(x0 + tile, wp)) for y0 in range(0, hp, tile) for x0 in range(0, wp, tile)
    ]


def _margin(model: Model) -> int:
    return -(-MARGIN // model.stride) * model.stride


def _window(t: Tile, hp: int, wp: int, margin: int) -> Tile:
    return Tile(max(0, t.y0 - margin), min(hp, t.y1 + margin), max(0, t.x0 - margin), min(wp, t.x1 + margin))


def _pixels(rgb: np.ndarray, w: Tile) -> torch.Tensor:
    """Window of the edge-replicated padded image as (1, 3, h, w) in [0, 1], built without padding the whole image."""
    rows = np.minimum(np.arange(w.y0, w.y1), rgb.shape[0] - 1)
    cols = np.minimum(np.arange(w.x0, w.x1), rgb.shape[1] - 1)
    patch = rgb[rows[:, None], cols[None, :]]
    return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None].float().div_(255)


def analyze(model: Model, rgb: np.ndarray, tile: int, device: torch.device) -> torch.Tensor:
    """Latent of the whole image (1, C, Hp/s, Wp/s) on the CPU, computed tile by tile with context."""
    hp, wp = padded_size(*rgb.shape[:2], model.stride)
    tiles = grid(*rgb.shape[:2], tile, model.stride)
    if len(tiles) == 1:
        return model.analyze(_pixels(rgb, tiles[0]).to(device)).float().cpu()
    s = model.latent_stride
    y = None
    for t in tiles:
        w = _window(t, hp, wp, _margin(model))
        yw = model.analyze(_pixels(rgb, w).to(device)).float().cpu()
        if y is None:
            y = torch.empty(1, yw.shape[1], hp // s, wp // s)
        top, left = (t.y0 - w.y0) // s, (t.x0 - w.x0) // s
        h, wd = t.latent_size(s)
        y[:, :, t.y0 // s : t.y1 // s, t.x0 // s : t.x1 // s] = yw[:, :, top : top + h, left : left + wd]
    return y


def code(model: Model, y: torch.Tensor, tiles: list[Tile], quality: float) -> list[Streams]:
    """Entropy-code each tile's latent independently; one list of streams per tile, in raster order."""
    out = []
    for t in tiles:
        rows, cols = t.latent(model.latent_stride)
        (streams,) = model.encode_latent(y[:, :, rows, cols].to(model.device), quality)
        out.append(streams)
    return out


def decode_latent(model: Model, streams: list[Streams], tiles: list[Tile], quality: float) -> torch.Tensor:
    """ŷ of the whole image (1, C, Hp/s, Wp/s), float32 on the CPU."""
    s = model.latent_stride
    hp, wp = tiles[-1].y1, tiles[-1].x1
    y_hat = None
    for t, st in zip(tiles, streams, strict=True):
        part = model.decode_latent([st], t.latent_size(s), quality)
        if y_hat is None:
            y_hat = torch.empty(1, part.shape[1], hp // s, wp // s)
        rows, cols = t.latent(s)
        y_hat[:, :, rows, cols] = part
    return y_hat


def synthesize(model: Model, y_hat: torch.Tensor, tiles: list[Tile], height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 image, synthesized tile by tile with latent context."""
    s = model.latent_stride
    hp, wp = y_hat.shape[2] * s, y_hat.shape[3] * s
    out = np.empty((height, width, 3), dtype=np.uint8)
    for t in tiles:
        if t.y0 >= height or t.x0 >= width:
            continue  # pure padding
        w = _window(t, hp, wp, _margin(model)) if len(tiles) > 1 else t
        rows, cols = w.latent(s)
        x = model.synthesize(y_hat[:, :, rows, cols])
        top, left = t.y0 - w.y0, t.x0 - w.x0
        h_keep, w_keep = min(t.y1, height) - t.y0, min(t.x1, width) - t.x0
        patch = x[0, :, top : top + h_keep, left : left + w_keep].mul(255).round_().to(torch.uint8)
        out[t.y0 : t.y0 + h_keep, t.x0 : t.x0 + w_keep] = patch.permute(1, 2, 0).cpu().numpy()
    return out
