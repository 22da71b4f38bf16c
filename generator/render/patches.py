"""Dataset-example patches: the part of a pool image a channel's maximum looked at.

A channel's top-k (``generator.record.examples``) gives, per epoch, pool images and the
(y, x) of the channel's maximum in its own (H, W) map. The input region one output pixel
sees is its receptive field (``LayerSpec.receptive_field``, grown window by window as in
``model.grow_receptive_field``); the patch is that square, centred where the output pixel
sits in the input: ``(p + 0.5) * S / h - 0.5`` per axis (S the image's side, h the map's),
which is exact for "same"-padded convs and 2x2 pools (the reference CNN) and within a
pixel or two for strided windows of other models. What falls outside the image is padded
grey (a channel that fires at the border shows where the border is); a field larger than
the image is cut to the image per axis (a non-square image may cut one side only), and a
layer without a known field shows the whole image centred on the position.

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
from generator.render.layout import rgb_pictures

GREY = 128  # outside the image
SEP = 2
MIN_TILE = 64  # a 5 px patch of a first layer is drawn at least this big
RGB_TEXT, RGB_BACKGROUND = rgb_of(TEXT_INDEX), rgb_of(BACKGROUND_INDEX)


def patch_side(receptive_field: int | None, input_size: int) -> int:
    """The patch side in input pixels: the receptive field, at most the image."""
    if receptive_field is None:
        return input_size
    return max(1, min(int(receptive_field), input_size))


def patch_box(receptive_field: int | None, image_size: Sequence[int]) -> tuple[int, int]:
    """The patch (height, width) in input pixels for an image of ``image_size`` (H, W):
    the receptive field cut to the image per axis (a non-square image cuts one side)."""
    height, width = (int(v) for v in image_size[-2:])
    return patch_side(receptive_field, height), patch_side(receptive_field, width)


def patch_origins(
    positions: np.ndarray,
    map_size: Sequence[int],
    input_size: int | Sequence[int],
    side: int | Sequence[int],
) -> np.ndarray:
    """(..., 2) map positions (y, x) -> (..., 2) top-left input pixel of each patch;
    ``input_size`` and ``side`` are one number for a square, else (height, width)."""
    scale = np.asarray(input_size, dtype=np.float64) / np.asarray(map_size[-2:], np.float64)
    centres = (np.asarray(positions, dtype=np.float64) + 0.5) * scale - 0.5
    return np.floor(centres - (np.asarray(side) - 1) / 2 + 0.5).astype(np.int64)


def cut_patches(
    images: np.ndarray, indices: np.ndarray, origins: np.ndarray, side: int | Sequence[int]
) -> np.ndarray:
    """``side`` x ``side`` (or (h, w)) patches of ``images`` (N, H, W, 3) -> (..., h, w, 3).

    ``indices`` (...) picks the image, ``origins`` (..., 2) the top-left corner (may lie
    outside the image: those pixels are ``GREY``). One block copy per patch: a gather with
    a (row, column) index per pixel was a tenth of a demo build's time.
    """
    box_h, box_w = (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))
    height, width, depth = images.shape[1:4]
    indices, origins = np.asarray(indices), np.asarray(origins)
    patches = np.full((*indices.shape, box_h, box_w, depth), GREY, dtype=images.dtype)
    flat = patches.reshape(-1, box_h, box_w, depth)
    for patch, image, (top, left) in zip(
        flat, indices.ravel().tolist(), origins.reshape(-1, 2).tolist(), strict=True
    ):
        rows = slice(max(top, 0), min(top + box_h, height))
        cols = slice(max(left, 0), min(left + box_w, width))
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
    """The patches of top-k examples in ``images`` (N, H, W, K): ``indices`` (...) and
    ``positions`` (..., 2) of a layer with output ``map_size`` (.., h, w) -> (..., ph, pw,
    3) uint8, square unless the image is too narrow for the receptive field; K channels
    shown as the probes are by default (``rgb_pictures``)."""
    box = patch_box(receptive_field, images.shape[1:3])
    origins = patch_origins(positions, map_size, images.shape[1:3], box)
    return rgb_pictures(cut_patches(images, indices, origins, box))


def patch_grid_frames(
    patches: np.ndarray,
    *,
    captions: Sequence[str] | str | None,
    max_side: int,
    min_tile: int = MIN_TILE,
) -> Frames:
    """(T, k, h, w, 3) patches -> RGB ``Frames`` (T, H, W, 3): per frame a near-square
    grid of the k patches (best first, row by row), fitting ``max_side`` with its caption."""
    return image_grid_frames(
        patches, max_side=max_side, min_tile=min_tile, captions=captions, sep=SEP
    )


def patch_sheet(patches: np.ndarray, *, title: str, max_side: int) -> np.ndarray:
    """(C, h, w, 3) one patch per channel -> one (H, W, 3) still, channels row by row."""
    sheet = patch_grid_frames(patches[None], captions=[title], max_side=max_side, min_tile=24)
    return sheet.frames[0]
