"""What the writer is given: one epoch's record, the example pool, and their store paths.

``EpochRecord`` and ``ExamplePoolRecord`` are the writer's input types (numpy arrays keyed
by layer name); ``epoch_slots`` turns a record into store path -> value for exactly the
epoch-indexed arrays of the plan, checked before anything touches the disk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.errors import StoreError
from generator.store._arrays import check_shape
from generator.store._backends import StoreLocation
from generator.store._keys import BUDGET, FEATVIZ_SKIPPED
from generator.store._schema import (
    CONFUSION,
    EXAMPLE_FIELDS,
    EXAMPLES,
    FEATVIZ,
    GRADIENTS,
    HISTOGRAMS,
    PROBE_PROBS,
    SCALAR_METRICS,
    STAT_FIELDS,
    WEIGHT_CHANGE,
    ArraySpec,
    LayerSpec,
    activation_path,
    channel_stats_path,
    example_path,
    example_pool_path,
    featviz_path,
    gradient_layers,
    kernel_path,
    metric_path,
)


@dataclass
class EpochRecord:
    """Everything recorded for one epoch, as numpy arrays keyed by layer name.

    A metric the loop did not measure is left out: a missing scalar is stored as NaN, a
    missing confusion matrix as zeros (no images counted), ``extra`` scalars by name.
    """

    activations: dict[str, np.ndarray]
    channel_stats: dict[str, dict[str, np.ndarray]]
    kernels: dict[str, np.ndarray]
    weight_change: dict[str, float]
    probe_probs: np.ndarray
    confusion: np.ndarray | None = None
    scalars: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    featviz: dict[str, np.ndarray] = field(default_factory=dict)  # (C, S, S, 3) uint8
    # conv layer -> "index" (C, k), "position" (C, k, 2), "value" (C, k): dataset examples,
    # required exactly when the store keeps them (``ExamplePoolRecord``)
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # what recording left out: layer -> why it has no visualization (kept once said), and
    # this epoch's {"overhead": f, "featviz_steps": n, "examples": bool} (None: no budget)
    featviz_skipped: dict[str, str] = field(default_factory=dict)
    budget: dict[str, Any] | None = None
    # store path -> value of the gradient arrays (``_gradients``), when the store has them;
    # one left out is stored blank (NaN, 0 passes)
    gradients: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ExamplePoolRecord:
    """The example pool a store keeps once: images (N, S, S, 3) uint8, labels (N,) with
    -1 = unknown, a source name per image, and how many top images each channel keeps."""

    images: np.ndarray
    labels: np.ndarray
    sources: tuple[str, ...]
    top_k: int

    def arrays(self) -> dict[str, np.ndarray]:
        """Its two arrays by store path (``example_pool/images`` and ``labels``)."""
        return {example_pool_path("images"): self.images, example_pool_path("labels"): self.labels}


Slot = np.ndarray | float  # one array's value at one epoch


def recording_notes(
    skipped: Mapping[str, str] | None,
    budget: Mapping[str, Any] | None,
    epoch: int,
    record: EpochRecord,
) -> dict[str, Any]:
    """The root attributes ``featviz_skipped`` and ``budget`` with ``record``'s notes for
    ``epoch`` added to the stored ones (empty when there is nothing to say)."""
    notes: dict[str, Any] = {}
    if record.featviz_skipped:
        notes[FEATVIZ_SKIPPED] = {**(skipped or {}), **record.featviz_skipped}
    if record.budget is not None:
        stored = dict(budget or {})
        notes[BUDGET] = {"overhead": record.budget.get("overhead")}
        for key in ("featviz_steps", "examples"):
            series = list(stored.get(key, []))[:epoch]
            series += [None] * (epoch - len(series)) + [record.budget.get(key)]
            notes[BUDGET][key] = series
    return notes


def epoch_slots(
    path: StoreLocation,
    record: EpochRecord,
    plan: Mapping[str, ArraySpec],
    *,
    layers: Sequence[LayerSpec],
) -> dict[str, Slot]:
    """``record`` as store path -> value for the epoch-indexed arrays of ``plan``: a missing
    confusion matrix or visualization becomes blanks, anything else missing or of another
    shape is a one-line ``StoreError`` naming the store."""
    try:
        given = flatten_record(record, layers=layers)
    except StoreError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    for name in plan:  # a record without its visualizations or gradients stores blanks
        if name.startswith((f"{FEATVIZ}/", f"{GRADIENTS}/", f"{HISTOGRAMS}/")):
            given.setdefault(name, None)
    _check_examples(path, record, plan)
    slots: dict[str, Slot] = {}
    for name, value in given.items():
        if name not in plan:
            raise StoreError(f"{path}: {name} is not an array of this store")
        shape, dtype = plan[name].shape, plan[name].dtype
        if value is None:
            value = np.zeros(shape, dtype) if "int" in dtype else np.full(shape, np.nan)
        check_shape(path, name, value, shape)
        slots[name] = value
    return slots


def _check_examples(
    path: StoreLocation, record: EpochRecord, plan: Mapping[str, ArraySpec]
) -> None:
    """A store that keeps dataset examples gets them every epoch (a missing one would
    read as pool image 0), and one that does not never gets them."""
    wanted = {name for name in plan if name.startswith(f"{EXAMPLES}/")}
    given = {example_path(layer, f) for layer in record.examples for f in EXAMPLE_FIELDS}
    missing = sorted(wanted - given)
    if missing:
        raise StoreError(
            f"{path}: this store keeps dataset examples but the epoch has no "
            f"{missing[0]}; record it with the example pool it was created with"
        )


def flatten_record(record: EpochRecord, *, layers: Sequence[LayerSpec]) -> dict[str, Slot | None]:
    """An epoch record as store paths -> values, matching ``array_plan`` of this schema
    version for ``layers`` (the store's, in model order: the stacked weight changes follow
    it)."""
    out: dict[str, Slot | None] = {}
    for layer, value in record.activations.items():
        out[activation_path(layer)] = value
    for layer, stats in record.channel_stats.items():
        out[channel_stats_path(layer)] = np.stack([stats[stat] for stat in STAT_FIELDS])
    for layer, value in record.kernels.items():
        out[kernel_path(layer)] = value
    changed = [layer.name for layer in gradient_layers(layers)]
    if changed:
        out[metric_path(WEIGHT_CHANGE)] = _stacked_changes(record.weight_change, changed)
    for name in SCALAR_METRICS:
        out[metric_path(name)] = record.scalars.get(name, math.nan)
    out[metric_path(CONFUSION)] = record.confusion
    out[metric_path(PROBE_PROBS)] = record.probe_probs
    for layer, value in record.featviz.items():
        out[featviz_path(layer)] = value
    for layer, fields_ in record.examples.items():
        for name, value in fields_.items():
            out[example_path(layer, name)] = value
    out.update(record.gradients)
    return out


def _stacked_changes(changes: Mapping[str, float], layers: Sequence[str]) -> np.ndarray:
    """The weight changes in the store's layer order (NaN for a record without any, as for
    a metric not measured); a record of other layers is refused."""
    if not changes:
        return np.full(len(layers), np.nan, np.float32)
    wrong = sorted(set(changes) ^ set(layers))
    if wrong:
        raise StoreError(f"the weight change of layer {wrong[0]!r} does not fit this store")
    return np.array([changes[name] for name in layers], dtype=np.float32)


def merge_extra_metrics(
    stored: Mapping[str, list[float | None]], epoch: int, values: Mapping[str, float]
) -> dict[str, list[float | None]]:
    """name -> per-epoch values up to ``epoch`` (values of rewound epochs dropped)."""
    merged: dict[str, list[float | None]] = {}
    for name in dict.fromkeys([*stored, *values]):
        kept = list(stored.get(name, []))[:epoch]
        value = values.get(name)
        now = float(value) if value is not None and math.isfinite(value) else None
        merged[name] = kept + [None] * (epoch - len(kept)) + [now]
    return merged
