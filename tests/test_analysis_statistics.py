"""Numbers the gallery derives for its figures: confused pairs, which classes to draw."""

from __future__ import annotations

import numpy as np

from generator.analysis.statistics import top_classes, top_confused, wants_log_scale


def test_top_confused_lists_off_diagonal_cells_largest_first() -> None:
    counts = np.array([[5, 3, 0], [1, 9, 0], [0, 4, 6]])
    assert top_confused(counts, 2) == [(2, 1, 4, 0.4), (0, 1, 3, 0.375)]
    assert top_confused(np.eye(3, dtype=int), 5) == []  # nothing confused, nothing listed


def test_top_classes_keep_the_true_class_and_the_most_probable() -> None:
    probs = np.full((2, 6), 0.01)
    probs[1, 4] = 0.9  # class 4 became most probable
    probs[0, 2] = 0.5
    assert top_classes(probs, true=0, limit=3) == [0, 2, 4]
    assert top_classes(probs, true=0, limit=10) == list(range(6))


def test_log_scale_only_when_values_span_a_decade() -> None:
    assert wants_log_scale(np.array([np.nan, 0.01, 0.5]))
    assert not wants_log_scale(np.array([np.nan, 0.1, 0.5]))
