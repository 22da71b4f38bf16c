"""Pictures that are not square RGB: grids keep a non-square picture's aspect, patches of a
narrow image are cut to it per axis, and grey feature visualizations are drawn grey."""

from __future__ import annotations

import numpy as np

from generator.render.featviz_sheet import channel_frames, sheet_frames
from generator.render.frames import image_grid_frames
from generator.render.patches import GREY, channel_patches, patch_box


def test_a_non_square_picture_keeps_its_aspect_in_a_grid() -> None:
    images = np.zeros((1, 1, 6, 12, 3), np.uint8)
    images[..., 0] = 255
    frame = image_grid_frames(images, max_side=200, min_tile=24, sep=0).frames[0]
    red = np.argwhere(frame[..., 0] == 255)
    height, width = red.max(0) - red.min(0) + 1
    assert width == 2 * height


def test_patches_of_a_wide_image_are_cut_to_its_height() -> None:
    images = np.arange(6 * 16 * 3, dtype=np.uint8).reshape(1, 6, 16, 3)
    assert patch_box(10, (6, 16)) == (6, 10)
    assert patch_box(None, (6, 16)) == (6, 16)
    patches = channel_patches(
        images, np.array([0]), np.array([[2, 8]]), map_size=(4, 6, 16), receptive_field=10
    )
    assert patches.shape == (1, 6, 10, 3)
    np.testing.assert_array_equal(patches[0], images[0, :, 4:14])  # centred on (2, 8)


def test_a_patch_over_the_border_of_a_non_square_image_is_grey_outside() -> None:
    images = np.full((1, 4, 8, 3), 7, np.uint8)
    patches = channel_patches(
        images, np.array([0]), np.array([[0, 0]]), map_size=(1, 4, 8), receptive_field=3
    )
    assert patches.shape == (1, 3, 3, 3)
    assert (patches[0, 0] == GREY).all() and (patches[0, 1:, 1:] == 7).all()


def test_grey_feature_visualizations_are_drawn_grey() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 8, 12, 1), dtype=np.uint8)
    frames = sheet_frames(images, max_side=300).frames
    assert frames.shape[-1] == 3
    assert (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    one = channel_frames(images[:, 0], side=200).frames
    assert one.shape[0] == 2 and one.shape[-1] == 3


def test_feature_visualizations_of_more_channels_show_the_first_three() -> None:
    images = np.zeros((1, 1, 4, 4, 4), np.uint8)
    images[..., 1] = 200
    images[..., 3] = 99
    frame = sheet_frames(images, max_side=100, sep=0).frames[0]
    assert (frame == (0, 200, 0)).all(axis=-1).any()
    assert not (frame == 99).any()
