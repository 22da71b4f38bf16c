"""Frames to yuv420p (BT.709, limited range), computed in numpy: index frames through
their palette's ``PaletteYuv`` lookups, two pixels per lookup and no colour matrix per
pixel; RGB frames through ``yuv_of``. Apart from the writers because it is the hot loop of
every video (bench/README.md, stop 21) and what tests and benches compare against."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import av
import numpy as np

from generator.render.colormaps import yuv_of


@dataclass(frozen=True, eq=False)
class PaletteYuv:
    """A palette's yuv420p lookups, indexed by a *pair* of horizontally adjacent pixels
    (an index frame read as little-endian uint16, ``left | right << 8``), so each lookup
    converts two pixels: a third of the time of per-pixel lookups on a 1-megapixel grid,
    where the conversion was a third of writing its WebM (bench/README.md, stop 21).

    ``luma_pairs`` ``(65536,)`` little-endian uint16 holds both pixels' Y bytes in frame
    order. ``chroma_pairs`` ``(65536,)`` uint32 holds the sum of both pixels' Cb and Cr in
    1/64 steps, packed into its low and high 16 bits, so a 2x2 block's sums are two lookups
    and one add (four 1/64-step values of at most 255, plus 128 to round, sum to at most
    65 408: the halves never carry into each other)."""

    luma_pairs: np.ndarray
    chroma_pairs: np.ndarray

    @classmethod
    def of(cls, palette: np.ndarray) -> PaletteYuv:
        """The lookups of a ``(256, 3)`` palette's colours (``yuv_of``); the same palette
        (a build has a handful) is computed once per process."""
        palette = np.ascontiguousarray(palette, dtype=np.uint8)
        return _palette_yuv(palette.tobytes())


@lru_cache(maxsize=16)
def _palette_yuv(palette: bytes) -> PaletteYuv:
    """``PaletteYuv.of`` for a palette's bytes (hashable, so the tables are made once)."""
    table = yuv_of(np.frombuffer(palette, dtype=np.uint8).reshape(256, 3))
    luma = np.rint(table[:, 0]).astype(PAIR)
    cb, cr = (np.rint(table[:, k] * CHROMA_STEPS).astype(np.uint32) for k in (1, 2))
    chroma = cb | (cr << 16)
    # Row: the right pixel (high byte), column: the left pixel (low byte).
    luma_pairs = (luma[None, :] | (luma[:, None] << 8)).astype(PAIR).ravel()
    chroma_pairs = (chroma[None, :] + chroma[:, None]).ravel()
    for pairs in (luma_pairs, chroma_pairs):
        pairs.flags.writeable = False  # shared by every caller of this palette
    return PaletteYuv(luma_pairs, chroma_pairs)


CHROMA_STEPS = 64  # fixed-point steps per chroma level in ``PaletteYuv.chroma_pairs``
PAIR = np.dtype("<u2")  # two uint8 pixels, the left one in the low byte on any machine


def yuv420_planes(frame: np.ndarray, lookup: PaletteYuv | None) -> np.ndarray:
    """One even-sized frame as a ``(H * 3 // 2, W)`` uint8 yuv420p image (Y, then Cb and
    Cr at half resolution, each the mean of its 2x2 block), BT.709 limited range: see
    ``_fill_yuv420``. The encoders get ``yuv420_frame``; this array form is what tests and
    benches compare against."""
    height, width = frame.shape[:2]
    planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    _fill_yuv420(frame, lookup, planes[:height], chroma[0], chroma[1])
    return planes


def yuv420_frame(frame: np.ndarray, lookup: PaletteYuv | None) -> av.VideoFrame:
    """One even-sized frame as a yuv420p ``av.VideoFrame`` (the planes of
    ``yuv420_planes``), computed straight into the frame's own planes: PyAV's
    ``from_ndarray`` copies an array twice, which cost as much as computing a 1-megapixel
    frame's planes (bench/README.md, stop 21)."""
    height, width = frame.shape[:2]
    image = av.VideoFrame(width, height, "yuv420p")
    _fill_yuv420(frame, lookup, *(_plane_array(plane) for plane in image.planes))
    return image


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable ``(height, width)`` view of one plane of a frame, without the padding
    FFmpeg adds to each row."""
    # a plane has the buffer protocol; PyAV's stubs do not say so
    rows = np.frombuffer(plane, dtype=np.uint8)  # type: ignore[call-overload]
    rows = rows.reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _fill_yuv420(
    frame: np.ndarray, lookup: PaletteYuv | None, y: np.ndarray, cb: np.ndarray, cr: np.ndarray
) -> None:
    """Write an even-sized frame's Y plane into ``y`` and the 2x2 means of its Cb and Cr
    into ``cb`` and ``cr`` (BT.709 limited range); callers pad odd sides (``pad_frames``).
    Index frames go through their palette's ``lookup``, two pixels per lookup (no colour
    matrix per pixel); RGB frames through ``yuv_of``. Plane by plane, with the 2x2 means
    as strided adds: a generic mean over reshaped axes was half of a whole build's time
    (bench/README.md)."""
    if lookup is None:
        yuv = yuv_of(frame)
        y[:] = np.rint(yuv[..., 0])
        cb[:] = np.rint(_block_sums(yuv[..., 1]) * 0.25)
        cr[:] = np.rint(_block_sums(yuv[..., 2]) * 0.25)
        return
    pairs = np.ascontiguousarray(frame).view(PAIR)  # (H, W / 2)
    y.view(PAIR)[:] = np.take(lookup.luma_pairs, pairs)
    sums = np.take(lookup.chroma_pairs, pairs[0::2])  # both planes, 4 * CHROMA_STEPS
    sums += np.take(lookup.chroma_pairs, pairs[1::2])  # per level
    sums += (2 * CHROMA_STEPS) * (1 | 1 << 16)  # round half up in both halves
    shift = (4 * CHROMA_STEPS).bit_length() - 1
    np.bitwise_and(sums >> shift, 0xFF, out=cb, casting="unsafe")
    np.right_shift(sums, 16 + shift, out=cr, casting="unsafe")


def _block_sums(plane: np.ndarray) -> np.ndarray:
    """The sum of each 2x2 block of an even-sized plane, at half resolution."""
    total = plane[0::2, 0::2] + plane[1::2, 0::2]
    total += plane[0::2, 1::2]
    total += plane[1::2, 1::2]
    return total
