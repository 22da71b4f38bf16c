"""Pictures of layers that have no picture of their own, and of matrices too large to draw
cell by cell.

* ``channel_strip``: a layer whose maps are 1×1 (after global pooling, an SE squeeze, a
  linear layer) has one number per channel, so a grid of its "maps" is a mosaic of single
  colours, saturated when each channel has its own scale. It is drawn instead as one row
  of channels per epoch (x = channel, y = epoch, first epoch on top) on one symmetric scale
  for the whole layer, so what changes over training reads as a change of colour down
  the strip. ``reveal`` shows the same image one epoch per frame (``frames.strip_frames``), so
  the layer's animation still has one frame per epoch.
* ``peak_pool``: an (R, C) matrix pooled to at most a given size, each cell the signed
  value of largest magnitude in its block, so a change in one kernel of a block still
  shows (averaging would cancel it, dropping rows would lose it).
* ``thumbnail_sprite``: a layer's tiny view at every epoch, stacked into one image that a
  page moves with its epoch scrubber (a few hundred bytes per layer).
"""

from __future__ import annotations

import math

import numpy as np

from generator.render.colormaps import (
    BACKGROUND_INDEX,
    SEPARATOR_INDEX,
    map_values,
)
from generator.render.layout import grid_shape, resize_nearest, tile

STRIP_COLORMAP = "diverging"  # signed values: red below zero, blue above
THUMB_CHANNELS = 16  # channels a spatial layer's thumbnail tiles (4 x 4)


def peak_pool(values: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, int, int]:
    """``(..., R, C)`` -> ``(..., ceil(R / fr), ceil(C / fc))`` with ``fr, fc`` the
    smallest factors that fit ``rows x cols``; each cell is the signed value of largest
    magnitude in its ``fr x fc`` block, or NaN if the block holds one (a broken value
    must show). Returns (pooled, fr, fc)."""
    v = np.asarray(values, dtype=np.float32)
    r, c = v.shape[-2:]
    fr, fc = max(1, math.ceil(r / max(rows, 1))), max(1, math.ceil(c / max(cols, 1)))
    if fr == fc == 1:
        return v, 1, 1
    out_r, out_c = math.ceil(r / fr), math.ceil(c / fc)
    padded = np.zeros((*v.shape[:-2], out_r * fr, out_c * fc), dtype=np.float32)
    padded[..., :r, :c] = v
    blocks = padded.reshape(*v.shape[:-2], out_r, fr, out_c, fc)
    blocks = np.moveaxis(blocks, -3, -2).reshape(*v.shape[:-2], out_r, out_c, fr * fc)
    magnitude = np.nan_to_num(np.abs(blocks), nan=np.inf)
    pick = np.argmax(magnitude, axis=-1)[..., None]
    return np.take_along_axis(blocks, pick, axis=-1)[..., 0], fr, fc


def symmetric_scale(values: np.ndarray) -> float:
    """max |value| over the finite values (0 when there are none)."""
    v = np.abs(np.asarray(values, dtype=np.float32))
    finite = v[np.isfinite(v)]
    return float(finite.max()) if finite.size else 0.0


def _strip_cells(channels: int, epochs: int, max_w: int, max_h: int) -> tuple[int, int]:
    """Cell width and height (px) of a strip of ``channels`` x ``epochs`` cells."""
    cell_w = int(np.clip(max_w // max(channels, 1), 1, 16))
    cell_h = int(np.clip(max_h // max(epochs, 1), 1, 12))
    return cell_w, cell_h


def strip_indices(
    values: np.ndarray, *, scale: float | None = None, max_w: int = 960, max_h: int = 360
) -> tuple[np.ndarray, str]:
    """``(E, C)`` values -> ``(H, W)`` palette indices of the strip (rows = epochs, columns
    = channels, pooled by ``peak_pool`` beyond ``max_w`` x ``max_h`` px) and a note on
    how to read it. ``scale`` (default: max |value|) is the symmetric colour scale."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"a channel strip needs (epochs, channels) values, got {v.shape}")
    e, c = v.shape
    pooled, fr, fc = peak_pool(v, max_h, max_w)
    s = symmetric_scale(v) if scale is None else scale
    mapped = map_values(pooled, s, s).indices
    cell_w, cell_h = _strip_cells(pooled.shape[1], pooled.shape[0], max_w, max_h)
    image = resize_nearest(mapped, pooled.shape[0] * cell_h, pooled.shape[1] * cell_w)
    note = f"rows: epochs 0–{e - 1} (top to bottom); columns: the {c} channels"
    if fr > 1 or fc > 1:
        note += f"; each cell is the strongest of {fr} epoch(s) × {fc} channel(s)"
    return np.ascontiguousarray(image), note


def reveal(image: np.ndarray, epochs: int) -> np.ndarray:
    """A strip image (``epochs`` bands of rows) as ``epochs`` frames, frame ``e`` showing
    bands 0..e and the background colour below."""
    bounds = np.linspace(0, image.shape[0], epochs + 1).astype(int)  # each epoch's rows
    frames = np.repeat(image[None], epochs, axis=0)
    hidden = np.arange(image.shape[0])[None, :] >= bounds[1:, None]  # (E, H)
    frames[hidden] = BACKGROUND_INDEX
    return frames


def nonfinite_count(values: np.ndarray) -> int:
    return int(np.size(values) - np.count_nonzero(np.isfinite(values)))


def thumbnail_sprite(maps: np.ndarray, *, side: int = 48) -> np.ndarray:
    """A layer at every epoch as one ``(E * side, side)`` index image (epoch e in rows
    ``e * side`` onward). ``(E, C, H, W)`` maps with H x W > 1 tile their first
    ``THUMB_CHANNELS`` channels, each on its own scale over the epochs (growth shows);
    ``(E, C)`` values (or 1×1 maps) are a band of channel stripes on one layer scale."""
    v = np.asarray(maps, dtype=np.float32)
    if v.ndim == 4 and v.shape[2] * v.shape[3] == 1:
        v = v[:, :, 0, 0]
    e = v.shape[0]
    if v.ndim == 2:
        s = symmetric_scale(v)
        pooled, _, _ = peak_pool(v[:, None, :], 1, side)
        row = map_values(pooled, s, s).indices  # (E, 1, c)
        frames = resize_nearest(row, side, side)
    else:
        v = v[:, :THUMB_CHANNELS]
        scale = np.nanmax(np.abs(np.where(np.isfinite(v), v, np.nan)), axis=(0, 2, 3))
        scale = np.nan_to_num(scale, nan=0.0)[None, :, None, None]
        rows, cols = grid_shape(v.shape[1])
        tile_side = max(1, (side - (cols - 1)) // cols)
        cells = resize_nearest(map_values(v, scale, scale).indices, tile_side, tile_side)
        grid = tile(cells, cols, sep=1, sep_fill=SEPARATOR_INDEX, empty_fill=BACKGROUND_INDEX)
        frames = np.full((e, side, side), BACKGROUND_INDEX, dtype=np.uint8)
        frames[:, : grid.shape[1], : grid.shape[2]] = grid
    return np.ascontiguousarray(frames.reshape(e * side, side))
