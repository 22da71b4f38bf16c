"""Conv kernels over epochs: first-layer kernels as colour patches, deeper ones as a grid.

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
from generator.render.frames import (
    Frames,
    captioned_tile_size,
    finish,
    grid_shape,
    resize_nearest,
    tile,
)

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
    return f"showing out-channels 0–{shown_o - 1} of {o} and in-channels 0–{shown_i - 1} of {i}"


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


def kernel_frames(
    weights: np.ndarray,
    *,
    scale: str = "channel",
    colormap: str = "diverging",
    as_rgb: bool | None = None,
    max_out: int = 32,
    max_in: int = 32,
    min_tile: int = 24,
    max_side: int = 1024,
    sep: int = 1,
    captions: Sequence[str] | str | None = None,
) -> Frames:
    """A conv layer's kernels ``(E, O, I, kh, kw)`` over epochs as one frame per epoch.

    ``as_rgb`` (default: ``I == 3``) gives RGB ``Frames`` ``(E, H, W, 3)`` with
    ``palette=None``: each kernel a colour patch, tiled near-square. Otherwise index
    ``Frames`` ``(E, H, W)`` with the ``colormap`` palette: an (out x in) grid, capped at
    ``max_out x max_in`` (see ``Frames.note``). Patches are upscaled to about ``min_tile``
    px (3x3 -> 24 px) and the frame fits ``max_side``.
    """
    check_colormap(colormap)
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 5:
        raise ValueError(f"kernels must be (E, O, I, kh, kw), got {w.shape}")
    scales = kernel_scale(w, scale)
    if as_rgb is None:
        as_rgb = w.shape[2] == 3
    if as_rgb and w.shape[2] != 3:
        raise ValueError(f"RGB kernel patches need 3 input channels, got {w.shape[2]}")
    if as_rgb:
        return _rgb_kernel_frames(
            w, scales, min_tile=min_tile, max_side=max_side, sep=sep, captions=captions
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
