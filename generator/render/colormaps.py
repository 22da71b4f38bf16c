"""Colormaps as palettes: values become uint8 palette indices, a palette gives them colour.

A frame is a ``uint8`` array of palette indices and a colormap is a ``(256, 3)`` uint8
palette, so a GIF frame is the index array itself (no quantisation) and an MP4 frame is one
lookup ``palette[indices]``. Index layout, shared by every colormap:

    0 .. 250   the value ramp, most negative (0) .. zero (``ZERO_INDEX`` = 125) .. most
               positive (250); the two halves are scaled separately
    251        accent (markers), 252 caption text, 253 background (caption strips, empty
               grid cells), 254 separator between tiles, 255 NaN / ±inf

Scale modes say which activations share a colour scale; ``compute_scales`` derives the
scales from the per-channel ``min`` / ``max`` statistics training stored, so colouring a
layer never needs a second pass over its activations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from generator import defaults
from generator.errors import OptionError

COLORMAPS = ("seed", "diverging")
SCALE_MODES = ("frame", "channel", "layer")

HALF = 125  # ramp steps on each side of zero
ZERO_INDEX = HALF  # the neutral colour
RAMP_SIZE = 2 * HALF + 1  # 251 ramp indices, 0..250
CHUNK = 1 << 16  # elements per block in map_values (fits in L2 cache)
ACCENT_INDEX, TEXT_INDEX, BACKGROUND_INDEX, SEPARATOR_INDEX, NAN_INDEX = range(251, 256)

# (accent, text, background, separator, nan) for each colormap, in index order 251..255.
_SPECIALS = {
    "seed": ((0, 200, 0), (240, 240, 240), (16, 16, 16), (96, 96, 96), (255, 255, 0)),
    "diverging": ((255, 160, 0), (20, 20, 20), (250, 250, 250), (170, 170, 170), (255, 0, 255)),
}
# ColorBrewer RdBu anchors from zero outwards (white -> dark red / dark blue).
_RDBU_NEG = (
    (255, 255, 255),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
)
_RDBU_POS = (
    (255, 255, 255),
    (209, 229, 240),
    (146, 197, 222),
    (67, 147, 195),
    (33, 102, 172),
    (5, 48, 97),
)


class Mapped(NamedTuple):
    """Palette indices for some values and how many of them were NaN or ±inf."""

    indices: np.ndarray
    nonfinite: int


class Scales(NamedTuple):
    """Negative and positive colour scales (magnitudes >= 0), each ``(E, P, C)`` float32."""

    neg: np.ndarray
    pos: np.ndarray


def check_colormap(name: str) -> str:
    """``name`` if it is one of ``COLORMAPS``; else a one-line ``OptionError``."""
    if name not in COLORMAPS:
        raise OptionError(f"colormap {name!r}: use one of {', '.join(COLORMAPS)}")
    return name


def check_scale_mode(mode: str) -> str:
    """``mode`` if it is one of ``SCALE_MODES``; else a one-line ``OptionError``."""
    if mode not in SCALE_MODES:
        raise OptionError(f"scale mode {mode!r}: use one of {', '.join(SCALE_MODES)}")
    return mode


def _ramp_half(anchors: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """``(HALF + 1, 3)`` colours from zero (row 0) to full strength, through ``anchors``."""
    t = np.linspace(0.0, 1.0, HALF + 1)
    at = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.asarray(anchors, dtype=np.float64)
    return np.stack([np.interp(t, at, rgb[:, c]) for c in range(3)], axis=1)


def palette(name: str = defaults.COLORMAP) -> np.ndarray:
    """The ``(256, 3)`` uint8 palette of colormap ``name`` (a fresh, writable copy)."""
    check_colormap(name)
    if name == "seed":
        # The original look: black at zero, pure red / blue growing linearly with |value|.
        neg = _ramp_half(((0, 0, 0), (255, 0, 0)))
        pos = _ramp_half(((0, 0, 0), (0, 0, 255)))
    else:
        neg, pos = _ramp_half(_RDBU_NEG), _ramp_half(_RDBU_POS)
    ramp = np.concatenate([neg[::-1], pos[1:]])  # (RAMP_SIZE, 3)
    out = np.concatenate([np.rint(ramp), np.asarray(_SPECIALS[name], dtype=np.float64)])
    return out.astype(np.uint8)


def rgb_of(index: int, name: str = defaults.COLORMAP) -> tuple[int, int, int]:
    """The colour of palette ``index`` as an RGB triple, for frames drawn in RGB (kernel
    patches, probe charts) so they share the look of the index frames."""
    return tuple(int(v) for v in palette(name)[index])  # type: ignore[return-value]


def _inverse(scale: ArrayLike) -> np.ndarray:
    """``HALF / |scale|`` as float32, 0 where the scale is 0 or not finite (-> zero colour).

    Capped at the largest float32: a subnormal scale (1e-38) would otherwise invert to
    inf, and 0 * inf = NaN would turn a zero value into an arbitrary colour.
    """
    s = np.abs(np.asarray(scale, dtype=np.float32)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where((s > 0) & np.isfinite(s), HALF / s, 0)
    return np.minimum(inverse, np.finfo(np.float32).max).astype(np.float32)


def _blocks(shape: tuple[int, ...]) -> Iterator[tuple[int | slice, ...]]:
    """Index tuples cutting ``shape`` along its leading axes into blocks of about
    ``CHUNK`` elements, so each block's temporaries stay in cache."""
    k, inner = len(shape), 1
    while k > 0 and inner * shape[k - 1] <= CHUNK:
        k -= 1
        inner *= shape[k]
    if k == 0:
        yield ()
        return
    step = max(1, CHUNK // inner)
    for outer in np.ndindex(*shape[: k - 1]):
        for start in range(0, shape[k - 1], step):
            yield (*outer, slice(start, start + step))


# Every float16 as float32, looked up by its bits: numpy's own float16 conversion took
# 40 % of mapping a float16 store's activations (stop 21); the table is exact.
_FLOAT16_TO_32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
_FLOAT16_TO_32.flags.writeable = False  # shared by every thread


def _as_float32(values: np.ndarray) -> np.ndarray:
    """A new float32 array of ``values``; float16 (how stores keep activations) through
    ``_FLOAT16_TO_32``."""
    if values.dtype == np.float16:
        return np.take(_FLOAT16_TO_32, values.view(np.uint16))
    return values.astype(np.float32)


def _map_block(
    values: np.ndarray, inv_neg: np.ndarray, inv_pos: np.ndarray, out: np.ndarray
) -> int:
    """Write one block's indices into ``out``; return its count of NaN/inf values."""
    x = _as_float32(values)  # a private copy, changed in place
    finite = np.isfinite(x)
    bad = x.size - int(np.count_nonzero(finite))
    if bad:
        x[~finite] = 0
    with np.errstate(over="ignore"):  # huge / tiny-scale products saturate: clipped below
        neg = np.minimum(x, 0)
        neg *= inv_neg
        np.maximum(x, 0, out=x)
        x *= inv_pos
        x += neg
    np.rint(x, out=x)
    np.clip(x, -HALF, HALF, out=x)
    x += ZERO_INDEX
    np.copyto(out, x, casting="unsafe")
    if bad:
        out[~finite] = NAN_INDEX
    return bad


def map_values(values: ArrayLike, neg_scale: ArrayLike, pos_scale: ArrayLike) -> Mapped:
    """Palette indices for ``values`` (any shape), negative and positive halves scaled apart.

    ``neg_scale`` / ``pos_scale`` are magnitudes (sign ignored) broadcastable against
    ``values``, e.g. ``(E, C, 1, 1)`` for ``(E, C, H, W)``: a value ``v < 0`` maps to
    ``ZERO_INDEX - HALF * |v| / neg_scale``, rounded and clipped to the ramp. A zero scale
    maps its values to the zero colour (no division by zero); NaN / ±inf map to
    ``NAN_INDEX`` and are counted in ``Mapped.nonfinite`` for the caller to report.
    Works block by block (a few cache-sized float32 temporaries, whatever the input size).
    """
    v = np.asarray(values)
    inv_neg, inv_pos = _inverse(neg_scale), _inverse(pos_scale)
    shape = np.broadcast_shapes(v.shape, inv_neg.shape, inv_pos.shape)
    if not shape:  # a single value: map it as (1,)
        one = map_values(v.reshape(1), np.reshape(neg_scale, 1), np.reshape(pos_scale, 1))
        return Mapped(one.indices.reshape(()), one.nonfinite)
    v, inv_neg, inv_pos = (np.broadcast_to(a, shape) for a in (v, inv_neg, inv_pos))
    out = np.empty(shape, dtype=np.uint8)
    nonfinite = 0
    for block in _blocks(shape):
        nonfinite += _map_block(v[block], inv_neg[block], inv_pos[block], out[block])
    return Mapped(out, nonfinite)


def _reduce_max(a: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Max over ``axis`` (kept), ignoring NaN; an all-NaN or empty slice (a run with no
    epoch yet) gives 0, the zero colour. NaN is ``fmax``'s identity, so it starts the fold."""
    out = np.fmax.reduce(a, axis=axis, keepdims=True, initial=np.nan) if axis else a
    return np.nan_to_num(out, nan=0.0)


def compute_scales(
    stat_min: ArrayLike, stat_max: ArrayLike, mode: str = "channel", *, share_channels: bool = False
) -> Scales:
    """Colour scales for one layer from its stored ``(E, P, C)`` per-channel min and max.

    ``frame``: each (epoch, probe, channel) on its own, as the original project did;
    ``channel``: one scale per channel over every epoch and probe, so growth in magnitude
    shows; ``layer``: one scale for the whole layer over epochs. ``share_channels`` also
    pools over channels (use it for linear layers, where a unit's min equals its max and a
    per-unit frame scale would saturate every cell). Non-finite statistics (from NaN/inf
    activations) are ignored. Both arrays come back as read-only ``(E, P, C)`` views.
    """
    check_scale_mode(mode)
    lo = np.asarray(stat_min, dtype=np.float32)
    hi = np.asarray(stat_max, dtype=np.float32)
    if lo.ndim != 3 or lo.shape != hi.shape:
        raise ValueError(f"min and max must both be (E, P, C), got {lo.shape} and {hi.shape}")
    neg = np.where(np.isfinite(lo), np.maximum(-lo, 0), np.nan)
    pos = np.where(np.isfinite(hi), np.maximum(hi, 0), np.nan)
    axis = {"frame": (), "channel": (0, 1), "layer": (0, 1, 2)}[mode]
    if share_channels:
        axis = tuple(sorted({*axis, 2}))
    return Scales(
        *(np.broadcast_to(_reduce_max(s, axis).astype(np.float32), lo.shape) for s in (neg, pos))
    )


def symmetric(scales: Scales) -> Scales:
    """Both halves set to the larger magnitude, so equal |value| gives equal strength."""
    both = np.maximum(scales.neg, scales.pos)
    return Scales(both, both)


# -- palette helpers for the encoders ------------------------------------------------------
LUT_BITS = 5  # bits per channel of the RGB -> palette-index lookup table (32 768 cells)
# BT.709 luma weights: browsers show untagged and tagged HD video with this matrix.
KR, KB = 0.2126, 0.0722


def nearest_index_table(colours: np.ndarray) -> np.ndarray:
    """A ``(2**15,)`` uint8 table: for each RGB cell (5 bits per channel) the index of
    the nearest of ``colours`` ``(N <= 256, 3)``, so mapping a whole sequence to a fixed
    palette is one gather (``indices_of``), never a per-frame quantiser call."""
    levels = (np.arange(1 << LUT_BITS, dtype=np.float32) + 0.5) * (256 >> LUT_BITS)
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    cells = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)  # (32768, 3)
    pal = np.asarray(colours, dtype=np.float32)
    # |c - p|^2 = |c|^2 - 2 c.p + |p|^2; |c|^2 is the same for every p, so it drops out.
    distance = (pal * pal).sum(axis=1)[None, :] - 2 * cells @ pal.T
    return distance.argmin(axis=1).astype(np.uint8)


def indices_of(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> ``(...)`` uint8 palette indices through a
    ``nearest_index_table`` (vectorised over every frame at once)."""
    shift = 8 - LUT_BITS
    r, g, b = (rgb[..., c] >> shift for c in range(3))
    cell = (r.astype(np.intp) << (2 * LUT_BITS)) | (g.astype(np.intp) << LUT_BITS) | b
    return table[cell]


def yuv_of(rgb: ArrayLike) -> np.ndarray:
    """RGB ``(..., 3)`` (0..255) -> limited-range BT.709 Y, Cb, Cr ``(..., 3)`` float32,
    the colours a browser shows for a yuv420p video tagged BT.709. For a palette it is a
    ``(256, 3)`` table, so an index frame's planes are lookups, never a colour conversion."""
    c = np.asarray(rgb, dtype=np.float32) / 255
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    y = KR * r + (1 - KR - KB) * g + KB * b
    cb = (b - y) / (2 * (1 - KB))
    cr = (r - y) / (2 * (1 - KR))
    return np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], axis=-1).astype(np.float32)
