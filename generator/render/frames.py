"""Frames over epochs: a layer's channels tiled into a grid, a single channel, padding.

All pixel work is numpy on whole stacks: values map to palette indices in one call, tiles
are resized by index lookups (nearest neighbour), and the grid is assembled by one reshape,
so a frame costs a few array copies, never a Python loop over pixels.

Sizes: tiny maps (late layers are 4x4 or 1x1) are upscaled by an integer factor so each
tile is at least ``min_tile`` px; a grid that would exceed ``max_side`` px shrinks its
tiles instead (nearest neighbour on indices: exact colours, some rows/columns of a tile
are skipped) so separators stay 1 px and files stay playable. Frames come out with even
dimensions; ``pad_frames(frames, 16)`` pads (never rescales) for MP4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

import generator.render.captions as cap
from generator.render.colormaps import (
    BACKGROUND_INDEX,
    SEPARATOR_INDEX,
    TEXT_INDEX,
    check_colormap,
    map_values,
    palette,
    rgb_of,
)
from generator.threads import helper_threads

MIN_CAPTION_WIDTH = 256


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


def resize_nearest(
    a: np.ndarray, out_h: int, out_w: int, axes: tuple[int, int] = (-2, -1)
) -> np.ndarray:
    """``a`` resized to ``out_h x out_w`` along ``axes`` by nearest neighbour (index lookup).

    Integer upscaling repeats each pixel exactly; downscaling keeps evenly spaced pixels.
    """
    h, w = a.shape[axes[0]], a.shape[axes[1]]
    if (h, w) == (out_h, out_w):
        return a
    rows = np.arange(out_h) * h // out_h
    cols = np.arange(out_w) * w // out_w
    return np.take(np.take(a, rows, axis=axes[0]), cols, axis=axes[1])


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of a near-square grid for ``n`` tiles, ``cols = ceil(sqrt(n))``."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def captioned_tile_size(
    h: int,
    w: int,
    rows: int,
    cols: int,
    *,
    min_tile: int,
    max_side: int,
    captions: Sequence[str] | str | None,
    sep: int,
) -> tuple[int, int]:
    """``tile_size`` for a grid that fits ``max_side`` px square with its caption strip."""
    max_h = max_side - caption_room(captions)
    return tile_size(h, w, rows, cols, min_tile=min_tile, max_w=max_side, max_h=max_h, sep=sep)


def readable_tiles(max_side: int, *, min_tile: int, sep: int = 1) -> int:
    """How many tiles a near-square grid within ``max_side`` px square (less the caption
    strip) holds with each tile at least ``min_tile`` px: the cap of a readable grid."""
    per_side = (max_side - caption_room("") + sep) // (min_tile + sep)
    return max(1, per_side) ** 2  # any n <= k*k lies in at most k x k cells (grid_shape)


def tile_size(
    h: int, w: int, rows: int, cols: int, *, min_tile: int, max_w: int, max_h: int, sep: int = 1
) -> tuple[int, int]:
    """The ``(th, tw)`` each ``h x w`` tile is drawn at in a ``rows x cols`` grid.

    Upscaled by the integer factor that makes the longer side >= ``min_tile``, limited so
    the grid fits ``max_w x max_h``; if even 1x does not fit, shrunk (keeping the aspect)
    to fit, never below 1 px.
    """
    room_w = (max_w - (cols - 1) * sep) / cols
    room_h = (max_h - (rows - 1) * sep) / rows
    want = max(1, math.ceil(min_tile / max(h, w)))
    fits = math.floor(min(room_w / w, room_h / h))
    if fits >= 1:
        factor = min(want, fits)
        return h * factor, w * factor
    shrink = min(room_w / w, room_h / h)
    return max(1, math.floor(h * shrink)), max(1, math.floor(w * shrink))


def tile(
    tiles: np.ndarray,
    cols: int,
    *,
    sep: int = 1,
    sep_fill: int | Sequence[int],
    empty_fill: int | Sequence[int],
) -> np.ndarray:
    """``(T, N, h, w[, 3])`` tiles laid out row-major in ``cols`` columns -> ``(T, H, W[, 3])``.

    Tiles are separated by ``sep`` px of ``sep_fill`` (no outer border); the unused cells of
    the last row get ``empty_fill``. ``H = rows*h + (rows-1)*sep``, likewise ``W``. The
    result may be a non-contiguous view (``finish`` makes the final copy).
    """
    t, n, h, w = tiles.shape[:4]
    rest = tiles.shape[4:]
    rows, full = math.ceil(n / cols), n // cols
    canvas = np.empty((t, rows, h + sep, cols, w + sep, *rest), dtype=tiles.dtype)
    canvas[:, :, h:] = np.asarray(sep_fill, dtype=tiles.dtype)  # separator rows
    canvas[:, :, :h, :, w:] = np.asarray(sep_fill, dtype=tiles.dtype)  # separator columns
    cells = canvas[:, :, :h, :, :w].swapaxes(2, 3)  # (t, rows, cols, h, w)
    cells[:, :full] = tiles[:, : full * cols].reshape(t, full, cols, h, w, *rest)
    if full < rows:  # a partial last row
        cells[:, full, : n - full * cols] = tiles[:, full * cols :]
        cells[:, full, n - full * cols :] = np.asarray(empty_fill, dtype=tiles.dtype)
    flat = canvas.reshape(t, rows * (h + sep), cols * (w + sep), *rest)
    return flat[:, : flat.shape[1] - sep, : flat.shape[2] - sep]  # a view; callers copy


def pad_frames(
    frames: np.ndarray, multiple: int = 2, fill: int | Sequence[int] = 0, *, min_width: int = 0
) -> np.ndarray:
    """``(T, H, W[, 3])`` padded right/bottom with ``fill`` so H and W are multiples of
    ``multiple`` (2 for any video, 16 for H.264 macroblocks) and W >= ``min_width``.

    Padding, never rescaling: a tile's pixels keep their size. Width padding from
    ``min_width`` is split left/right so the content stays centred.
    """
    h, w = frames.shape[1:3]
    new_w = max(w, min_width)
    new_w += -new_w % multiple
    new_h = h + (-h % multiple)
    if (new_h, new_w) == (h, w):
        return frames
    out = np.empty((frames.shape[0], new_h, new_w, *frames.shape[3:]), dtype=frames.dtype)
    out[...] = np.asarray(fill, dtype=frames.dtype)
    left = (max(w, min_width) - w) // 2
    out[:, :h, left : left + w] = frames
    return out


def finish(
    frames: np.ndarray,
    captions: Sequence[str] | str | None,
    *,
    text: cap.Colour = TEXT_INDEX,
    background: cap.Colour = BACKGROUND_INDEX,
    position: str = "bottom",
    font_size: int | None = None,
) -> np.ndarray:
    """Add the caption strip (if any) and pad to even dimensions with ``background``.

    A captioned frame is widened to ``MIN_CAPTION_WIDTH`` so its text stays legible. Pass
    ``font_size`` (see ``caption_font_size``) when captioning a sequence piece by piece, so
    every piece gets the same strip.
    """
    if captions is None:
        return np.ascontiguousarray(pad_frames(frames, 2, background))
    return cap.add_captions(
        frames,
        captions,
        text=text,
        background=background,
        position=position,
        min_width=MIN_CAPTION_WIDTH,
        multiple=2,
        font_size=font_size,
    )


def caption_font_size(captions: Sequence[str], frame_width: int) -> int:
    """The one font size ``finish`` would choose for all ``captions`` at this frame width."""
    return cap.caption_size(captions, max(frame_width, MIN_CAPTION_WIDTH))


def caption_room(captions: Sequence[str] | str | None) -> int:
    """Pixels of height to keep free for a caption strip, so the whole frame fits."""
    return 0 if captions is None else cap.strip_height(cap.MAX_FONT)


def grid_frames(
    indices: np.ndarray,
    *,
    min_tile: int = 48,
    max_side: int = 1024,
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
    scale = (
        np.broadcast_to(np.asarray(s, dtype=np.float32), values.shape[:2])[..., None, None]
        for s in (neg, pos)
    )
    return values, *scale


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
    colormap: str = "seed",
    captions: Sequence[str] | str | None = None,
    min_tile: int = 48,
    max_side: int = 1024,
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
    colormap: str = "seed",
    max_side: int = 1024,
) -> Frames:
    """One probe's layer grid over ``len(captions)`` epochs, reading one epoch at a time
    (``read(epoch)`` -> ``(C, H, W)`` or ``(N,)`` values) into one preallocated array: the
    only copy of the frames, so memory grows by one frame per epoch, never by a layer's
    activations. ``neg`` / ``pos`` are ``(E, C)`` scales; every frame gets the same caption
    strip, sized for the longest caption."""
    room = max_side - caption_room("")

    def grid(epoch: int) -> Frames:
        return layer_frames(
            read(epoch)[None],
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


def channel_frames(
    values: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    colormap: str = "seed",
    captions: Sequence[str] | str | None = None,
    min_side: int = 256,
    max_side: int = 1024,
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
    """``(T, N, S, S, 3)`` RGB images -> RGB ``Frames`` (T, H, W, 3): per frame a
    near-square grid of the N images (row by row), fitting ``max_side`` with its caption.
    Shared by every view that shows pictures rather than maps (dataset-example patches,
    feature visualizations)."""
    rows, cols = grid_shape(images.shape[1])
    side = images.shape[2]
    th, tw = captioned_tile_size(
        side, side, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    tiles = resize_nearest(images, th, tw, axes=(2, 3))
    background, separator, text = (
        rgb_of(i) for i in (BACKGROUND_INDEX, SEPARATOR_INDEX, TEXT_INDEX)
    )
    grid = tile(tiles, cols, sep=sep, sep_fill=separator, empty_fill=background)
    return Frames(finish(grid, captions, text=text, background=background), None)
