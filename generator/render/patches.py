"""Dataset-example patches: the part of a pool image a channel's maximum looked at.

A channel's top-k (``generator.record.examples``) gives, per epoch, pool images and the
(y, x) of the channel's maximum in its own (H, W) map. The input region one output pixel
sees is its receptive field (``LayerSpec.receptive_field``, grown window by window as in
``model.grow_receptive_field``); the patch is that square, centred where the output pixel
sits in the input: ``(p + 0.5) * S / H - 0.5`` per axis, which is exact for "same"-padded
convs and 2x2 pools (the reference CNN) and within a pixel or two for strided windows of
other models. What falls outside the image is padded grey (a channel that fires at the
border shows where the border is); a field larger than the image is cut to the image
size, and a layer without a known field shows the whole image centred on the position.

Cutting is one block copy per patch; grids reuse the frame tiling of ``render.frames``.
Output is RGB: the patches are photographs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generator.render.colormaps import BACKGROUND_INDEX, TEXT_INDEX, rgb_of
from generator.render.frames import (
    Frames,
    image_grid_frames,
)

GREY = 128  # outside the image
SEP = 2
MIN_TILE = 64  # a 5 px patch of a first layer is drawn at least this big
RGB_TEXT, RGB_BACKGROUND = rgb_of(TEXT_INDEX), rgb_of(BACKGROUND_INDEX)


def patch_side(receptive_field: int | None, input_size: int) -> int:
    """The patch side in input pixels: the receptive field, at most the image."""
    if receptive_field is None:
        return input_size
    return max(1, min(int(receptive_field), input_size))


def patch_origins(
    positions: np.ndarray, map_size: Sequence[int], input_size: int, side: int
) -> np.ndarray:
    """(..., 2) map positions (y, x) -> (..., 2) top-left input pixel of each patch."""
    scale = input_size / np.asarray(map_size[-2:], dtype=np.float64)
    centres = (np.asarray(positions, dtype=np.float64) + 0.5) * scale - 0.5
    return np.floor(centres - (side - 1) / 2 + 0.5).astype(np.int64)


def cut_patches(
    images: np.ndarray, indices: np.ndarray, origins: np.ndarray, side: int
) -> np.ndarray:
    """``side`` x ``side`` patches of ``images`` (N, S, S, 3) -> (..., side, side, 3).

    ``indices`` (...) picks the image, ``origins`` (..., 2) the top-left corner (may lie
    outside the image: those pixels are ``GREY``). One block copy per patch: a gather with
    a (row, column) index per pixel was a tenth of a demo build's time.
    """
    height, width, depth = images.shape[1:4]
    indices, origins = np.asarray(indices), np.asarray(origins)
    patches = np.full((*indices.shape, side, side, depth), GREY, dtype=images.dtype)
    flat = patches.reshape(-1, side, side, depth)
    for patch, image, (top, left) in zip(
        flat, indices.ravel().tolist(), origins.reshape(-1, 2).tolist(), strict=True
    ):
        rows = slice(max(top, 0), min(top + side, height))
        cols = slice(max(left, 0), min(left + side, width))
        if rows.start < rows.stop and cols.start < cols.stop:
            patch[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = (
                images[image, rows, cols]
            )
    return patches


def channel_patches(
    images: np.ndarray,
    indices: np.ndarray,
    positions: np.ndarray,
    *,
    map_size: Sequence[int],
    receptive_field: int | None,
) -> np.ndarray:
    """The patches of top-k examples: ``indices`` (...) and ``positions`` (..., 2) of a
    layer with output ``map_size`` (.., H, W) -> (..., side, side, 3) uint8."""
    side = patch_side(receptive_field, images.shape[1])
    origins = patch_origins(positions, map_size, images.shape[1], side)
    return cut_patches(images, indices, origins, side)


def patch_grid_frames(
    patches: np.ndarray,
    *,
    captions: Sequence[str] | str | None,
    max_side: int,
    min_tile: int = MIN_TILE,
) -> Frames:
    """(T, k, s, s, 3) patches -> RGB ``Frames`` (T, H, W, 3): per frame a near-square
    grid of the k patches (best first, row by row), fitting ``max_side`` with its caption."""
    return image_grid_frames(
        patches, max_side=max_side, min_tile=min_tile, captions=captions, sep=SEP
    )


def patch_sheet(patches: np.ndarray, *, title: str, max_side: int) -> np.ndarray:
    """(C, s, s, 3) one patch per channel -> one (H, W, 3) still, channels row by row."""
    sheet = patch_grid_frames(patches[None], captions=[title], max_side=max_side, min_tile=24)
    return sheet.frames[0]
