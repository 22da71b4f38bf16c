"""Probe frames: image beside class-probability bars, true class marked."""

from __future__ import annotations

import numpy as np
import pytest

from generator.render.probs import BAR, BAR_WIDTH, TRUE_BAR, probe_frames, shown_classes

NAMES = ["cat", "dog", "floodzone", "river"]


def _bar_pixels(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Per row, the longest horizontal run of ``colour`` (a bar; labels are shorter runs)."""
    runs = []
    for row in (frame == colour).all(axis=-1):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        runs.append(int(np.max(edges[1::2] - edges[::2], initial=0)))
    return np.array(runs)


def test_most_probable_class_has_the_longest_bar() -> None:
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0] = 200
    probs = np.array(
        [[0.25, 0.25, 0.25, 0.25], [0.1, 0.7, 0.15, 0.05], [0.05, 0.1, 0.8, 0.05]], dtype=np.float32
    )
    f = probe_frames(image, probs, NAMES, true_class=2)
    assert f.palette is None and f.frames.shape[0] == 3 and f.frames.shape[-1] == 3
    # epoch 1: "dog" (not the true class) is longest, in the plain bar colour
    assert _bar_pixels(f.frames[1], BAR).max() == round(0.7 * BAR_WIDTH)
    # epoch 2: the true class is longest and drawn in its own colour
    assert _bar_pixels(f.frames[2], TRUE_BAR).max() == round(0.8 * BAR_WIDTH)
    assert _bar_pixels(f.frames[2], BAR).max() == round(0.1 * BAR_WIDTH)
    # the probe image is in the frame, upscaled
    assert ((f.frames[0] == (200, 0, 0)).all(axis=-1)).sum() >= 160 * 160


def test_rows_follow_class_order_and_bars_grow() -> None:
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    f = probe_frames(np.zeros((3, 8, 8), dtype=np.uint8), probs, NAMES, true_class=0)
    rows = _bar_pixels(f.frames[0], BAR)
    lengths = [n for n in rows if n]  # bar rows, top to bottom
    distinct = sorted(set(lengths), key=lengths.index)
    assert distinct == [round(p * BAR_WIDTH) for p in (0.2, 0.3, 0.4)]


def test_many_classes_keep_the_true_class() -> None:
    probs = np.full((2, 30), 0.01, dtype=np.float32)
    probs[:, 7] = 0.5
    shown = shown_classes(probs, true_class=29, max_classes=5)
    assert len(shown) == 5 and 29 in shown and 7 in shown
    assert list(shown) == sorted(shown)


def test_names_must_match_probabilities() -> None:
    with pytest.raises(ValueError, match="class names"):
        probe_frames(np.zeros((3, 8, 8), dtype=np.uint8), np.ones((1, 3)), NAMES, 0)
