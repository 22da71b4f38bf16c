"""Linear CKA against its known properties and values, the settle epoch on constructed
sequences, and the numbers of a whole run store (synthetic and version 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.analysis import cka as ck
from generator.store import open_run
from tests.conftest import TINY_LAYERS, make_store

V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1run.zarr"
seeds = st.integers(min_value=0, max_value=2**32 - 1)
# No deadline: a property must not fail because a shared machine was busy.
PROPERTY = settings(deadline=None, max_examples=30)


def features(seed: int, n: int = 60, p: int = 7) -> np.ndarray:
    """(n, p) features with unequal column scales and a common offset, so centring and
    the scaling tests have something to do."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, p)) * rng.uniform(0.2, 3.0, p) + 5.0


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook Gram-matrix form: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)), H = I - 11ᵀ/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, m = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.trace(k @ m) / np.sqrt(np.trace(k @ k) * np.trace(m @ m)))


def random_rotation(seed: int, p: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@PROPERTY
@given(seeds)
def test_a_representation_is_identical_to_itself(seed: int) -> None:
    x = features(seed)
    assert ck.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_orthogonal_representations_score_zero() -> None:
    # columns orthogonal to each other and to the constant vector: already centred, YᵀX = 0
    basis, _ = np.linalg.qr(np.column_stack([np.ones(50), features(1, n=50, p=6)]))
    x, y = basis[:, 1:4], basis[:, 4:7]
    assert ck.linear_cka(x, y) == pytest.approx(0.0, abs=1e-12)


def test_independent_representations_score_near_zero_with_many_samples() -> None:
    assert ck.linear_cka(features(1, n=4000, p=5), features(2, n=4000, p=5)) < 0.01


@PROPERTY
@given(seeds, st.floats(min_value=1e-3, max_value=1e4))
def test_isotropic_scaling_changes_nothing(seed: int, scale: float) -> None:
    x, y = features(seed), features(seed + 1, p=4)
    assert ck.linear_cka(x * scale, y) == pytest.approx(ck.linear_cka(x, y), abs=1e-10)


@PROPERTY
@given(seeds)
def test_orthogonal_transforms_change_nothing(seed: int) -> None:
    x, y = features(seed), features(seed + 1, p=4)
    rotated = x @ random_rotation(seed, x.shape[1])
    assert ck.linear_cka(rotated, y) == pytest.approx(ck.linear_cka(x, y), abs=1e-10)
    assert ck.linear_cka(rotated, x) == pytest.approx(1.0, abs=1e-10)


def test_scaling_features_unequally_changes_the_value() -> None:
    x = features(3)
    stretched = x * np.array([100.0, 1, 1, 1, 1, 1, 1])
    assert ck.linear_cka(stretched, x) < 0.9


@PROPERTY
@given(seeds)
def test_cka_is_symmetric_and_in_the_unit_interval(seed: int) -> None:
    x, y = features(seed), features(seed + 1, p=3) + features(seed, p=3)
    forward, backward = ck.linear_cka(x, y), ck.linear_cka(y, x)
    assert forward == pytest.approx(backward, abs=1e-12)
    assert 0.0 <= forward <= 1.0


@pytest.mark.parametrize(("n", "p", "q"), [(80, 3, 5), (6, 40, 30)])
def test_both_forms_equal_the_textbook_formula(n: int, p: int, q: int) -> None:
    """Many samples take the feature form, few the Gram form: both give the known value."""
    x, y = features(4, n=n, p=p), features(5, n=n, p=q) + features(4, n=n, p=q) * 0.5
    expected = reference_cka(x, y)
    assert ck.linear_cka(x, y) == pytest.approx(expected, abs=1e-10)
    a, b = ck.centre(x).matrix, ck.centre(y).matrix
    assert ck._cross_sq(a, b, gram=True) == pytest.approx(ck._cross_sq(a, b, gram=False))


def test_one_feature_each_gives_the_squared_correlation() -> None:
    x, y = features(6, p=1), features(7, p=1) + features(6, p=1)
    r = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert ck.linear_cka(x, y) == pytest.approx(r**2, abs=1e-12)


def test_a_constant_or_non_finite_representation_is_undefined() -> None:
    x = features(8)
    assert np.isnan(ck.linear_cka(np.full_like(x, 3.0), x))
    broken = x.copy()
    broken[0, 0] = np.nan
    assert np.isnan(ck.linear_cka(broken, x))
    with pytest.raises(ValueError, match="same samples"):
        ck.linear_cka(x, x[:-1])


# -- settling ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ([0.2, 0.5, 0.95, 0.97, 1.0], 2),  # settles at epoch 2
        ([0.95, 0.96, 0.99, 1.0], 0),  # similar from the start
        ([0.2, 0.95, 0.5, 0.93, 1.0], 3),  # dipped back below: counted from after the dip
        ([0.2, 0.3, 0.5, 1.0], None),  # only the last epoch: never settled
        ([0.9, 0.9, 1.0], 0),  # the threshold itself counts as settled
        ([0.95, np.nan, 0.95, 1.0], 2),  # an undefined epoch counts as not settled
        ([1.0], None),  # one epoch: nothing to compare
        ([0.95, 0.97, np.nan], None),  # undefined at the last epoch (a constant layer)
        ([], None),
    ],
)
def test_settle_epoch(series: list[float], expected: int | None) -> None:
    assert ck.settle_epoch(np.array(series)) == expected


def test_the_settle_threshold_is_a_parameter() -> None:
    series = np.array([0.5, 0.85, 0.88, 1.0])
    assert ck.settle_epoch(series) is None
    assert ck.settle_epoch(series, threshold=0.8) == 1


# -- samples and the common grid ----------------------------------------------------------
def test_samples_are_capped_by_a_fixed_seed() -> None:
    rows = ck.sample_rows(10_000, budget=100)
    assert rows.size == 100 and np.unique(rows).size == 100 and rows.max() < 10_000
    np.testing.assert_array_equal(rows, ck.sample_rows(10_000, budget=100))
    np.testing.assert_array_equal(ck.sample_rows(50, budget=100), np.arange(50))


def test_samples_are_probe_positions_and_features_are_channels() -> None:
    acts = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)  # (probe, channel, h, w)
    table = ck.samples_by_channel(acts)
    assert table.shape == (8, 3)
    np.testing.assert_array_equal(table[5], acts[1, :, 0, 1])
    assert ck.samples_by_channel(np.zeros((4, 7))).shape == (4, 7)


def test_area_weights_average_when_shrinking_and_repeat_when_growing() -> None:
    np.testing.assert_allclose(ck.area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(ck.area_weights(2, 4), [[1, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_allclose(ck.area_weights(7, 3).sum(axis=1), 1.0)


def test_every_layer_lands_on_the_same_probe_regions() -> None:
    big = np.arange(2 * 1 * 4 * 4, dtype=float).reshape(2, 1, 4, 4)
    pooled = ck.common_grid_features(big, 2)
    assert pooled.shape == (8, 1)
    assert pooled[0, 0] == big[0, 0, :2, :2].mean() and pooled[7, 0] == big[1, 0, 2:, 2:].mean()
    vector = ck.common_grid_features(np.array([[1.0, 2.0], [3.0, 4.0]]), 2)
    np.testing.assert_array_equal(vector, [[1, 2]] * 4 + [[3, 4]] * 4)


def test_layers_are_compared_on_the_largest_grid_their_maps_allow() -> None:
    assert ck.common_grid(TINY_LAYERS) == 8  # maps of 8 x 8 and 4 x 4
    assert ck.common_grid(TINY_LAYERS[1:]) == 4  # no finer grid than any map has
    assert ck.common_grid([layer for layer in TINY_LAYERS if len(layer.shape) == 1]) == 1


# -- a run store ---------------------------------------------------------------------------
def test_a_run_gets_a_layer_by_epoch_matrix_and_a_symmetric_layer_matrix(tmp_path: Path) -> None:
    make_store(tmp_path / "run.zarr", epochs=4)
    run = open_run(tmp_path / "run.zarr")
    numbers = ck.run_similarity(run)
    assert numbers.layers == tuple(layer.name for layer in TINY_LAYERS)
    assert numbers.to_final.shape == (4, 4)
    np.testing.assert_allclose(numbers.to_final[:, -1], 1.0)
    np.testing.assert_allclose(numbers.between, numbers.between.T)
    np.testing.assert_allclose(np.diag(numbers.between), 1.0)
    assert numbers.samples == (2 * 8 * 8, 2 * 4 * 4, 2, 2)  # probes x positions; probes
    assert numbers.between_samples == 2 * 8 * 8 and numbers.grid == 8
    assert len(numbers.settle) == 4
    data = numbers.to_json()
    assert data["threshold"] == ck.SETTLE_THRESHOLD and len(data["to_final"]) == 4


def test_an_epoch_equal_to_the_last_up_to_rotation_and_scale_has_settled(tmp_path: Path) -> None:
    """Epoch 1's conv maps are the last epoch's with channels rotated and scaled, and
    epoch 0's are unrelated noise: the layer settles at epoch 1."""
    from generator.store import StoreWriter
    from tests.conftest import synthetic_record

    writer = StoreWriter.create(
        tmp_path / "run.zarr",
        class_names=["a", "b", "c"],
        layers=TINY_LAYERS,
        input_size=8,
        training={},
        probe_sources=["a.png", "b.png"],
        probe_images=np.zeros((2, 3, 8, 8), np.uint8),
        probe_labels=np.arange(2),
        activation_dtype="float32",
    )
    last = synthetic_record(2)
    rotation = random_rotation(0, 4)
    first_layer = last.activations["block1"]
    for epoch in range(3):
        record = synthetic_record(epoch)
        if epoch == 1:
            rotated = np.einsum("dc,pchw->pdhw", rotation, first_layer) * 7.0
            record.activations["block1"] = rotated
        if epoch == 2:
            record = last
        writer.write_epoch(epoch, record)
    writer.trim()
    numbers = ck.run_similarity(open_run(tmp_path / "run.zarr"))
    assert numbers.to_final[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert numbers.to_final[0, 0] < ck.SETTLE_THRESHOLD
    assert numbers.settle[0] == 1


def test_a_version_1_store_works(tmp_path: Path) -> None:
    shutil.copytree(V1_FIXTURE, tmp_path / "v1run.zarr")
    numbers = ck.run_similarity(open_run(tmp_path / "v1run.zarr"))
    assert numbers.layers == ("block1", "block2", "hidden", "logits")
    assert numbers.to_final.shape == (4, 2)
    assert np.isfinite(numbers.to_final).all() and np.isfinite(numbers.between).all()


def test_the_sample_budget_bounds_the_rows_compared(tmp_path: Path) -> None:
    make_store(tmp_path / "run.zarr", epochs=2)
    numbers = ck.run_similarity(open_run(tmp_path / "run.zarr"), budget=50)
    assert numbers.samples == (50, 32, 2, 2)
