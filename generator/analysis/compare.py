"""Do two runs learn the same thing, and from when? Linear CKA between the layers of runs.

Kornblith et al. (2019) compared networks trained from different seeds with CKA and found
that early layers agree and late layers differ; here that comparison is made at every
epoch. For each pair of runs and each epoch, every shown layer of one run is compared with
every shown layer of the other (layer x layer) on the same samples: the probe images,
which must therefore be the same images in both runs (``probe_mismatch`` says why not
otherwise), each probe's maps resampled to the same ``grid`` x ``grid`` regions as the
run page's comparison between layers (``cka.common_grid_features``). Runs of different
architectures are compared the same way: CKA needs the same samples, not the same layers.

Cost, bounded for 200-layer nets and many runs: each run shows at most ``COMPARE_LAYERS``
layers (evenly spaced over depth beyond that, first and last always kept); each layer
keeps at most ``COMPARE_SAMPLES`` samples, so its centred, unit-norm n x n Gram matrix is
at most 2 MB; a run's Gram matrices are made once per epoch (the cache: one epoch of every
run at a time) and shared by every pair the run is in, and a pair's whole layer x layer
matrix is then one matrix product. Pairs are made among the first ``COMPARE_RUNS`` runs.
Memory: runs x layers x n² x 8 bytes for the epoch being compared (at most 512 MB at the
defaults); time: one read of every shown layer at every epoch, as ``run_similarity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from generator.analysis.cka import common_grid, common_grid_features, sample_rows, unit_gram
from generator.defaults import AGREE_THRESHOLD, COMPARE_LAYERS, COMPARE_RUNS, COMPARE_SAMPLES
from generator.store import LayerSpec, RunReader


def probe_mismatch(first: RunReader, second: RunReader) -> str | None:
    """Why the probe activations of two runs cannot be compared, or None when they can:
    CKA compares two representations of the same samples, so both runs must have
    recorded the same probe images (same count, size and pixels)."""
    a, b = first.probe_images, second.probe_images
    if a.shape != b.shape:
        return (
            f"{first.name} and {second.name} recorded different probes ({a.shape[0]} images "
            f"of {' x '.join(map(str, a.shape[1:]))} and {b.shape[0]} of "
            f"{' x '.join(map(str, b.shape[1:]))}); CKA needs the same probe images in both runs"
        )
    if not np.array_equal(a, b):
        return (
            f"{first.name} and {second.name} recorded different probe images; CKA needs the "
            "same probe images in both runs (record them with the same probes)"
        )
    return None


def compared_layers(layers: Sequence[LayerSpec], limit: int = COMPARE_LAYERS) -> list[LayerSpec]:
    """The layers a run shows in the comparison: all up to ``limit``, else ``limit`` evenly
    spaced over depth, the first and the last always among them."""
    if len(layers) <= limit:
        return list(layers)
    keep = np.unique(np.rint(np.linspace(0, len(layers) - 1, limit)).astype(int))
    return [layers[i] for i in keep.tolist()]


def same_architecture(first: RunReader, second: RunReader) -> bool:
    """Whether two runs recorded the same layers (names and output shapes, in order):
    then layer i of one is matched with layer i of the other."""
    return [(la.name, la.shape) for la in first.layers] == [
        (la.name, la.shape) for la in second.layers
    ]


def agree_epoch(matched: np.ndarray, *, threshold: float = AGREE_THRESHOLD) -> int | None:
    """The first epoch from which a layer's (E,) cross-run CKA stays >= ``threshold`` up to
    the last compared epoch; None if it is below at the last (NaN counts as below)."""
    series = np.asarray(matched, dtype=np.float64)
    if series.size == 0 or not series[-1] >= threshold:
        return None
    below = np.flatnonzero(~(series >= threshold))
    return int(below[-1]) + 1 if below.size else 0


@dataclass(frozen=True)
class CrossSimilarity:
    """Two runs compared. ``values`` (E, R, C): CKA of layer r of ``first`` and layer c of
    ``second`` at each common epoch, in [0, 1] (NaN for a constant layer); ``matched``
    (E, R): the same layer of both (same architecture) or the best match in ``second``;
    ``agree``: per row layer, the epoch from which ``matched`` stays >= ``threshold``
    (None: not by the last common epoch). ``skipped`` says why a pair was not compared
    (then ``values`` is empty)."""

    first: str
    second: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray
    same_architecture: bool
    samples: int
    grid: int
    threshold: float
    skipped: str = ""

    @property
    def matched(self) -> np.ndarray:
        if self.values.size == 0:
            return np.zeros((self.values.shape[0], len(self.rows)))
        if self.same_architecture:
            return np.diagonal(self.values, axis1=1, axis2=2)
        defined = np.where(np.isnan(self.values), -np.inf, self.values).max(axis=2)
        return np.where(np.isfinite(defined), defined, np.nan)

    @property
    def agree(self) -> tuple[int | None, ...]:
        if self.values.size == 0:
            return tuple(None for _ in self.rows)
        return tuple(agree_epoch(row, threshold=self.threshold) for row in self.matched.T)

    def to_json(self) -> dict[str, object]:
        """Plain JSON (NaN as null) for the site's ``compare.json``."""

        return {
            "first": self.first,
            "second": self.second,
            "rows": list(self.rows),
            "columns": list(self.columns),
            "same_architecture": self.same_architecture,
            "samples": self.samples,
            "grid": self.grid,
            "threshold": self.threshold,
            "skipped": self.skipped,
            "cka": plain_json(np.round(self.values, 4)),
            "matched": plain_json(np.round(self.matched, 4)),
            "agree_epoch": list(self.agree),
        }


def plain_json(values: np.ndarray) -> list:
    """An array as nested lists for JSON, NaN as None (JSON has no NaN)."""
    out = np.asarray(values, dtype=object)
    out[~np.isfinite(np.asarray(values, dtype=np.float64))] = None
    return out.tolist()


def compare_runs(
    runs: Sequence[RunReader],
    *,
    threshold: float = AGREE_THRESHOLD,
    layer_limit: int = COMPARE_LAYERS,
    budget: int = COMPARE_SAMPLES,
    run_limit: int = COMPARE_RUNS,
) -> list[CrossSimilarity]:
    """Every pair (i < j) of the first ``run_limit`` runs, compared at each epoch both have.

    A pair whose probes differ is returned with ``skipped`` set. The same reader given
    twice is compared with itself (its CKA is 1 wherever a layer is not constant).
    """
    chosen = list(runs[:run_limit])
    shown = [compared_layers(run.layers, layer_limit) for run in chosen]
    grid = min((common_grid(layers) for layers in shown), default=1)
    pairs = list(combinations(range(len(chosen)), 2))
    reasons = {(i, j): probe_mismatch(chosen[i], chosen[j]) for i, j in pairs}
    epochs = {(i, j): min(chosen[i].epochs, chosen[j].epochs) for i, j in pairs}
    values = {
        pair: np.full((epochs[pair], len(shown[pair[0]]), len(shown[pair[1]])), np.nan)
        for pair in pairs
        if reasons[pair] is None
    }
    samples: dict[int, int] = {}
    for epoch in range(max((epochs[p] for p in values), default=0)):
        live = [p for p in values if epoch < epochs[p]]
        grams: dict[int, _Grams] = {}
        for i in sorted({k for pair in live for k in pair}):
            twin = next((k for k in grams if chosen[k] is chosen[i]), None)
            grams[i] = (
                grams[twin]
                if twin is not None
                else _grams(chosen[i], shown[i], epoch, grid, budget)
            )
            samples[i] = grams[i].samples
        for i, j in live:
            values[(i, j)][epoch] = grams[i].cross(grams[j])
    return [
        CrossSimilarity(
            first=chosen[i].name,
            second=chosen[j].name,
            rows=tuple(layer.name for layer in shown[i]),
            columns=tuple(layer.name for layer in shown[j]),
            values=values.get((i, j), np.zeros((0, len(shown[i]), len(shown[j])))),
            same_architecture=same_architecture(chosen[i], chosen[j]),
            samples=samples.get(i, 0),
            grid=grid,
            threshold=threshold,
            skipped=reasons[(i, j)] or "",
        )
        for i, j in pairs
    ]


@dataclass(frozen=True)
class _Grams:
    """One run's shown layers at one epoch: (L, n²) unit Gram matrices, flattened, and
    which are defined (a constant layer's row is zero and its CKA NaN)."""

    matrix: np.ndarray
    defined: np.ndarray
    samples: int

    def cross(self, other: _Grams) -> np.ndarray:
        """(L1, L2) CKA: the inner products of unit Gram matrices, one matrix product."""
        out = np.clip(self.matrix @ other.matrix.T, 0.0, 1.0)
        out[~self.defined, :] = np.nan
        out[:, ~other.defined] = np.nan
        return out


def _grams(run: RunReader, layers: list[LayerSpec], epoch: int, grid: int, budget: int) -> _Grams:
    """Each layer's unit Gram matrix at ``epoch`` on the common grid (probe x region
    samples, the same rows for every layer and run: ``sample_rows`` of the count)."""
    rows = sample_rows(run.n_probes * grid * grid, budget=budget)
    matrix = np.zeros((len(layers), rows.size * rows.size))
    defined = np.zeros(len(layers), dtype=bool)
    for index, layer in enumerate(layers):
        gram = unit_gram(common_grid_features(run.layer_at(layer.name, epoch), grid)[rows])
        if gram is not None:
            matrix[index], defined[index] = gram.ravel(), True
    return _Grams(matrix, defined, rows.size)
