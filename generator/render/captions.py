"""Text burned into frames: caption strips and labels, drawn as masks with Pillow.

Text is drawn without antialiasing into a one-bit mask, then written into the frame as a
single colour: a palette index for index frames (so GIF frames stay exact palette frames)
or an RGB triple. Masks are cached by text and size, so a caption shared by many frames is
drawn once and the per-frame work is one numpy assignment.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_FONT, MAX_FONT = 9, 20
ELLIPSIS = "…"

Colour = int | tuple[int, int, int]
_PILLOW = threading.RLock()  # FreeType use is not documented as thread-safe


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font at ``size`` px (no font files needed, Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)


def text_width(text: str, size: int) -> int:
    """Width in pixels of ``text`` drawn at ``size``."""
    with _PILLOW:
        return int(np.ceil(font(size).getlength(text)))


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


@lru_cache(maxsize=512)
def _mask(text: str, width: int, height: int, size: int, align: str, cut: str) -> np.ndarray:
    with _PILLOW:
        image = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no antialiasing: every pixel is text or not
        shown = fit_text(text, max(width - 4, 1), size, cut)
        left, top, right, bottom = draw.textbbox((0, 0), shown, font=font(size))
        x = {"left": 2, "right": width - 2 - right, "center": (width - (right - left)) // 2 - left}[
            align
        ]
        y = (height - (bottom - top)) // 2 - top
        draw.text((x, y), shown, fill=255, font=font(size))
    mask = np.asarray(image) > 0
    mask.flags.writeable = False
    return mask


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
    for caption, idx in where.items():  # one Pillow draw per distinct caption
        out[idx, strip, :width] = paint(text_mask(caption, width, sh, size), text, background)
    return out
