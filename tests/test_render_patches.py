"""Dataset-example patches: cut at the receptive field around the right input pixel."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from generator.render.patches import (
    GREY,
    channel_patches,
    cut_patches,
    patch_grid_frames,
    patch_origins,
    patch_sheet,
    patch_side,
)

S = 32


def marked_images(n: int = 3) -> np.ndarray:
    """Black images; image i has a white 1-pixel marker at (4 + 8 i, 20 - 4 i)."""
    images = np.zeros((n, S, S, 3), np.uint8)
    for i in range(n):
        images[i, 4 + 8 * i, 20 - 4 * i] = 255
    return images


def test_a_patch_at_full_resolution_is_centred_on_the_position():
    images = marked_images()
    patches = channel_patches(
        images, np.array([1]), np.array([[12, 16]]), map_size=(4, S, S), receptive_field=5
    )
    assert patches.shape == (1, 5, 5, 3)
    assert patches[0, 2, 2].tolist() == [255, 255, 255]  # the marker in the middle
    assert patches[0].sum() == 3 * 255  # and nothing else


def test_a_downsampled_map_finds_the_input_region_it_came_from():
    """A map at 1/4 resolution: output pixel (y, x) covers input rows 4y..4y+3; its
    patch (receptive field 8) is centred there and holds the marker that pixel saw."""
    images = marked_images()
    marker = (4 + 8 * 2, 20 - 4 * 2)  # image 2: (20, 12)
    position = np.array([[marker[0] // 4, marker[1] // 4]])
    origin = patch_origins(position, (8, 8), S, 8)
    np.testing.assert_array_equal(origin, [[20 + 1.5 - 3.5, 12 + 1.5 - 3.5]])  # 4y + 1.5
    patches = channel_patches(images, np.array([2]), position, map_size=(8, 8), receptive_field=8)
    assert patches[0].max() == 255
    found = np.argwhere(patches[0, :, :, 0] == 255)[0]
    np.testing.assert_array_equal(found + origin[0], marker)


def test_the_centre_matches_a_real_conv_and_pool_stack():
    """The output pixel a marker excites most is mapped back onto the marker."""
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(2))
    with torch.no_grad():
        stack[0].weight.zero_()
        stack[0].weight[0, 0, 1, 1] = 1
        stack[0].bias.zero_()
    image = torch.zeros(1, 1, S, S)
    image[0, 0, 13, 26] = 1
    out = stack(image)[0, 0]
    y, x = divmod(int(out.argmax()), out.shape[1])
    side = patch_side(10, S)
    origin = patch_origins(np.array([y, x]), out.shape, S, side)
    assert origin[0] <= 13 < origin[0] + side and origin[1] <= 26 < origin[1] + side


def test_pixels_outside_the_image_are_grey():
    images = np.full((1, S, S, 3), 7, np.uint8)
    patches = cut_patches(images, np.array([0]), np.array([[-2, S - 3]]), 5)
    assert (patches[0, :2] == GREY).all()  # rows -2, -1
    assert (patches[0, :, 3:] == GREY).all()  # columns S, S + 1
    assert (patches[0, 2:, :3] == 7).all()


def test_the_field_is_cut_to_the_image_and_unknown_fields_show_the_whole_image():
    assert patch_side(200, S) == S
    assert patch_side(None, S) == S
    assert patch_side(5, S) == 5


def test_patches_of_every_epoch_and_rank_come_out_in_one_call():
    images = marked_images()
    index = np.array([[0, 1], [2, 0]])  # (E, k)
    position = np.zeros((2, 2, 2), int)
    patches = channel_patches(images, index, position, map_size=(S, S), receptive_field=3)
    assert patches.shape == (2, 2, 3, 3, 3)


def test_the_grid_shows_k_tiles_per_epoch_with_a_caption():
    patches = np.zeros((2, 9, 5, 5, 3), np.uint8)
    patches[:, 0] = 255  # the best tile white
    frames = patch_grid_frames(patches, captions=["epoch 0", "epoch 1"], max_side=256)
    assert frames.palette is None and frames.frames.shape[0] == 2
    assert frames.frames.shape[-1] == 3 and max(frames.frames.shape[1:3]) <= 256
    white = (frames.frames[0] == 255).all(axis=-1)
    rows, cols = np.nonzero(white.any(axis=1))[0], np.nonzero(white.any(axis=0))[0]
    assert len(rows) >= 64 and len(cols) >= 64  # a 5 px patch drawn at least 64 px
    assert rows[0] == 0  # the best first: top row
    assert white.sum() < frames.frames.shape[1] * frames.frames.shape[2] / 4


def test_the_sheet_holds_every_channel():
    patches = np.zeros((10, 4, 4, 3), np.uint8)
    patches[9] = 200
    sheet = patch_sheet(patches, title="block1", max_side=512)
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    assert (sheet == 200).any()
