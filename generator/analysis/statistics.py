"""Numbers the gallery derives from a run's store (no drawing, no HTML).

Kept apart from the figures so each can be tested on plain arrays: which channels are
dead, how much each kernel changed, which classes are confused most, which classes a
probe chart must show when there are too many to draw them all.
"""

from __future__ import annotations

import warnings

import numpy as np

from generator.store import RunReader


def dead_share(minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """(E, P, C) min/max -> (E,) share of channels constant over every probe (max == min);
    a channel whose statistics are all NaN counts as not dead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        spread = np.nanmax(maximum, axis=1) - np.nanmin(minimum, axis=1)
    return (spread == 0).mean(axis=1)


def kernel_change(run: RunReader, layer: str) -> np.ndarray:
    """(E, O) relative change of each output channel's kernel from the previous epoch.

    ‖W_c,e − W_c,e−1‖ / ‖W_c,e−1‖, NaN at epoch 0; read one epoch at a time so memory
    stays at two epochs of one layer's weights.
    """
    kernel_shape = run.layer(layer).kernel_shape
    if kernel_shape is None:
        raise ValueError(f"{layer} has no kernels")
    out = kernel_shape[0]
    change = np.full((run.epochs, out), np.nan)
    previous = None
    for epoch in range(run.epochs):
        weights = run.kernels(layer, epoch).reshape(out, -1).astype(np.float64)
        if previous is not None:
            norm = np.linalg.norm(previous, axis=1)
            diff = np.linalg.norm(weights - previous, axis=1)
            change[epoch] = np.divide(diff, norm, out=np.full(out, np.nan), where=norm > 0)
        previous = weights
    return change


def activation_range(abs_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, P, C) mean |activation| -> (E,) mean over all channels, and the lowest and
    highest channel (each averaged over probes); all-NaN epochs stay NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_channel = abs_mean.mean(axis=1)
        return (
            np.nanmean(abs_mean, axis=(1, 2)),
            np.nanmin(per_channel, 1),
            np.nanmax(per_channel, 1),
        )


def wants_log_scale(values: np.ndarray) -> bool:
    """Whether positive values span more than a factor of 10 (a log axis reads better)."""
    values = np.asarray(values, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(positive.size > 1 and positive.max() / positive.min() > 10)


def last_value(values: np.ndarray) -> float:
    """The value at the last epoch, NaN for an empty series."""
    return float(values[-1]) if len(values) else float("nan")


def top_confused(counts: np.ndarray, limit: int) -> list[tuple[int, int, int, float]]:
    """The ``limit`` largest off-diagonal cells of a (K, K) confusion matrix as (true,
    predicted, count, share of the true class's row), largest first; zeros left out."""
    counts = np.asarray(counts, dtype=np.int64)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:limit]
    rows, cols = np.unravel_index(flat, off.shape)
    totals = counts.sum(axis=1)
    return [
        (int(r), int(c), int(off[r, c]), float(off[r, c] / totals[r]))
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        if off[r, c] > 0
    ]


def top_classes(probs: np.ndarray, true: int, limit: int) -> list[int]:
    """Which of K classes a probe's (E, K) probability chart draws when K > ``limit``:
    the true class and the ones that were ever most probable, in class order."""
    k = probs.shape[1]
    if k <= limit:
        return list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        peak = np.nan_to_num(np.nanmax(probs, axis=0), nan=-1.0) if len(probs) else np.zeros(k)
    order = [c for c in np.argsort(-peak, kind="stable").tolist() if c != true]
    chosen = ([true] if 0 <= true < k else []) + order
    return sorted(chosen[:limit])
