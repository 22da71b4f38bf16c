"""Layout primitives every picture shares: nearest-neighbour resizing, tile sizes that fit
a side limit, tiling into a grid with separators, padding to even sides, and the caption
strip. Apart from ``frames`` (which draws activations) because kernels, probes, contact
sheets and patch grids lay out their own tiles with them.

Sizes: tiny maps (late layers are 4x4 or 1x1) are upscaled by an integer factor so each
tile is at least ``min_tile`` px; a grid that would exceed ``max_side`` px shrinks its
tiles instead (nearest neighbour on indices: exact colours, some rows/columns of a tile
are skipped) so separators stay 1 px and files stay playable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

import generator.render.captions as cap
from generator.render.colormaps import BACKGROUND_INDEX, TEXT_INDEX

MIN_CAPTION_WIDTH = 256


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


def rgb_pictures(images: np.ndarray) -> np.ndarray:
    """Colour-last pictures of K channels as RGB, as the probes are shown by default: grey
    repeated, RGB as it is, more than three by their first three, two with a black third."""
    channels = images.shape[-1]
    if channels == 3:
        return images
    if channels == 1:
        return np.repeat(images, 3, axis=-1)
    if channels > 3:
        return np.ascontiguousarray(images[..., :3])
    return np.pad(images, [(0, 0)] * (images.ndim - 1) + [(0, 3 - channels)])
