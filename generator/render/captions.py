"""Text burned into frames: caption strips and labels, drawn as masks with Pillow.

Text is drawn without antialiasing into a one-bit mask, then written into the frame as a
single colour: a palette index for index frames (so GIF frames stay exact palette frames)
or an RGB triple. Masks are cached by text and size, so a caption shared by many frames is
drawn once and the per-frame work is one numpy assignment; a line is set from cached
pieces (``_piece``), so a caption that differs only in its numbers is not drawn again.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_FONT, MAX_FONT = 9, 20
ELLIPSIS = "…"

Colour = int | tuple[int, int, int]
_PILLOW = threading.RLock()  # FreeType use is not documented as thread-safe


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled default font at ``size`` px (no font files needed, Pillow >= 10.1).

    Pillow without FreeType falls back to a fixed-size bitmap font, which has neither the
    sizes nor the metrics captions are laid out with, so it is refused."""
    loaded = ImageFont.load_default(size=size)
    if not isinstance(loaded, ImageFont.FreeTypeFont):
        raise RuntimeError("captions need Pillow built with FreeType (PIL.features.freetype2)")
    return loaded


def text_width(text: str, size: int) -> int:
    """Width in pixels of ``text`` drawn at ``size`` without antialiasing: the advance
    of its pieces, as ``text_mask`` sets them (one-bit glyphs are hinted to whole pixels,
    so they run wider than antialiased ones)."""
    return math.ceil(_advance(text, size))


def strip_height(size: int) -> int:
    """Height of a caption strip holding one line of text at ``size`` px."""
    return size + 2 * (size // 3 + 2)


def auto_font_size(width: int) -> int:
    """A caption size that grows with the frame width: 12 px up to 600 px, at most 20."""
    return int(np.clip(width // 50, 12, MAX_FONT))


def _shorten(text: str, keep: int, cut: str) -> str:
    """``text`` cut to ``keep`` characters plus an ellipsis, at the end or in the middle."""
    if cut == "middle":
        head = (keep + 1) // 2
        return text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]
    return text[:keep] + ELLIPSIS


def fit_text(text: str, width: int, size: int, cut: str = "end") -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels at ``size``.

    ``cut="middle"`` keeps both ends (class names often differ only in their suffix).
    """
    if text_width(text, size) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # most characters that fit with the ellipsis
        mid = (lo + hi + 1) // 2
        if text_width(_shorten(text, mid, cut), size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return _shorten(text, lo, cut)


# A caption's numbers change from frame to frame (the epoch) and from file to file (the
# channel, the probe), so whole captions rarely repeat: drawing each one with FreeType was a
# fifth of a build of small animations. A line is cut at its digit runs, each piece drawn
# once per size (``_piece``) and set at its pen position, shortened lines too. Pillow lays
# out its default font glyph by glyph (basic layout: no shaping across the cuts), so the
# pieces land on the pixels of the whole line drawn at once (tests/test_render_captions.py).
_PIECES = re.compile(r"\d+|\D+")


@lru_cache(maxsize=4096)
def _piece_advance(part: str, size: int) -> float:
    """How far the pen moves over ``part``, in one-bit glyphs' advances."""
    with _PILLOW:
        return font(size).getlength(part, mode="1")


def _advance(text: str, size: int) -> float:
    """The pen's advance over ``text``, summed over its pieces."""
    return sum(_piece_advance(part, size) for part in _PIECES.findall(text))


@dataclass(frozen=True, eq=False)
class _Piece:
    """A run of text drawn on its own: its ink ``mask``, the ink's offset (``left``,
    ``top``) from the pen's whole-pixel position and the line's top, and the pen's
    ``advance``."""

    mask: np.ndarray
    left: int
    top: int
    advance: float


@lru_cache(maxsize=4096)
def _piece(text: str, size: int, fraction: float) -> _Piece:
    """``text`` drawn with the pen ``fraction`` of a pixel right of a whole pixel, as
    Pillow places it inside a longer line; the canvas has a margin of ``size`` all round,
    since hinted one-bit glyphs may reach past their layout box."""
    advance = _piece_advance(text, size)
    with _PILLOW:
        image = Image.new("L", (math.ceil(advance) + 2 * size + 2, 3 * size), 0)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no antialiasing: every pixel is text or not
        draw.text((size + fraction, size), text, fill=255, font=font(size), anchor="la")
    ink = np.asarray(image) > 0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):  # blanks
        return _Piece(np.zeros((0, 0), dtype=bool), 0, 0, advance)
    mask = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    mask.flags.writeable = False
    return _Piece(mask, int(cols[0]) - size, int(rows[0]) - size, advance)


def _pieces(text: str, size: int) -> Iterator[tuple[int, _Piece]]:
    """The cached pieces of ``text`` and the whole pixel each one's pen starts at. Pen
    positions are FreeType's 26.6 fixed point (1/64 px), so rounding the fraction to
    1/64 only drops float error, and a piece has at most 64 cached drawings."""
    pen = 0.0
    for part in _PIECES.findall(text):
        whole = math.floor(pen)
        piece = _piece(part, size, round((pen - whole) * 64) / 64)
        yield whole, piece
        pen += piece.advance


def _line(text: str, size: int) -> tuple[np.ndarray, int, int]:
    """``text`` as one ink mask set from its cached pieces, and the ink's offset (left,
    top) from the pen's start."""
    placed = [(x + p.left, p) for x, p in _pieces(text, size) if p.mask.size]
    if not placed:  # only blanks
        return np.zeros((0, 0), dtype=bool), 0, 0
    left, top = min(x for x, _ in placed), min(p.top for _, p in placed)
    right = max(x + p.mask.shape[1] for x, p in placed)
    bottom = max(p.top + p.mask.shape[0] for _, p in placed)
    line = np.zeros((bottom - top, right - left), dtype=bool)
    for x, p in placed:
        _paste(line, p.mask, x - left, p.top - top)
    return line, left, top


@lru_cache(maxsize=512)
def _mask(text: str, width: int, height: int, size: int, align: str, cut: str) -> np.ndarray:
    shown = fit_text(text, max(width - 4, 1), size, cut)
    mask = np.zeros((height, width), dtype=bool)
    if shown:
        line, left, top = _line(shown, size)
        x = {"left": 2 + left, "right": width - 2 - line.shape[1]}
        x["center"] = (width - line.shape[1]) // 2
        with _PILLOW:
            ascent, descent = font(size).getmetrics()
        # the font's line box centred, not the ink: digits and descenders never move it
        _paste(mask, line, x[align], (height - ascent - descent) // 2 + top)
    mask.flags.writeable = False
    return mask


def _paste(into: np.ndarray, part: np.ndarray, x: int, y: int) -> None:
    """OR ``part`` into ``into`` with its top-left corner at (``x``, ``y``), clipped."""
    h, w = part.shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + h, into.shape[0]), min(x + w, into.shape[1])
    if bottom > top and right > left:
        into[top:bottom, left:right] |= part[top - y : bottom - y, left - x : right - x]


def text_mask(
    text: str, width: int, height: int, size: int, align: str = "center", cut: str = "end"
) -> np.ndarray:
    """``(height, width)`` bool mask of ``text`` (shortened to fit, see ``fit_text``),
    vertically centred and aligned ``left`` / ``center`` / ``right``.

    Cached and read-only: a caption repeated over frames is drawn once.
    """
    return _mask(text, int(width), int(height), int(size), align, cut)


def paint(mask: np.ndarray, text: Colour, background: Colour) -> np.ndarray:
    """A mask as a uint8 image: ``(h, w)`` for index colours, ``(h, w, 3)`` for RGB ones."""
    fg = np.asarray(text, dtype=np.uint8)
    bg = np.asarray(background, dtype=np.uint8)
    return np.where(mask[(...,) + (None,) * fg.ndim], fg, bg)


def caption_size(captions: Sequence[str], width: int, font_size: int | None = None) -> int:
    """One font size for all ``captions``: ``font_size`` or the auto size, shrunk to fit."""
    size = font_size or auto_font_size(width)
    longest = max(captions, key=len, default="")
    while size > MIN_FONT and text_width(longest, size) > width - 4:
        size -= 1
    return size


def add_captions(
    frames: np.ndarray,
    captions: Sequence[str] | str,
    *,
    text: Colour,
    background: Colour,
    position: str = "bottom",
    font_size: int | None = None,
    min_width: int = 0,
    multiple: int = 1,
) -> np.ndarray:
    """Frames ``(T, H, W[, 3])`` with a caption strip added above or below each one.

    ``captions`` is one string per frame (or one for all). The strip holds one line at a
    single size for the whole sequence (the strip never jumps); text too long even at the
    smallest size is cut with an ellipsis. The result is at least ``min_width`` wide (the
    frame centred) and padded with ``background`` to multiples of ``multiple``, all in one
    allocation: ``(T, H + strip [+ pad], W' [, 3])``.
    """
    if position not in ("top", "bottom"):
        raise ValueError(f"caption position must be 'top' or 'bottom', not {position!r}")
    texts = [captions] * len(frames) if isinstance(captions, str) else list(captions)
    if len(texts) != len(frames):
        raise ValueError(f"{len(texts)} captions for {len(frames)} frames")
    t, h, w = frames.shape[:3]
    width = max(w, min_width)
    size = caption_size(texts, width, font_size)
    sh = strip_height(size)
    out = np.empty(
        (t, h + sh + (-(h + sh) % multiple), width + (-width % multiple), *frames.shape[3:]),
        dtype=np.uint8,
    )
    top, left = (sh if position == "top" else 0), (width - w) // 2
    bg = np.asarray(background, dtype=np.uint8)
    out[:, :top] = bg  # fill only what the frames do not cover
    out[:, top + h :] = bg
    out[:, top : top + h, :left] = bg
    out[:, top : top + h, left + w :] = bg
    out[:, top : top + h, left : left + w] = frames
    strip = slice(0, sh) if position == "top" else slice(h, h + sh)
    where: dict[str, list[int]] = {}
    for i, caption in enumerate(texts):
        where.setdefault(caption, []).append(i)
    for caption, idx in where.items():  # one mask per distinct caption
        out[idx, strip, :width] = paint(text_mask(caption, width, sh, size), text, background)
    return out
