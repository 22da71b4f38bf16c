"""Contact sheets: rows = channels, columns = (log-spaced) epochs, with headers."""

from __future__ import annotations

import numpy as np
import pytest

from generator.render.colormaps import RAMP_SIZE, TEXT_INDEX, ZERO_INDEX
from generator.render.contact import choose_epochs, contact_sheet


def test_zeiler_fergus_like_choice() -> None:
    assert choose_epochs(65, 8) == [0, 1, 2, 4, 8, 16, 32, 64]


def test_few_epochs_are_all_shown() -> None:
    assert choose_epochs(6, 8) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("n", [9, 10, 11, 20, 31, 51, 101, 1000])
@pytest.mark.parametrize("columns", [3, 8, 10])
def test_choice_is_log_spaced_and_keeps_the_ends(n: int, columns: int) -> None:
    epochs = choose_epochs(n, columns)
    assert epochs[:2] == [0, 1] and epochs[-1] == n - 1
    assert len(epochs) <= columns and epochs == sorted(set(epochs))
    if n > 3 * columns:
        assert len(epochs) >= columns - 1  # rounding may merge one, not more
        gaps = np.diff(epochs[1:])
        assert len(gaps) < 2 or gaps[0] < gaps[-1]  # dense early, sparse late


def test_sheet_layout_and_epoch_columns() -> None:
    e, c = 20, 3
    values = np.zeros((e, c, 4, 4), dtype=np.float32)
    values[-1, 1] = 1.0  # last epoch, channel 1: positive
    sheet = contact_sheet(
        values,
        np.ones((e, c)),
        np.ones((e, c)),
        max_columns=5,
        min_tile=32,
        title="block3 · probe 0",
    )
    assert sheet.epochs == choose_epochs(e, 5) and sheet.epochs[-1] == e - 1
    assert sheet.channels == [0, 1, 2]
    img = sheet.image
    assert img.ndim == 2 and img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0
    full = img == RAMP_SIZE - 1
    ys, xs = np.nonzero(full)
    assert len(ys) == 32 * 32  # exactly one tile is positive
    tiles_x = np.nonzero((img < RAMP_SIZE).any(axis=0))[0]
    assert xs.max() == tiles_x.max() and xs.min() > tiles_x.max() - 32  # the last column
    zero_rows = np.nonzero((img == ZERO_INDEX).any(axis=1))[0]
    assert 3 * 32 <= len(zero_rows) <= 3 * 33  # three rows of tiles
    assert (img[: zero_rows[0]] == TEXT_INDEX).any()  # title and epoch headers on top
    assert (img[zero_rows[0] :, : tiles_x.min()] == TEXT_INDEX).any()  # channel labels


def test_channels_are_capped() -> None:
    values = np.zeros((4, 100), dtype=np.float32)  # a linear layer, 100 units
    sheet = contact_sheet(values, np.ones((4, 100)), np.ones((4, 100)), max_channels=10)
    assert sheet.channels == list(range(10)) and sheet.epochs == [0, 1, 2, 3]
    assert max(sheet.image.shape) < 1024


def test_epoch_numbers_label_pre_chosen_columns() -> None:
    values = np.arange(3 * 2 * 4 * 4, dtype=np.float32).reshape(3, 2, 4, 4)
    scale = np.full((3, 2), 100.0)
    sheet = contact_sheet(values, scale, scale, epoch_numbers=[0, 5, 30])
    assert sheet.epochs == [0, 5, 30]
    with pytest.raises(ValueError, match="2 epoch numbers for 3"):
        contact_sheet(values, scale, scale, epoch_numbers=[0, 5])
