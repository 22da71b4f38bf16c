"""Frames over epochs: a layer's channels tiled into a grid, a single channel, a grid of
images.

All pixel work is numpy on whole stacks: values map to palette indices in one call, tiles
are resized by index lookups (nearest neighbour), and the grid is assembled by one reshape,
so a frame costs a few array copies, never a Python loop over pixels. Tile sizes, tiling,
padding and captions are ``render.layout``'s; frames come out with even dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from generator import defaults
from generator.render.colormaps import (
    BACKGROUND_INDEX,
    SEPARATOR_INDEX,
    TEXT_INDEX,
    check_colormap,
    map_values,
    palette,
    rgb_of,
)
from generator.render.layout import (
    caption_font_size,
    caption_room,
    captioned_tile_size,
    finish,
    grid_shape,
    resize_nearest,
    tile,
    tile_size,
)
from generator.render.strip import STRIP_COLORMAP, nonfinite_count, reveal, strip_indices
from generator.threads import helper_threads


@dataclass(frozen=True)
class Frames:
    """A rendered sequence: ``frames`` is ``(T, H, W)`` palette indices when ``palette`` is
    a ``(256, 3)`` uint8 palette, or ``(T, H, W, 3)`` RGB when ``palette`` is None.

    ``nonfinite`` counts NaN/inf input values (drawn in the NaN colour) for the caller to
    log; ``note`` says what was left out (e.g. capped kernel grids), empty if nothing.
    """

    frames: np.ndarray
    palette: np.ndarray | None
    nonfinite: int = 0
    note: str = ""

    @property
    def indexed(self) -> bool:
        return self.palette is not None

    def rgb(self) -> np.ndarray:
        """``(T, H, W, 3)`` uint8: the palette lookup for index frames, else the frames."""
        return self.frames if self.palette is None else self.palette[self.frames]


def grid_frames(
    indices: np.ndarray,
    *,
    min_tile: int = 48,
    max_side: int = defaults.MAX_SIDE,
    sep: int = 1,
    captions: Sequence[str] | str | None = None,
    position: str = "bottom",
) -> np.ndarray:
    """``(E, C, h, w)`` palette indices -> ``(E, H, W)`` near-square grid frames.

    Channels are tiled ``ceil(sqrt(C))`` wide with ``sep`` px separators; the grid (plus
    caption) fits ``max_side`` px on its long side. Linear layers pass ``(E, N, 1, 1)``.
    """
    if indices.ndim != 4:
        raise ValueError(f"grid indices must be (E, C, h, w), got {indices.shape}")
    e, c, h, w = indices.shape
    rows, cols = grid_shape(c)
    th, tw = captioned_tile_size(
        h, w, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    tiles = resize_nearest(indices, th, tw)
    grid = tile(tiles, cols, sep=sep, sep_fill=SEPARATOR_INDEX, empty_fill=BACKGROUND_INDEX)
    return finish(grid, captions, position=position)


def layer_maps(
    values: np.ndarray, neg: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conv ``(E, C, H, W)`` as is; linear ``(E, N)`` as ``(E, N, 1, 1)``; scales to
    ``(E, C, 1, 1)`` so they broadcast per channel."""
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[:, :, None, None]
    if values.ndim != 4:
        raise ValueError(f"layer values must be (E, C, H, W) or (E, N), got {values.shape}")
    low, high = (
        np.broadcast_to(np.asarray(s, dtype=np.float32), values.shape[:2])[..., None, None]
        for s in (neg, pos)
    )
    return values, low, high


def _shrink_first(
    maps: np.ndarray,
    rows: int,
    cols: int,
    *,
    min_tile: int,
    max_side: int,
    captions: Sequence[str] | str | None,
    sep: int,
) -> np.ndarray:
    """``(E, C, h, w)`` values already shrunk to their tile size when the grid downscales.

    Nearest-neighbour resizing commutes with the per-pixel colour lookup, so shrinking
    before ``map_values`` gives the same frame and maps 4x fewer values for a 2x shrink.
    """
    h, w = maps.shape[-2:]
    th, tw = captioned_tile_size(
        h, w, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    return resize_nearest(maps, th, tw) if th < h or tw < w else maps


def layer_frames(
    values: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    colormap: str = defaults.COLORMAP,
    captions: Sequence[str] | str | None = None,
    min_tile: int = 48,
    max_side: int = defaults.MAX_SIDE,
    sep: int = 1,
    position: str = "bottom",
) -> Frames:
    """One probe's layer over epochs as grid frames.

    ``values`` ``(E, C, H, W)`` (or ``(E, N)`` for a linear layer) and the scales ``neg`` /
    ``pos`` ``(E, C)`` (e.g. ``compute_scales(...).neg[:, probe]``) -> index ``Frames``
    ``(E, H', W')`` with the colormap's palette.
    """
    check_colormap(colormap)
    maps, neg4, pos4 = layer_maps(values, neg, pos)
    maps = _shrink_first(
        maps,
        *grid_shape(maps.shape[1]),
        min_tile=min_tile,
        max_side=max_side,
        captions=captions,
        sep=sep,
    )
    mapped = map_values(maps, neg4, pos4)
    frames = grid_frames(
        mapped.indices,
        min_tile=min_tile,
        max_side=max_side,
        sep=sep,
        captions=captions,
        position=position,
    )
    return Frames(frames, palette(colormap), mapped.nonfinite)


def layer_frames_by_epoch(
    read: Callable[[int], np.ndarray],
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    captions: Sequence[str],
    colormap: str = defaults.COLORMAP,
    max_side: int = defaults.MAX_SIDE,
) -> Frames:
    """One probe's layer grid over ``len(captions)`` epochs, reading one epoch at a time
    (``read(epoch)`` -> ``(C, H, W)`` or ``(N,)`` values) into one preallocated array: the
    only copy of the frames, so memory grows by one frame per epoch, never by a layer's
    activations. ``neg`` / ``pos`` are ``(E, C)`` scales; every frame gets the same caption
    strip, sized for the longest caption. A layer of 1×1 maps is drawn as its channel
    strip instead (``strip_frames``): a grid of one-colour tiles says nothing."""
    room = max_side - caption_room("")
    first_map = np.asarray(read(0))
    if first_map.ndim == 3 and first_map.shape[1] * first_map.shape[2] == 1:
        rest = [np.asarray(read(e)).reshape(-1) for e in range(1, len(captions))]
        return strip_frames(np.stack([first_map.reshape(-1), *rest]), captions, max_side=max_side)

    def grid(epoch: int) -> Frames:
        return layer_frames(
            (first_map if epoch == 0 else read(epoch))[None],
            neg[epoch : epoch + 1],
            pos[epoch : epoch + 1],
            colormap=colormap,
            max_side=room,
        )

    first = grid(0)
    size = caption_font_size(captions, first.frames.shape[2])
    framed = finish(first.frames, captions[0], font_size=size)
    frames = np.empty((len(captions), *framed.shape[1:]), dtype=np.uint8)
    frames[0] = framed[0]

    def draw(epoch: int) -> int:
        part = grid(epoch)
        frames[epoch] = finish(part.frames, captions[epoch], font_size=size)[0]
        return part.nonfinite

    # numpy work on whole arrays lets go of the GIL, so the epochs are drawn on the
    # process's helper threads (generator/threads.py); the frames do not depend on how many.
    with ThreadPoolExecutor(max_workers=helper_threads()) as pool:
        nonfinite = first.nonfinite + sum(pool.map(draw, range(1, len(captions))))
    return Frames(frames, first.palette, nonfinite)


def strip_frames(
    values: np.ndarray, captions: Sequence[str], *, max_side: int = defaults.MAX_SIDE
) -> Frames:
    """``(E, C)`` values of a layer of 1×1 maps as its channel strip (rows = epochs,
    columns = channels, one symmetric scale for the layer: ``strip.strip_indices``),
    revealed one epoch per frame and captioned per frame; always on the diverging
    colormap, as the values are signed and share one scale."""
    image, note = strip_indices(values, max_w=max_side, max_h=(max_side - caption_room("")) // 2)
    frames = reveal(image, len(values))
    size = caption_font_size(captions, image.shape[1])
    framed = np.stack(
        [finish(frames[e : e + 1], captions[e], font_size=size)[0] for e in range(len(frames))]
    )
    return Frames(framed, palette(STRIP_COLORMAP), nonfinite_count(values), note)


def channel_frames(
    values: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    colormap: str = defaults.COLORMAP,
    captions: Sequence[str] | str | None = None,
    min_side: int = 256,
    max_side: int = defaults.MAX_SIDE,
    position: str = "bottom",
) -> Frames:
    """One channel over epochs, ``(E, H, W)`` (or ``(E,)`` for a linear unit) with scales
    ``(E,)`` -> ``(E, H', W')`` index ``Frames``.

    Upscaled by an integer factor to at least ``min_side`` px (a single map is looked at
    closely), never beyond ``max_side``.
    """
    check_colormap(colormap)
    values = np.asarray(values)
    if values.ndim == 1:  # a linear unit: one cell per epoch
        values = values[:, None, None]
    e = values.shape[0]
    neg = np.broadcast_to(np.asarray(neg, dtype=np.float32), (e,))[:, None, None]
    pos = np.broadcast_to(np.asarray(pos, dtype=np.float32), (e,))[:, None, None]
    values = _shrink_first(
        values[:, None], 1, 1, min_tile=min_side, max_side=max_side, captions=captions, sep=0
    )[:, 0]
    mapped = map_values(values, neg, pos)
    h, w = values.shape[1:]
    th, tw = tile_size(
        h, w, 1, 1, min_tile=min_side, max_w=max_side, max_h=max_side - caption_room(captions)
    )
    frames = finish(resize_nearest(mapped.indices, th, tw), captions, position=position)
    return Frames(frames, palette(colormap), mapped.nonfinite)


def image_grid_frames(
    images: np.ndarray,
    *,
    max_side: int,
    min_tile: int,
    captions: Sequence[str] | None = None,
    sep: int = 2,
) -> Frames:
    """``(T, N, h, w, 3)`` RGB images -> RGB ``Frames`` (T, H, W, 3): per frame a
    near-square grid of the N images (row by row), fitting ``max_side`` with its caption.
    Shared by every view that shows pictures rather than maps (dataset-example patches,
    feature visualizations); a non-square picture keeps its aspect."""
    rows, cols = grid_shape(images.shape[1])
    height, width = images.shape[2:4]
    th, tw = captioned_tile_size(
        height, width, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    tiles = resize_nearest(images, th, tw, axes=(2, 3))
    background, separator, text = (
        rgb_of(i) for i in (BACKGROUND_INDEX, SEPARATOR_INDEX, TEXT_INDEX)
    )
    grid = tile(tiles, cols, sep=sep, sep_fill=separator, empty_fill=background)
    return Frames(finish(grid, captions, text=text, background=background), None)
