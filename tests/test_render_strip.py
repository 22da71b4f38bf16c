"""Layers of 1×1 maps as channel strips, pooled matrices and the overview's thumbnails."""

from __future__ import annotations

import numpy as np

from generator.render.colormaps import BACKGROUND_INDEX, NAN_INDEX, ZERO_INDEX
from generator.render.frames import layer_frames_by_epoch
from generator.render.kernels import MATRIX_MIN_CELL, kernel_change_frames
from generator.render.layout import caption_room
from generator.render.strip import peak_pool, strip_indices, thumbnail_sprite

RAMP_TOP = 2 * ZERO_INDEX  # the most positive colour


def test_peak_pool_keeps_the_strongest_signed_value_of_each_block() -> None:
    values = np.array([[1.0, -5.0, 0.5], [2.0, 3.0, np.nan]])
    pooled, fr, fc = peak_pool(values, 1, 2)
    assert (fr, fc) == (2, 2)
    assert pooled[0, 0] == -5.0 and np.isnan(pooled[0, 1])  # sign kept; a NaN shows
    same, fr, fc = peak_pool(values, 2, 3)
    assert (fr, fc) == (1, 1) and np.array_equal(same, values, equal_nan=True)


def test_a_strip_has_one_row_band_per_epoch_on_one_layer_scale() -> None:
    # channel c holds c at every epoch: a per-channel scale would make every cell the
    # same saturated colour (the old mosaic); one layer scale keeps them apart
    values = np.tile(np.arange(1, 9, dtype=np.float32), (3, 1))
    image, note = strip_indices(values, max_w=64, max_h=30)
    assert image.shape == (30, 64)  # 3 epochs x 10 px, 8 channels x 8 px
    first_row = image[0, ::8]
    assert len(set(first_row.tolist())) == 8 and first_row[-1] == RAMP_TOP
    assert (image[:10] == image[20:]).all()  # the same values every epoch, the same colours
    assert "epochs 0–2" in note and "8 channels" in note


def test_layer_frames_of_1x1_maps_are_the_strip_revealed_per_epoch() -> None:
    epochs, channels = 4, 6
    maps = np.arange(epochs * channels, dtype=np.float32).reshape(epochs, channels, 1, 1) - 10
    # per-channel scales, as the build passes them: each channel's own max |value|, which
    # made every 1×1 tile one saturated colour (the old mosaic); a strip ignores them
    scale = np.abs(maps[:, :, 0, 0]).max(axis=0, keepdims=True).repeat(epochs, 0)
    frames = layer_frames_by_epoch(
        lambda e: maps[e],
        scale,
        scale,
        captions=[f"epoch {e}" for e in range(epochs)],
        max_side=256,
    )
    assert len(frames.frames) == epochs and "channels" in frames.note
    room = 256 - caption_room("")
    image, _ = strip_indices(maps[:, :, 0, 0], max_w=256, max_h=room // 2)
    band, (h, w) = image.shape[0] // epochs, image.shape
    left = (frames.frames.shape[2] - w) // 2  # the caption strip widens and centres it
    last = frames.frames[-1, :h, left : left + w]
    assert (last == image).all()  # the last frame shows the whole strip
    first = frames.frames[0, :h, left : left + w]
    assert (first[band:] == BACKGROUND_INDEX).all() and (first[:band] == image[:band]).all()
    assert len(set(image[0].tolist())) == channels  # not saturated: every channel apart


def test_a_large_1x1_kernel_change_is_pooled_to_readable_cells() -> None:
    """ConvNeXt's 1280 x 320 pointwise conv: before, rows were dropped to fit 1024 px."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((2, 1280, 320, 1, 1)).astype(np.float32) * 0.01
    weights[1, 7, 5] += 10.0  # one kernel that moved a lot, in a row nearest-resizing drops
    weights[1, 900, 300] = np.nan
    frames = kernel_change_frames(weights, max_side=1024)
    last = frames.frames[-1]
    assert (last == RAMP_TOP).sum() >= MATRIX_MIN_CELL**2  # the moved kernel shows
    assert (last == NAN_INDEX).any() and frames.nonfinite == 1
    assert "strongest of 4 × 1 kernels" in frames.note


def test_thumbnail_sprites_stack_one_square_per_epoch() -> None:
    rng = np.random.default_rng(1)
    spatial = thumbnail_sprite(rng.standard_normal((3, 20, 8, 8)), side=24)
    flat = thumbnail_sprite(rng.standard_normal((3, 20, 1, 1)), side=24)
    vector = thumbnail_sprite(rng.standard_normal((3, 200)), side=24)
    assert spatial.shape == flat.shape == vector.shape == (72, 24)
    assert spatial.dtype == np.uint8
    assert not np.array_equal(spatial[:24], spatial[24:48])  # epochs differ
    assert (flat[:24] == flat[:1]).all()  # a strip: every row of the band alike
