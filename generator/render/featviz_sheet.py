"""Feature visualizations as frames: one channel's image over epochs, or a layer's sheet.

The stored images are already RGB pictures (``(E, C, S, S, 3)`` uint8, see
``schema.featviz_path``), so nothing is colour-mapped: they are scaled by an integer
factor (nearest neighbour, so pixels stay sharp), tiled with the gallery's separator
colour and captioned. Every epoch is drawn in one numpy pass.
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

RGB_TEXT, RGB_BACKGROUND, RGB_SEPARATOR = (
    rgb_of(i) for i in (TEXT_INDEX, BACKGROUND_INDEX, SEPARATOR_INDEX)
)
MIN_TILE = 64  # px: a visualization is a texture; smaller than this it reads as noise


def sheet_frames(
    images: np.ndarray, *, max_side: int, captions: Sequence[str] | None = None, sep: int = 2
) -> Frames:
    """``(E, C, S, S, 3)`` -> RGB frames of every channel's image in a near-square grid,
    one frame per epoch, fitting ``max_side`` px with its caption."""
    images = _checked(images, ndim=5)
    return image_grid_frames(
        images, max_side=max_side, min_tile=MIN_TILE, captions=captions, sep=sep
    )


def channel_frames(
    images: np.ndarray, *, side: int, captions: Sequence[str] | None = None
) -> Frames:
    """``(E, S, S, 3)`` one channel's images over epochs -> RGB frames at most ``side`` px."""
    images = _checked(images, ndim=4)
    return sheet_frames(images[:, None], max_side=side, captions=captions)


def sheet(images: np.ndarray, *, max_side: int = defaults.MAX_SIDE) -> np.ndarray:
    """``(C, S, S, 3)`` -> one uncaptioned ``(H, W, 3)`` sheet (a still, e.g. for a bench)."""
    return sheet_frames(np.asarray(images)[None], max_side=max_side).frames[0]


def _checked(images: np.ndarray, *, ndim: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != ndim or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"feature visualizations must be uint8 with {ndim} dimensions ending in 3, "
            f"got {images.dtype} {images.shape}"
        )
    return images
