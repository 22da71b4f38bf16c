"""Feature visualizations as frames: one channel's image over epochs, or a layer's sheet.

The stored images are pictures at the model's input (``(E, C, H, W, K)`` uint8 with K
input channels, colour last, see ``schema.featviz_path``; H and W need not be equal), so
nothing is colour-mapped: grey (K = 1) is shown grey, RGB as it is, other K by their first
three channels, like the probes. They are scaled by an integer factor (nearest neighbour,
so pixels stay sharp), tiled with the gallery's separator colour and captioned. Every
epoch is drawn in one numpy pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generator import defaults
from generator.render.colormaps import BACKGROUND_INDEX, SEPARATOR_INDEX, TEXT_INDEX, rgb_of
from generator.render.frames import (
    Frames,
    image_grid_frames,
)
from generator.render.layout import rgb_pictures

RGB_TEXT, RGB_BACKGROUND, RGB_SEPARATOR = (
    rgb_of(i) for i in (TEXT_INDEX, BACKGROUND_INDEX, SEPARATOR_INDEX)
)
MIN_TILE = 64  # px: a visualization is a texture; smaller than this it reads as noise


def sheet_frames(
    images: np.ndarray, *, max_side: int, captions: Sequence[str] | None = None, sep: int = 2
) -> Frames:
    """``(E, C, H, W, K)`` -> RGB frames of every channel's image in a near-square grid,
    one frame per epoch, fitting ``max_side`` px with its caption."""
    images = _checked(images, ndim=5)
    return image_grid_frames(
        images, max_side=max_side, min_tile=MIN_TILE, captions=captions, sep=sep
    )


def channel_frames(
    images: np.ndarray, *, side: int, captions: Sequence[str] | None = None
) -> Frames:
    """``(E, H, W, K)`` one channel's images over epochs -> RGB frames at most ``side`` px."""
    images = _checked(images, ndim=4)
    return sheet_frames(images[:, None], max_side=side, captions=captions)


def sheet(images: np.ndarray, *, max_side: int = defaults.MAX_SIDE) -> np.ndarray:
    """``(C, H, W, K)`` -> one uncaptioned ``(H, W, 3)`` sheet (a still, e.g. for a bench)."""
    return sheet_frames(np.asarray(images)[None], max_side=max_side).frames[0]


def _checked(images: np.ndarray, *, ndim: int) -> np.ndarray:
    """``images`` as RGB (colour last), refused in one line when not uint8 pictures."""
    images = np.asarray(images)
    if images.ndim != ndim or images.dtype != np.uint8 or 0 in images.shape:
        raise ValueError(
            f"feature visualizations must be uint8 with {ndim} dimensions, colour last, "
            f"got {images.dtype} {images.shape}"
        )
    return rgb_pictures(images)
