"""Kernel frames: first-layer colour patches, deeper (out x in) grids, caps and scales."""

from __future__ import annotations

import numpy as np
import pytest

from generator.render.colormaps import NAN_INDEX, RAMP_SIZE, ZERO_INDEX
from generator.render.kernels import kernel_change_frames, kernel_frames, kernel_layout


def test_first_layer_kernels_are_rgb_and_a_red_only_kernel_is_reddish() -> None:
    w = np.zeros((2, 4, 3, 3, 3), dtype=np.float32)
    w[:, 0, 0] = 1.0  # kernel 0 only sees red, positively
    w[:, 1, 2] = 1.0  # kernel 1 only sees blue
    f = kernel_frames(w, min_tile=24)
    assert f.palette is None and not f.indexed
    assert f.frames.shape == (2, 50, 50, 3)  # 2x2 patches of 24 px + separator
    red = f.frames[0, :24, :24].reshape(-1, 3).astype(int)
    blue = f.frames[0, :24, 25:49].reshape(-1, 3).astype(int)
    assert (red[:, 0] > red[:, 1] + 100).all() and (red[:, 1] == red[:, 2]).all()
    assert (blue[:, 2] > blue[:, 0] + 100).all()
    assert (f.frames[0, 25:49, :24] == 128).all()  # an all-zero kernel is mid grey


def test_deep_kernels_are_an_out_by_in_grid_of_palette_patches() -> None:
    w = np.zeros((3, 4, 6, 3, 3), dtype=np.float32)
    w[:, 2, 5] = 1.0
    w[:, 0, 0] = -1.0
    f = kernel_frames(w, min_tile=24)
    assert f.indexed and f.palette.shape == (256, 3) and f.note == ""
    assert f.frames.shape == (3, 100, 150)  # 4*24+3 -> 100, 6*24+5 = 149 -> 150
    assert (f.frames[0, :24, :24] == 0).all()  # (out 0, in 0): most negative
    assert (f.frames[0, 50:74, 125:149] == RAMP_SIZE - 1).all()  # (out 2, in 5)
    assert (f.frames[0, :24, 25:49] == ZERO_INDEX).all()


def test_huge_grids_are_capped_and_say_so() -> None:
    w = np.random.default_rng(0).normal(size=(2, 64, 40, 3, 3)).astype(np.float32)
    f = kernel_frames(w, max_out=8, max_in=10, min_tile=24)
    assert f.frames.shape[1:] == (8 * 25, 10 * 25)  # 8*24+7 -> 200 (even), 10*24+9 -> 250
    assert "0–7 of 64" in f.note and "0–9 of 40" in f.note


def test_max_side_shrinks_the_patches() -> None:
    w = np.zeros((1, 64, 64, 5, 5), dtype=np.float32)
    f = kernel_frames(w, max_out=64, max_in=64, max_side=400, captions="conv3 · epoch 0")
    assert max(f.frames.shape[1:]) <= 400


@pytest.mark.parametrize(("mode", "faint"), [("channel", True), ("frame", False)])
def test_scale_modes_show_or_hide_growth(mode: str, faint: bool) -> None:
    w = np.ones((2, 1, 2, 3, 3), dtype=np.float32)
    w[0] *= 0.5  # epoch 0 weights are half epoch 1's
    f = kernel_frames(w, scale=mode, min_tile=3)
    early, late = int(f.frames[0, 0, 0]), int(f.frames[1, 0, 0])
    assert late == RAMP_SIZE - 1
    assert (early < late) is faint


def test_nonfinite_weights_are_counted_and_marked() -> None:
    w = np.zeros((1, 2, 2, 3, 3), dtype=np.float32)
    w[0, 1, 1, 1, 1] = np.nan
    f = kernel_frames(w, min_tile=3)
    assert f.nonfinite == 1 and (f.frames == NAN_INDEX).sum() == 1
    rgb = kernel_frames(np.full((1, 1, 3, 3, 3), np.inf, dtype=np.float32), min_tile=3)
    assert rgb.nonfinite == 27 and tuple(rgb.frames[0, 1, 1]) == (255, 255, 0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="3 input channels"):
        kernel_frames(np.zeros((1, 2, 4, 3, 3), dtype=np.float32), layout="rgb")
    with pytest.raises(ValueError, match=r"\(E, O, I, kh, kw\)"):
        kernel_frames(np.zeros((2, 3, 3), dtype=np.float32))


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((16, 1, 3, 3), "depthwise"),  # groups == in_channels (MobileNet)
        ((64, 32, 1, 1), "matrix"),  # a 1x1 conv
        ((64, 3, 7, 7), "rgb"),  # reads the image
        ((64, 8, 3, 3), "grid"),  # dense, or grouped with 8 inputs per group
        ((8, 1, 1, 1), "depthwise"),
    ],
)
def test_the_layout_follows_the_kernel_shape(shape: tuple[int, ...], layout: str) -> None:
    assert kernel_layout(shape) == layout


def test_one_by_one_kernels_are_an_out_by_in_heatmap_with_big_cells() -> None:
    w = np.zeros((2, 6, 4, 1, 1), dtype=np.float32)
    w[:, 5, 3] = 1.0  # out 5, in 3: the bottom-right cell
    w[:, 0, 0] = -1.0
    f = kernel_frames(w, min_tile=10)
    assert f.indexed and f.frames.shape == (2, 60, 40)  # 6 rows x 4 columns of 10 px
    assert (f.frames[0, 50:, 30:] == RAMP_SIZE - 1).all()
    assert (f.frames[0, :10, :10] == 0).all()
    assert "rows are the 6 out-channels" in f.note


def test_a_wide_one_by_one_layer_fills_the_frame_per_axis() -> None:
    w = np.zeros((1, 576, 96, 1, 1), dtype=np.float32)
    f = kernel_frames(w, min_tile=24, max_side=1024)
    h, width = f.frames.shape[1:]
    assert h >= 576 and width >= 96 * 10 and max(h, width) <= 1024


def test_depthwise_kernels_are_one_tile_per_channel_and_not_capped_at_32() -> None:
    w = np.zeros((1, 96, 1, 5, 5), dtype=np.float32)
    w[0, 95] = 1.0
    f = kernel_frames(w, max_out=96, min_tile=40, max_side=1024)
    assert f.note == ""  # all 96 shown: 10 x 10 tiles of 40 px
    assert f.frames.shape[1:] == (10 * 41 - 1 + 1, 10 * 41 - 1 + 1)
    tiles = f.frames[0, : 10 * 41 - 1, : 10 * 41 - 1]
    assert (tiles[9 * 41 : 9 * 41 + 40, 5 * 41 : 5 * 41 + 40] == RAMP_SIZE - 1).all()


def test_kernel_change_is_zero_at_epoch_0_on_one_fixed_scale_for_the_layer() -> None:
    w = np.zeros((3, 2, 2, 3, 3), dtype=np.float32)
    w[1, 0, 0] = 0.5  # out 0 moves by +0.5 then +1
    w[2, 0, 0] = 1.0
    w[1:, 1, 1] = -0.25  # out 1 moves a little, negatively
    w += 7.0  # the starting point does not matter
    f = kernel_change_frames(w, min_tile=3)
    assert (f.frames[0, :3, :3] == ZERO_INDEX).all()  # epoch 0: no change anywhere
    assert (f.frames[0, 4:7, 4:7] == ZERO_INDEX).all()
    strong, half = int(f.frames[2, 0, 0]), int(f.frames[1, 0, 0])
    assert strong == RAMP_SIZE - 1 and ZERO_INDEX < half < strong  # one scale over epochs
    weak = int(f.frames[2, 4, 4])  # out 1, in 1: -0.25 of a 1.0 scale, a pale red
    assert ZERO_INDEX - 40 < weak < ZERO_INDEX


def test_the_change_of_first_layer_kernels_is_drawn_per_input_on_the_colormap() -> None:
    w = np.random.default_rng(0).normal(size=(2, 4, 3, 3, 3)).astype(np.float32)
    f = kernel_change_frames(w, min_tile=3)
    assert f.indexed and f.frames.shape[1:] == (16, 12)  # 4 rows x 3 inputs of 3 px (+ seps)
