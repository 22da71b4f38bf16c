"""Colormaps: sign -> colour, zero -> neutral, NaN/inf counted, scales from stored stats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from generator.errors import OptionError
from generator.render.colormaps import (
    COLORMAPS,
    HALF,
    NAN_INDEX,
    RAMP_SIZE,
    SCALE_MODES,
    ZERO_INDEX,
    check_scale_mode,
    compute_scales,
    map_values,
    palette,
)

NEUTRAL = {"seed": (0, 0, 0), "diverging": (255, 255, 255)}


@pytest.mark.parametrize("name", COLORMAPS)
def test_sign_maps_to_red_and_blue_and_zero_to_neutral(name: str) -> None:
    idx, count = map_values(np.array([-2.0, -0.5, 0.0, 0.5, 2.0]), 2.0, 2.0)
    colours = palette(name)[idx].astype(int)
    assert count == 0
    for neg in colours[:2]:
        assert neg[0] > neg[2], f"{name}: negative should be red, got {neg}"
    for pos in colours[3:]:
        assert pos[2] > pos[0], f"{name}: positive should be blue, got {pos}"
    assert tuple(colours[2]) == NEUTRAL[name]
    assert idx[0] == 0 and idx[-1] == RAMP_SIZE - 1 and idx[2] == ZERO_INDEX


@pytest.mark.parametrize("name", COLORMAPS)
def test_nan_colour_is_distinct_from_the_ramp(name: str) -> None:
    pal = palette(name)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    ramp = {tuple(c) for c in pal[:RAMP_SIZE]}
    assert tuple(pal[NAN_INDEX]) not in ramp


def test_halves_are_scaled_separately() -> None:
    idx, _ = map_values(np.array([-1.0, 1.0]), 4.0, 1.0)
    assert idx[0] == ZERO_INDEX - round(HALF / 4)  # -1 is a quarter of the way to red
    assert idx[1] == ZERO_INDEX + HALF  # +1 is full blue
    idx, _ = map_values(np.array([-10.0, 10.0]), 1.0, 1.0)
    assert list(idx) == [0, RAMP_SIZE - 1]  # clipped, not wrapped


def test_zero_scale_and_constant_input_map_to_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idx, count = map_values(np.array([0.0, 5.0, -3.0]), 0.0, 0.0)
        zeros, _ = map_values(np.zeros((2, 3, 4, 4)), 0.0, 0.0)
    assert count == 0
    assert (idx == ZERO_INDEX).all() and (zeros == ZERO_INDEX).all()


def test_nan_and_inf_get_the_special_index_and_are_counted() -> None:
    values = np.array([np.nan, 1.0, np.inf, -np.inf, -1.0], dtype=np.float16)
    idx, count = map_values(values, 1.0, 1.0)
    assert count == 3
    assert list(idx[[0, 2, 3]]) == [NAN_INDEX] * 3
    assert idx[1] == RAMP_SIZE - 1 and idx[4] == 0


def test_every_float16_maps_as_the_same_value_in_float32() -> None:
    """Stores keep activations as float16, which ``map_values`` reads through its own
    table: every one of the 65 536 float16 values (NaN, inf, subnormals, -0) gets the
    colour of the same value given as float32, also when the array is a strided view."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    values = every.reshape(256, 256)[:, ::-1].T  # not contiguous in memory
    for neg, pos in ((1.0, 1.0), (1e-4, 3e4)):
        half = map_values(values, neg, pos)
        single = map_values(values.astype(np.float32), neg, pos)
        np.testing.assert_array_equal(half.indices, single.indices)
        assert half.nonfinite == single.nonfinite == 2 * 1024  # ±inf and the NaNs


def test_per_channel_scales_broadcast_in_one_call() -> None:
    values = np.ones((2, 3, 4, 4))
    pos = np.array([1.0, 2.0, 4.0])[None, :, None, None]
    idx, _ = map_values(values, pos, pos)
    steps = idx[0, :, 0, 0].astype(int) - ZERO_INDEX
    assert list(steps) == [HALF, round(HALF / 2), round(HALF / 4)]


def test_unknown_names_raise_option_error() -> None:
    with pytest.raises(OptionError, match="colormap 'viridis'"):
        palette("viridis")
    with pytest.raises(OptionError, match="scale mode 'global'"):
        check_scale_mode("global")
    assert SCALE_MODES == ("frame", "channel", "layer")


def _stats() -> tuple[np.ndarray, np.ndarray]:
    """(E=3, P=2, C=4) min/max whose magnitude grows with epoch and differs per channel."""
    e = np.arange(1, 4, dtype=np.float32)[:, None, None]
    p = np.array([1.0, 1.5], dtype=np.float32)[None, :, None]
    c = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)[None, None, :]
    return -(e * p * c) / 2, e * p * c


def test_frame_scales_follow_each_frame() -> None:
    lo, hi = _stats()
    neg, pos = compute_scales(lo, hi, "frame")
    np.testing.assert_allclose(neg, -lo)
    np.testing.assert_allclose(pos, hi)
    assert not np.allclose(pos[0], pos[1])  # differs per epoch


def test_channel_scales_are_constant_over_epochs_and_probes() -> None:
    lo, hi = _stats()
    neg, pos = compute_scales(lo, hi, "channel")
    assert pos.shape == (3, 2, 4)
    assert (pos == pos[0, 0]).all() and (neg == neg[0, 0]).all()
    np.testing.assert_allclose(pos[0, 0], hi.max(axis=(0, 1)))
    np.testing.assert_allclose(neg[0, 0], (-lo).max(axis=(0, 1)))
    assert len(set(pos[0, 0].tolist())) == 4  # but differs per channel


def test_layer_scale_is_one_number() -> None:
    lo, hi = _stats()
    neg, pos = compute_scales(lo, hi, "layer")
    assert (pos == hi.max()).all() and (neg == (-lo).max()).all()


def test_share_channels_pools_units_per_frame() -> None:
    lo, hi = _stats()
    _, pos = compute_scales(lo, hi, "frame", share_channels=True)
    np.testing.assert_allclose(pos, np.broadcast_to(hi.max(axis=2, keepdims=True), hi.shape))


def test_nonfinite_stats_are_ignored() -> None:
    lo, hi = _stats()
    hi[0, 0, 0] = np.nan
    hi[1, 0, 0] = np.inf
    _, pos = compute_scales(lo, hi, "channel")
    assert np.isfinite(pos).all()
    assert pos[0, 0, 0] == hi[2, 1, 0]
    all_nan = np.full((2, 1, 1), np.nan, dtype=np.float32)
    assert (compute_scales(all_nan, all_nan, "frame").pos == 0).all()


@pytest.mark.parametrize("mode", SCALE_MODES)
@pytest.mark.parametrize("share_channels", [False, True])
def test_a_run_without_epochs_has_empty_scales_not_an_error(
    mode: str, share_channels: bool
) -> None:
    """A store killed during epoch 0 has (0, P, C) statistics; issue 8.6 crashed here."""
    empty = np.zeros((0, 2, 3), dtype=np.float32)
    neg, pos = compute_scales(empty, empty, mode, share_channels=share_channels)
    assert neg.shape == pos.shape == (0, 2, 3)


def test_bad_stat_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(E, P, C\)"):
        compute_scales(np.zeros((3, 4)), np.zeros((3, 4)))


@pytest.mark.parametrize("name", COLORMAPS)
def test_palette_colours_are_all_distinct(name: str) -> None:
    # A GIF writer matches palette entries by colour; duplicates could renumber indices.
    assert len({tuple(c) for c in palette(name)}) == 256
