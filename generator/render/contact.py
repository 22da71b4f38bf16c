"""Contact sheets: one still per layer and probe, rows = channels, columns = epochs.

With more epochs than columns, the columns are a log-spaced subset that always holds the
untrained epoch 0, epoch 1 and the last epoch (early epochs change most; Zeiler & Fergus
2014 showed epochs 1, 2, 5, 10, 20, 30, 40, 64). The sheet says which epochs it shows in
its column headers and returns them so the page can say so too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import generator.render.captions as cap
from generator import defaults
from generator.render.colormaps import (
    BACKGROUND_INDEX,
    SEPARATOR_INDEX,
    TEXT_INDEX,
    check_colormap,
    map_values,
    palette,
)
from generator.render.frames import layer_maps
from generator.render.layout import finish, resize_nearest, tile, tile_size

FONT = 11
MAX_HEIGHT = 1 << 15


@dataclass(frozen=True)
class ContactSheet:
    """``image`` ``(H, W)`` uint8 palette indices for ``palette`` ``(256, 3)``; ``epochs``
    and ``channels`` are the columns and rows shown; ``nonfinite`` counts NaN/inf values."""

    image: np.ndarray
    palette: np.ndarray
    epochs: list[int]
    channels: list[int]
    nonfinite: int = 0


def choose_epochs(n_epochs: int, max_columns: int = 8) -> list[int]:
    """Epoch indices for the columns: all if they fit, else 0 plus a log-spaced run from 1
    to the last epoch (both included), as many distinct epochs as fit ``max_columns``."""
    last = n_epochs - 1
    if n_epochs <= max_columns:
        return list(range(n_epochs))
    if max_columns < 3:
        raise ValueError("a log-spaced choice needs at least 3 columns (0, 1 and the last)")
    best = [1, last]
    for k in range(2, n_epochs + 1):  # more points until rounding gives too many
        picks = np.unique(np.rint(np.geomspace(1, last, k)).astype(int)).tolist()
        if len(picks) > max_columns - 1:
            break
        best = picks
    return [0, *best]


def _label_masks(labels: list[str], width: int, height: int, align: str) -> np.ndarray:
    """``(1, n, height, width)`` bool text masks, one per label, for ``tile``."""
    size = min(FONT, height - 2)
    if size < 6:  # too small to read: leave the labels out
        return np.zeros((1, len(labels), height, width), dtype=bool)
    return np.stack([cap.text_mask(t, width, height, size, align) for t in labels])[None]


def _header_labels(epochs: Sequence[int], tile_w: int) -> list[str]:
    """``epoch N`` per column, or just ``N`` where the column is too narrow."""
    wide = all(cap.text_width(f"epoch {e}", FONT) <= tile_w - 4 for e in epochs)
    return [f"epoch {e}" if wide else str(e) for e in epochs]


def contact_sheet(
    values: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    colormap: str = defaults.COLORMAP,
    max_columns: int = 8,
    max_channels: int = 64,
    min_tile: int = 32,
    max_width: int = defaults.MAX_SIDE,
    sep: int = 1,
    title: str | None = None,
    epoch_numbers: Sequence[int] | None = None,
) -> ContactSheet:
    """One probe's layer ``(E, C, H, W)`` (or ``(E, N)``) with scales ``(E, C)`` -> a still.

    Rows are the first ``max_channels`` channels (labelled ``ch N``, from 1), columns the
    epochs of ``choose_epochs`` (headed by their number); tiles are upscaled to ``min_tile``
    px and the sheet fits ``max_width``. ``title`` goes in a strip on top. A caller that
    read only the chosen epochs passes their numbers as ``epoch_numbers``: then every row
    of ``values`` is a column, headed by its number.
    """
    check_colormap(colormap)
    maps, neg4, pos4 = layer_maps(values, neg, pos)
    columns, epochs = _columns(maps.shape[0], epoch_numbers, max_columns)
    channels = list(range(min(maps.shape[1], max_channels)))
    pick = (np.asarray(columns)[:, None], np.asarray(channels)[None, :])
    mapped = map_values(maps[pick], neg4[pick], pos4[pick])  # (n_ep, n_ch, h, w)
    n_ep, n_ch, h, w = mapped.indices.shape
    label_w = cap.text_width(f"ch {channels[-1] + 1}", FONT) + 8
    th, tw = tile_size(
        h,
        w,
        n_ch,
        n_ep,
        min_tile=min_tile,
        max_w=max_width - label_w - sep,
        max_h=MAX_HEIGHT,
        sep=sep,
    )
    cells = resize_nearest(mapped.indices.swapaxes(0, 1).reshape(1, n_ch * n_ep, h, w), th, tw)
    grid = tile(cells, n_ep, sep=sep, sep_fill=SEPARATOR_INDEX, empty_fill=BACKGROUND_INDEX)[0]
    text = _labels(epochs, channels, grid.shape, tile_size=(th, tw), label_w=label_w, sep=sep)
    sheet = cap.paint(text, TEXT_INDEX, BACKGROUND_INDEX)
    sheet[-grid.shape[0] :, -grid.shape[1] :] = grid  # below the header, right of the labels
    image = finish(sheet[None], title, position="top")[0]
    return ContactSheet(image, palette(colormap), epochs, channels, mapped.nonfinite)


def _columns(
    count: int, epoch_numbers: Sequence[int] | None, max_columns: int
) -> tuple[list[int], list[int]]:
    """The rows of ``values`` the sheet shows as columns, and the epoch each one heads:
    ``choose_epochs`` of all ``count``, or every row when their ``epoch_numbers`` are given
    (the caller read only the chosen epochs)."""
    if epoch_numbers is None:
        columns = choose_epochs(count, max_columns)
        return columns, columns
    if len(epoch_numbers) != count:
        raise ValueError(f"{len(epoch_numbers)} epoch numbers for {count} epochs")
    return list(range(count)), list(epoch_numbers)


def _labels(
    epochs: Sequence[int],
    channels: Sequence[int],
    grid_shape: tuple[int, ...],
    *,
    tile_size: tuple[int, int],
    label_w: int,
    sep: int,
) -> np.ndarray:
    """The sheet's text as a mask the size of the whole sheet: epoch numbers over the
    columns, ``ch N`` left of the rows, the grid's own place (bottom right) left empty."""
    th, tw = tile_size
    head_h = cap.strip_height(FONT)
    header = tile(
        _label_masks(_header_labels(epochs, tw), tw, head_h, "center"),
        len(epochs),
        sep=sep,
        sep_fill=False,
        empty_fill=False,
    )[0]
    rows = tile(
        _label_masks([f"ch {c + 1}" for c in channels], label_w, th, "left"),
        1,
        sep=sep,
        sep_fill=False,
        empty_fill=False,
    )[0]
    text = np.zeros((head_h + sep + grid_shape[0], label_w + sep + grid_shape[1]), dtype=bool)
    text[:head_h, label_w + sep :] = header
    text[head_h + sep :, :label_w] = rows
    return text
