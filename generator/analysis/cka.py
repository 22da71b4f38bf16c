"""When each layer settles: linear CKA (Kornblith et al., 2019) of the probe activations.

Linear centred kernel alignment compares two representations of the same samples,
``X`` (n, p1) and ``Y`` (n, p2), after centring each feature (column):

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)

It is 1 for representations that differ only by a rotation and an isotropic scale, 0 for
representations with no linear relation, and it is not changed by either, so it tells
whether a layer computes the same thing at two epochs although its units may have
rotated. Everything is float64. ``‖YᵀX‖²_F`` equals ``⟨XXᵀ, YYᵀ⟩_F``: the feature-space
form costs n·p1·p2, the n × n Gram form n²·(p1 + p2); each pair uses the cheaper one.

Samples are probe × spatial position and features are channels (a layer without a
spatial map has one sample per probe); ``sample_rows`` keeps at most ``SAMPLE_BUDGET``
of them, drawn once with ``SAMPLE_SEED``, so the same positions are compared at every
epoch. Caveat of the (biased) linear CKA: with fewer samples than features, unrelated
representations already score well above 0, so a layer with few samples (e.g. logits of
a run with few probes) reads as more similar than it is; the page shows each layer's
sample count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from generator.store import LayerSpec, RunReader

SETTLE_THRESHOLD = 0.9  # a layer has settled once its CKA to the final epoch stays >= this
SAMPLE_BUDGET = 4096  # samples (probe x position) per layer; more are subsampled
SAMPLE_SEED = 0  # fixed: the same positions are compared at every epoch and every build
COMMON_GRID = 8  # layers are compared with each other on 8 x 8 regions of each probe
BETWEEN_BUDGET = 1024  # samples (probe x region) for the comparison between layers


@dataclass(frozen=True)
class Centred:
    """A representation ready for CKA: (n, p) float64, each column centred and the whole
    matrix scaled to unit Frobenius norm (CKA ignores the scale; this keeps the fourth
    powers far from overflow), and ``self_norm`` = ‖XᵀX‖_F. ``self_norm`` is 0 for a
    constant or non-finite representation, whose CKA is undefined (NaN)."""

    matrix: np.ndarray
    self_norm: float


def centre(features: np.ndarray) -> Centred:
    """(n, p) samples x features -> its ``Centred`` form (any real dtype in)."""
    x = _unit_centred(features)
    if x is None:
        return Centred(np.zeros(np.shape(features)), 0.0)
    return Centred(x, math.sqrt(_cross_sq(x, x)))


def _unit_centred(features: np.ndarray) -> np.ndarray | None:
    """Each column centred, the whole scaled to unit Frobenius norm (None if constant or
    not finite)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"CKA needs (samples, features), got shape {x.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    scale = float(np.linalg.norm(x))
    if not math.isfinite(scale) or scale == 0.0:
        return None
    return x / scale


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of (n, p1) and (n, p2) with the same n samples; NaN if either is constant."""
    return cka(centre(x), centre(y))


def cka(a: Centred, b: Centred) -> float:
    """Linear CKA of two centred representations of the same samples (NaN if undefined)."""
    if a.matrix.shape[0] != b.matrix.shape[0]:
        raise ValueError(f"CKA needs the same samples, got {a.matrix.shape} and {b.matrix.shape}")
    if a.self_norm == 0.0 or b.self_norm == 0.0:
        return float("nan")
    value = _cross_sq(a.matrix, b.matrix) / (a.self_norm * b.self_norm)
    return float(min(max(value, 0.0), 1.0))  # rounding can leave it a hair outside


def _cross_sq(x: np.ndarray, y: np.ndarray, *, gram: bool | None = None) -> float:
    """‖YᵀX‖²_F = ⟨XXᵀ, YYᵀ⟩_F, by whichever form is cheaper for the shapes (or ``gram``)."""
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if gram is None:
        gram = n * n * (p + q) < n * p * q
    if gram:
        return float(np.vdot(x @ x.T, y @ y.T))
    cross = x.T @ y
    return float(np.vdot(cross, cross))


# -- settling ------------------------------------------------------------------------------
def settle_epoch(to_final: np.ndarray, *, threshold: float = SETTLE_THRESHOLD) -> int | None:
    """The first epoch from which a layer's (E,) CKA to the last epoch stays >= ``threshold``.

    The last epoch compared with itself is 1 by construction, so only an earlier epoch
    counts: None means the layer had not settled before the run ended (or its CKA is
    undefined). NaN counts as below the threshold; a dip below it restarts the count.
    """
    series = np.asarray(to_final, dtype=np.float64)
    if series.size == 0 or not series[-1] >= threshold:  # undefined at the last epoch
        return None
    values = series[:-1]
    below = np.flatnonzero(~(values >= threshold))
    first = int(below[-1]) + 1 if below.size else 0
    return first if first < values.size else None


# -- samples -------------------------------------------------------------------------------
def sample_rows(total: int, *, budget: int = SAMPLE_BUDGET, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Which of ``total`` samples to keep: all of them up to ``budget``, else ``budget``
    drawn without replacement by a fixed seed, in order. Depends only on ``total``, so a
    layer is sampled at the same probe positions at every epoch."""
    if total <= budget:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=budget, replace=False))


def samples_by_channel(activations: np.ndarray) -> np.ndarray:
    """(P, C, *spatial) or (P, N) -> (P·positions, C) without copying: one row per probe
    and position, one column per channel (or unit)."""
    acts = np.asarray(activations)
    if acts.ndim <= 2:
        return acts.reshape(acts.shape[0], -1)
    return np.moveaxis(acts, 1, -1).reshape(-1, acts.shape[1])


def sampled_features(activations: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` of ``samples_by_channel`` as float64 (only those rows are converted)."""
    return samples_by_channel(activations)[rows].astype(np.float64)


# -- a common grid for comparing layers -----------------------------------------------------
def area_weights(source: int, target: int) -> np.ndarray:
    """(target, source) weights that resample ``source`` cells onto ``target`` equal cells
    of the same extent by overlap area: averaging when shrinking, repeating when growing.
    Each row sums to 1."""
    edges_s = np.linspace(0.0, 1.0, source + 1)
    edges_t = np.linspace(0.0, 1.0, target + 1)
    low = np.maximum(edges_t[:-1, None], edges_s[None, :-1])
    high = np.minimum(edges_t[1:, None], edges_s[None, 1:])
    overlap = np.clip(high - low, 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def common_grid_features(activations: np.ndarray, grid: int) -> np.ndarray:
    """(P, C, H, W) -> (P·grid², C): each probe's map resampled to ``grid`` × ``grid`` regions
    of the input, so every layer describes the same (probe, region) samples.

    A layer without a 2-D map (a vector, or a map of another rank) has one value per probe:
    its per-probe mean is repeated for each region, as a layer that cannot tell regions
    apart would report them.
    """
    acts = np.asarray(activations, dtype=np.float64)
    probes = acts.shape[0]
    if acts.ndim == 4:
        rows = area_weights(acts.shape[2], grid)
        cols = area_weights(acts.shape[3], grid)
        pooled = np.einsum("gh,pchw,kw->pgkc", rows, acts, cols, optimize=True)
        return pooled.reshape(probes * grid * grid, acts.shape[1])
    flat = acts.reshape(probes, acts.shape[1], -1).mean(axis=2) if acts.ndim > 2 else acts
    return np.repeat(flat.reshape(probes, -1), grid * grid, axis=0)


def common_grid(layers: list[LayerSpec]) -> int:
    """The regions per side on which layers are compared: ``COMMON_GRID``, or fewer when no
    layer's map is that large (resolution no layer has would only repeat values), 1 for a
    model without 2-D maps (then the samples are the probes)."""
    sides = [min(layer.shape[1:]) for layer in layers if len(layer.shape) == 3]
    return min(COMMON_GRID, max(sides, default=1))


# -- a run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSimilarity:
    """A run's CKA numbers. ``to_final`` (L, E): each layer at each epoch against itself at
    the last epoch; ``between`` (L, L): every pair of layers at the last epoch, on the
    common grid; ``settle``: each layer's settle epoch (None: not before the last);
    ``samples``: rows each layer's ``to_final`` compared; ``between_samples``: rows of
    ``between`` (probes x ``grid``² regions, up to the budget)."""

    layers: tuple[str, ...]
    to_final: np.ndarray
    between: np.ndarray
    settle: tuple[int | None, ...]
    samples: tuple[int, ...]
    between_samples: int
    grid: int
    threshold: float

    def to_json(self) -> dict[str, object]:
        """Plain JSON (NaN as null) for the site's ``similarity.json``."""

        def plain(values: np.ndarray) -> list:
            return [[v if math.isfinite(v) else None for v in row] for row in values.tolist()]

        return {
            "method": "linear CKA (Kornblith et al., 2019), centred features, float64",
            "threshold": self.threshold,
            "sample_budget": SAMPLE_BUDGET,
            "sample_seed": SAMPLE_SEED,
            "layers": list(self.layers),
            "epochs": int(self.to_final.shape[1]),
            "samples": list(self.samples),
            "to_final": plain(self.to_final),
            "settle_epoch": list(self.settle),
            "between_layers_at_last_epoch": plain(self.between),
            "between_grid": self.grid,
            "between_samples": self.between_samples,
        }


def run_similarity(
    run: RunReader, *, threshold: float = SETTLE_THRESHOLD, budget: int = SAMPLE_BUDGET
) -> RunSimilarity:
    """Every layer's CKA to its last epoch, between layers at the last epoch, settle epochs.

    Reads one epoch of one layer at a time (memory: one layer's activations plus each
    layer's last epoch on the common grid).
    """
    names = tuple(layer.name for layer in run.layers)
    grid = common_grid(run.layers)
    to_final = np.full((len(names), run.epochs), np.nan)
    samples, on_grid = [], []
    for index, name in enumerate(names):
        to_final[index], count, final = _layer_to_final(run, name, budget)
        samples.append(count)
        on_grid.append(common_grid_features(final, grid))
    between, between_samples = layer_by_layer(on_grid)
    return RunSimilarity(
        layers=names,
        to_final=to_final,
        between=between,
        settle=tuple(settle_epoch(row, threshold=threshold) for row in to_final),
        samples=tuple(samples),
        between_samples=between_samples,
        grid=grid,
        threshold=threshold,
    )


def _layer_to_final(run: RunReader, name: str, budget: int) -> tuple[np.ndarray, int, np.ndarray]:
    """(E,) CKA of one layer to its last epoch, the samples used, and the last epoch's
    activations (for the comparison between layers)."""
    last = run.epochs - 1
    final = run.layer_at(name, last)
    rows = sample_rows(samples_by_channel(final).shape[0], budget=budget)
    reference = centre(sampled_features(final, rows))
    values = [
        cka(centre(sampled_features(run.layer_at(name, e), rows)), reference) for e in range(last)
    ]
    return np.array([*values, cka(reference, reference)]), rows.size, final


def layer_by_layer(
    features: list[np.ndarray], *, budget: int = BETWEEN_BUDGET
) -> tuple[np.ndarray, int]:
    """(L, L) CKA between layers given as (n, p_i) features of the same n samples (the
    same rows kept for all, up to ``budget``), and the samples used. Symmetric, 1 on the
    diagonal (NaN for a constant layer).

    Each layer's centred n x n Gram matrix is made once, so a pair costs n² however wide
    its layers are; ``budget`` bounds their memory (8 MB each at 1024 samples).
    """
    if not features:
        return np.zeros((0, 0)), 0
    rows = sample_rows(features[0].shape[0], budget=budget)
    grams = [unit_gram(f[rows]) for f in features]
    out = np.full((len(grams), len(grams)), np.nan)
    for i, a in enumerate(grams):
        for j in range(i, len(grams)):
            b = grams[j]
            if a is not None and b is not None:
                out[i, j] = out[j, i] = min(max(float(np.vdot(a, b)), 0.0), 1.0)
    return out, rows.size


def unit_gram(features: np.ndarray) -> np.ndarray | None:
    """XXᵀ of the centred features scaled to unit Frobenius norm (None if constant): one
    matrix product, its norm taken from itself (the cross-run CKA makes one per layer,
    run and epoch)."""
    x = _unit_centred(features)
    if x is None:
        return None
    gram = x @ x.T
    norm = float(np.linalg.norm(gram))
    return gram / norm if norm > 0.0 else None
