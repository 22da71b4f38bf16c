"""Feature-visualization frames: a layer's sheet and one channel's animation."""

from __future__ import annotations

import numpy as np
import pytest

from generator.render.featviz_sheet import (
    MIN_TILE,
    RGB_SEPARATOR,
    channel_frames,
    sheet,
    sheet_frames,
)


def images(epochs: int = 3, channels: int = 5, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (epochs, channels, size, size, 3), dtype=np.uint8)


def test_each_tile_is_its_channels_image_upscaled_pixel_for_pixel():
    found = sheet_frames(images(), max_side=1024, captions=None)
    assert found.palette is None and found.frames.shape[0] == 3
    factor = MIN_TILE // 16
    tile = found.frames[2, :MIN_TILE, :MIN_TILE]  # channel 1 of epoch 2, top left
    expected = np.repeat(np.repeat(images()[2, 0], factor, axis=0), factor, axis=1)
    assert np.array_equal(tile, expected)
    second = found.frames[2, :MIN_TILE, MIN_TILE + 2 : 2 * MIN_TILE + 2]  # channel 2
    assert np.array_equal(second[::factor, ::factor], images()[2, 1])
    assert np.all(found.frames[2, :MIN_TILE, MIN_TILE] == RGB_SEPARATOR)


def test_five_channels_make_a_3_by_2_grid_and_the_sheet_fits_max_side():
    found = sheet_frames(images(channels=5, size=64), max_side=200, captions=["a", "b", "c"])
    height, width = found.frames.shape[1:3]
    assert max(height, width) <= 256  # a caption strip is never narrower than 256 px
    still = sheet(images(channels=5)[0])
    assert still.shape == (2 * MIN_TILE + 2, 3 * MIN_TILE + 4, 3)


def test_a_channel_animation_has_one_frame_per_epoch():
    found = channel_frames(images()[:, 3], side=256, captions=[f"e{e}" for e in range(3)])
    assert found.frames.shape[0] == 3 and found.frames.shape[-1] == 3


def test_float_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        sheet_frames(images().astype(np.float32), max_side=512)
