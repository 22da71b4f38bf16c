"""Conv kernels over epochs, each drawn in the layout its shape calls for, and their change.

Layouts (``kernel_layout``), decided from the weight's shape, never from a layer's name:
``depthwise`` (O x 1 x k x k: one k x k tile per channel), ``matrix`` (1x1 kernels: an
O x I heatmap), ``rgb`` (3 inputs) and ``grid`` (any other). ``kernel_change_frames`` draws
W_e - W_0 in the same layout on one fixed symmetric scale per layer.

A first layer that reads RGB (``I == 3``) shows each kernel as a small colour image, the
classic filter picture: weights normalised symmetrically around 0 (zero is mid grey), so a
kernel that only responds to red reads reddish. Deeper layers have no colour meaning per
input, so each (out, in) slice is a patch coloured by the colormap: rows are output
channels, columns input channels.

Cap (documented choice): a deep grid shows at most ``max_out x max_in`` patches, the *first*
output and input channels (stable across epochs and easy to name; ``Frames.note`` says
what was left out), and the grid then shrinks its patches to fit ``max_side`` like every
other grid.

Scales reuse the activation scale modes, with a kernel's "channel" being its output
channel: ``frame`` = per (epoch, out-channel), ``channel`` (default) = per out-channel
over epochs (growth shows), ``layer`` = one scale for the layer. Kernel weights are small,
so the scale is computed from them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generator import defaults
from generator.render.colormaps import (
    BACKGROUND_INDEX,
    NAN_INDEX,
    SEPARATOR_INDEX,
    TEXT_INDEX,
    check_colormap,
    compute_scales,
    map_values,
    palette,
    rgb_of,
    symmetric,
)
from generator.render.frames import Frames
from generator.render.layout import (
    caption_room,
    captioned_tile_size,
    finish,
    grid_shape,
    resize_nearest,
    tile,
)
from generator.render.strip import peak_pool

RGB, MATRIX, DEPTHWISE, GRID = "rgb", "matrix", "depthwise", "grid"
MATRIX_MIN_CELL = 3  # px: a 1x1-kernel heatmap pools blocks of kernels rather than go below
LAYOUTS = (RGB, MATRIX, DEPTHWISE, GRID)
RGB_TEXT, RGB_BACKGROUND, RGB_NAN = (rgb_of(i) for i in (TEXT_INDEX, BACKGROUND_INDEX, NAN_INDEX))


def kernel_scale(weights: np.ndarray, mode: str = "channel") -> np.ndarray:
    """``(E, O)`` symmetric scale (max |w|) of each out-kernel, pooled as ``mode`` says."""
    w = np.asarray(weights, dtype=np.float32)
    axes = tuple(range(2, w.ndim))
    with np.errstate(invalid="ignore"):
        finite = np.where(np.isfinite(w), w, np.nan)
        lo = np.fmin.reduce(finite, axis=axes)[:, None, :]  # (E, 1, O)
        hi = np.fmax.reduce(finite, axis=axes)[:, None, :]
    return symmetric(compute_scales(lo, hi, mode)).pos[:, 0, :]


def rgb_patches(weights: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, int]:
    """``(E, O, 3, kh, kw)`` weights / ``(E, O)`` scale -> ``(E, O, kh, kw, 3)`` uint8 RGB.

    Zero is grey 128, +scale is 255 and -scale 0 in each input colour; NaN/inf weights take
    the NaN colour. Returns the patches and the count of non-finite weights.
    """
    w = np.asarray(weights, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)[:, :, None, None, None]
    finite = np.isfinite(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(finite & (s > 0), w / s, 0)
    rgb = np.rint(128 + 127 * np.clip(norm, -1, 1)).astype(np.uint8)
    rgb = np.moveaxis(rgb, 2, -1)  # (E, O, kh, kw, 3)
    bad = ~np.moveaxis(finite, 2, -1).all(axis=-1)
    rgb[bad] = RGB_NAN
    return rgb, int(w.size - np.count_nonzero(finite))


def _rgb_kernel_frames(
    weights: np.ndarray,
    scale: np.ndarray,
    *,
    min_tile: int,
    max_side: int,
    sep: int,
    captions: Sequence[str] | str | None,
) -> Frames:
    patches, nonfinite = rgb_patches(weights, scale)
    e, o, kh, kw, _ = patches.shape
    rows, cols = grid_shape(o)
    th, tw = captioned_tile_size(
        kh, kw, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    grid = tile(
        resize_nearest(patches, th, tw, axes=(2, 3)),
        cols,
        sep=sep,
        sep_fill=RGB_BACKGROUND,
        empty_fill=RGB_BACKGROUND,
    )
    frames = finish(grid, captions, text=RGB_TEXT, background=RGB_BACKGROUND)
    return Frames(frames, None, nonfinite)


def _cap_note(o: int, i: int, shown_o: int, shown_i: int) -> str:
    """What a capped grid leaves out, in words; empty when it shows everything."""
    if (shown_o, shown_i) == (o, i):
        return ""
    if i == 1 or shown_i == i:
        return f"showing out-channels 0–{shown_o - 1} of {o}"
    return f"showing out-channels 0–{shown_o - 1} of {o} and in-channels 0–{shown_i - 1} of {i}"


def kernel_layout(kernel_shape: Sequence[int]) -> str:
    """How a conv weight ``(O, I / groups, kh, kw)`` is best drawn, from its shape alone.

    ``depthwise``: one input per kernel (a depthwise or single-input conv), so each out
    channel is one k x k tile in a near-square grid. ``matrix``: 1x1 kernels are single
    numbers, so the layer is an O x I heatmap (rows out, columns in) rather than thousands
    of one-colour tiles. ``rgb``: a layer reading 3 inputs (the image) as colour patches.
    ``grid``: any other kernel, an (out x in) grid of k x k patches.
    """
    _, i, kh, kw = (int(v) for v in kernel_shape)
    if i == 1:
        return DEPTHWISE
    if kh == kw == 1:
        return MATRIX
    return RGB if i == 3 else GRID


def _index_kernel_frames(
    weights: np.ndarray,
    scale: np.ndarray,
    *,
    colormap: str,
    max_out: int,
    max_in: int,
    min_tile: int,
    max_side: int,
    sep: int,
    captions: Sequence[str] | str | None,
) -> Frames:
    e, o, i, kh, kw = weights.shape
    so, si = min(o, max_out), min(i, max_in)
    s = scale[:, :so, None, None, None]
    mapped = map_values(weights[:, :so, :si], s, s)  # (E, so, si, kh, kw)
    rows, cols = (so, si) if si > 1 else grid_shape(so)
    th, tw = captioned_tile_size(
        kh, kw, rows, cols, min_tile=min_tile, max_side=max_side, captions=captions, sep=sep
    )
    cells = resize_nearest(mapped.indices.reshape(e, so * si, kh, kw), th, tw)
    grid = tile(cells, cols, sep=sep, sep_fill=SEPARATOR_INDEX, empty_fill=BACKGROUND_INDEX)
    return Frames(
        finish(grid, captions), palette(colormap), mapped.nonfinite, _cap_note(o, i, so, si)
    )


def _matrix_kernel_frames(
    weights: np.ndarray,
    scale: np.ndarray,
    *,
    colormap: str,
    cell: int,
    max_side: int,
    captions: Sequence[str] | str | None,
) -> Frames:
    """1x1 kernels ``(E, O, I, 1, 1)`` as an O x I heatmap, cells as large as fit.

    A matrix larger than the frame at ``MATRIX_MIN_CELL`` px a cell (ConvNeXt's 1280 x 320)
    is pooled, not squashed: each cell is the strongest kernel of its block
    (``peak_pool``), so every kernel counts and the cells stay large enough to see."""
    e, o, i = weights.shape[:3]
    s = scale[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(
            s > 0, weights[..., 0, 0] / s, np.where(np.isnan(weights[..., 0, 0]), np.nan, 0)
        )
    room_h = max_side - caption_room(captions)
    pooled, fr, fc = peak_pool(norm, room_h // MATRIX_MIN_CELL, max_side // MATRIX_MIN_CELL)
    mapped = map_values(pooled, 1.0, 1.0)  # (E, O', I')
    rows, cols = pooled.shape[1:]
    # Each axis gets its own integer cell size (at most ``cell`` px), so a 576 x 96 layer
    # fills the frame instead of drawing 1 px squares.
    h = rows * max(1, min(cell, room_h // rows))
    w = cols * max(1, min(cell, max_side // cols))
    heatmap = resize_nearest(mapped.indices, h, w)
    note = f"1×1 kernels: rows are the {o} out-channels, columns the {i} in-channels"
    if fr > 1 or fc > 1:
        note += f"; each cell is the strongest of {fr} × {fc} kernels"
    nonfinite = int(weights.size - np.count_nonzero(np.isfinite(weights)))
    return Frames(finish(heatmap, captions), palette(colormap), nonfinite, note)


def kernel_frames(
    weights: np.ndarray,
    *,
    scale: str = "channel",
    colormap: str = "diverging",
    layout: str | None = None,
    max_out: int = 32,
    max_in: int = 32,
    min_tile: int = 24,
    max_side: int = defaults.MAX_SIDE,
    sep: int = 1,
    captions: Sequence[str] | str | None = None,
) -> Frames:
    """A conv layer's kernels ``(E, O, I, kh, kw)`` over epochs as one frame per epoch.

    ``layout`` (default: ``kernel_layout`` of the shape) picks the picture. ``rgb`` gives
    RGB ``Frames`` ``(E, H, W, 3)`` with ``palette=None``, each kernel a colour patch tiled
    near-square. The others give index ``Frames`` ``(E, H, W)`` with the ``colormap``
    palette: ``matrix`` an O x I heatmap of 1x1 kernels; ``depthwise`` one tile per out
    channel; ``grid`` an (out x in) grid of patches. Depthwise and grid layouts are capped
    at ``max_out`` (x ``max_in``) kernels (see ``Frames.note``); patches are upscaled to
    about ``min_tile`` px (3x3 -> 24 px) and every frame fits ``max_side``.
    """
    check_colormap(colormap)
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 5:
        raise ValueError(f"kernels must be (E, O, I, kh, kw), got {w.shape}")
    layout = layout or kernel_layout(w.shape[1:])
    if layout not in LAYOUTS:
        raise ValueError(f"kernel layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if layout == RGB and w.shape[2] != 3:
        raise ValueError(f"RGB kernel patches need 3 input channels, got {w.shape[2]}")
    scales = kernel_scale(w, scale)
    if layout == RGB:
        return _rgb_kernel_frames(
            w, scales, min_tile=min_tile, max_side=max_side, sep=sep, captions=captions
        )
    if layout == MATRIX:
        return _matrix_kernel_frames(
            w, scales, colormap=colormap, cell=min_tile, max_side=max_side, captions=captions
        )
    return _index_kernel_frames(
        w,
        scales,
        colormap=colormap,
        max_out=max_out,
        max_in=max_in,
        min_tile=min_tile,
        max_side=max_side,
        sep=sep,
        captions=captions,
    )


def change_layout(kernel_shape: Sequence[int]) -> str:
    """The layout of a layer's kernel change: its kernels' own, but never RGB, since a
    change is signed and is read on the colormap (red = less, blue = more), per input."""
    layout = kernel_layout(kernel_shape)
    return GRID if layout == RGB else layout


def kernel_change(weights: np.ndarray) -> np.ndarray:
    """``(E, O, I, kh, kw)`` weights -> each epoch's change since initialisation, W_e - W_0."""
    w = np.asarray(weights, dtype=np.float32)
    return w - w[:1]


def kernel_change_frames(
    weights: np.ndarray,
    *,
    colormap: str = "diverging",
    layout: str | None = None,
    max_out: int = 32,
    max_in: int = 32,
    min_tile: int = 24,
    max_side: int = defaults.MAX_SIDE,
    sep: int = 1,
    captions: Sequence[str] | str | None = None,
) -> Frames:
    """W_e - W_0 of kernels ``(E, O, I, kh, kw)`` drawn as ``kernel_frames`` draws the
    kernels (its options but ``scale``; ``layout`` defaults to ``change_layout``), on one
    fixed symmetric scale for the whole layer and every epoch (max |W_e - W_0|), so a
    kernel that keeps moving gets stronger in colour and epoch 0 is neutral."""
    w = np.asarray(weights, dtype=np.float32)
    return kernel_frames(
        kernel_change(w),
        scale="layer",
        colormap=colormap,
        layout=layout or change_layout(w.shape[1:]),
        max_out=max_out,
        max_in=max_in,
        min_tile=min_tile,
        max_side=max_side,
        sep=sep,
        captions=captions,
    )
