"""Cross-run CKA (``generator.analysis.compare``) on synthetic stores: the textbook value
for a pair of layers, 1 for a run against itself, probes that differ refused with a
reason, the agree epoch on constructed series, and the bounds on layers and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.analysis import cka as ck
from generator.analysis import compare as cmp
from generator.store import LayerSpec, open_run
from tests.conftest import make_store
from tests.test_analysis_cka import reference_cka


def test_a_run_against_itself_is_one_and_a_pair_matches_the_textbook(tmp_path: Path) -> None:
    make_store(tmp_path / "a.zarr", epochs=3)
    make_store(tmp_path / "b.zarr", epochs=4)
    a, b = open_run(tmp_path / "a.zarr"), open_run(tmp_path / "b.zarr")
    first, itself, _ = cmp.compare_runs([a, b, a], budget=100)
    assert (itself.first, itself.second) == ("a", "a") and itself.same_architecture
    assert itself.values.shape == (3, 4, 4)  # epochs both have x layers x layers
    assert np.allclose(np.diagonal(itself.values, axis1=1, axis2=2), 1.0)
    assert itself.agree == (0, 0, 0, 0)
    assert np.nanmin(first.values) >= 0.0 and np.nanmax(first.values) <= 1.0
    assert first.samples == 100 and first.grid == ck.common_grid(a.layers)
    # block1 of a against block2 of b at epoch 2, computed from the textbook formula
    rows = ck.sample_rows(a.n_probes * first.grid**2, budget=100)
    x = ck.common_grid_features(a.layer_at("block1", 2), first.grid)[rows]
    y = ck.common_grid_features(b.layer_at("block2", 2), first.grid)[rows]
    assert first.values[2, 0, 1] == pytest.approx(reference_cka(x, y), abs=1e-9)
    data = first.to_json()
    assert data["rows"] == ["block1", "block2", "hidden", "logits"]
    assert np.array(data["cka"], dtype=float).shape == (3, 4, 4)


def test_runs_with_other_probes_are_not_compared_and_say_why(tmp_path: Path) -> None:
    make_store(tmp_path / "two.zarr", n_probes=2)
    make_store(tmp_path / "one.zarr", n_probes=1)
    (pair,) = cmp.compare_runs([open_run(tmp_path / "two.zarr"), open_run(tmp_path / "one.zarr")])
    assert "two and one recorded different probes" in pair.skipped
    assert "same probe images" in pair.skipped
    assert pair.values.size == 0 and pair.agree == (None,) * 4
    assert pair.to_json()["cka"] == []


def test_other_pixels_are_named_as_the_reason(tmp_path: Path) -> None:
    make_store(tmp_path / "a.zarr")
    a, b = open_run(tmp_path / "a.zarr"), open_run(tmp_path / "a.zarr")
    assert cmp.probe_mismatch(a, b) is None
    b.__dict__["probe_images"] = a.probe_images + 1  # the cached property, changed
    reason = cmp.probe_mismatch(a, b)
    assert reason is not None and "different probe images" in reason


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ([0.5, 0.95, 0.8, 0.92, 0.97], 3),  # a dip restarts the count
        ([0.95, 0.96, 0.97], 0),
        ([0.95, 0.96, 0.5], None),  # below at the last epoch: never agreed
        ([0.95, float("nan"), 0.95], 2),  # NaN counts as below
        ([], None),
    ],
)
def test_agree_epoch(series: list[float], expected: int | None) -> None:
    assert cmp.agree_epoch(np.array(series), threshold=0.9) == expected


def test_other_architectures_match_each_layer_with_its_best_counterpart() -> None:
    values = np.array([[[0.2, 0.95], [0.5, np.nan]], [[0.3, 0.92], [np.nan, np.nan]]])
    pair = cmp.CrossSimilarity("a", "b", ("x", "y"), ("p", "q"), values, False, 10, 1, 0.9)
    assert np.allclose(pair.matched[:, 0], [0.95, 0.92])
    assert pair.matched[0, 1] == 0.5 and np.isnan(pair.matched[1, 1])
    assert pair.agree == (0, None)


def test_a_deep_net_is_thinned_to_the_layer_limit() -> None:
    layers = [LayerSpec(f"l{i}", "conv", (2, 4, 4), (2, 2, 3, 3), 38, 3) for i in range(200)]
    kept = cmp.compared_layers(layers)
    assert len(kept) == cmp.COMPARE_LAYERS
    assert kept[0] is layers[0] and kept[-1] is layers[-1]
    assert cmp.compared_layers(layers[:5]) == layers[:5]
