"""The reader: committed epochs only, typed accessors, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.errors import StoreError
from generator.reader import open_run
from tests.conftest import make_store, synthetic_record


def test_accessors_return_schema_shapes(tiny_store: Path) -> None:
    run = open_run(tiny_store)
    assert run.epochs == 3
    assert run.class_names == ["alpha", "beta", "gamma"]
    assert [layer.name for layer in run.conv_layers] == ["block1", "block2"]
    assert run.layer_activations("block1").shape == (3, 2, 4, 8, 8)
    assert run.layer_activations("block1", probe=1).shape == (3, 4, 8, 8)
    assert run.layer_at("block2", 1).shape == (2, 6, 4, 4)
    assert run.channel("block2", 5, 1).shape == (3, 4, 4)
    assert run.kernels("block1").shape == (3, 4, 3, 3, 3)
    assert run.confusion().shape == (3, 3, 3)
    assert run.probe_probs().shape == (3, 2, 3)
    assert run.channel_stats("block1", "abs_max").shape == (3, 2, 4)
    assert run.probe_sources == ["a.png", "b.png"]
    assert run.probe_images.dtype == np.uint8


def test_channel_matches_the_written_epoch(tiny_store: Path) -> None:
    run = open_run(tiny_store)
    expected = synthetic_record(1).activations["block2"][1, 3].astype(np.float16)
    np.testing.assert_array_equal(run.channel("block2", 3, 1)[1], expected)


def test_reader_sees_only_committed_epochs(tmp_path: Path) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=3)
    writer.rewind(2)  # as if epoch 2 were half written when the reader opened the store
    run = open_run(tmp_path / "run.zarr")
    assert run.epochs == 2
    assert run.layer_activations("block1").shape[0] == 2
    assert run.scalar_metric("val_loss").shape == (2,)
    with pytest.raises(StoreError, match="epoch 2 is not committed"):
        run.layer_at("block1", 2)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such store"),
        (lambda p: p.mkdir(), "not a zarr store"),
        (lambda p: (p.mkdir(), (p / "zarr.json").write_text("{nope")), "unreadable"),
        (
            lambda p: (
                p.mkdir(),
                (p / "zarr.json").write_text(
                    json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
                ),
            ),
            "not a netlapse run store",
        ),
    ],
)
def test_bad_paths_give_one_line_errors(tmp_path: Path, setup, message) -> None:
    path = tmp_path / "bad.zarr"
    setup(path)
    with pytest.raises(StoreError, match=message) as info:
        open_run(path)
    assert "\n" not in str(info.value)


def test_newer_schema_is_refused(tiny_store: Path) -> None:
    meta = tiny_store / "zarr.json"
    node = json.loads(meta.read_text())
    node["attributes"]["schema_version"] = 99
    meta.write_text(json.dumps(node))
    with pytest.raises(StoreError, match="newer than this netlapse"):
        open_run(tiny_store)


def test_missing_array_is_reported(tiny_store: Path) -> None:
    import shutil

    shutil.rmtree(tiny_store / "activations" / "block2")
    with pytest.raises(StoreError, match="activations/block2 is missing"):
        open_run(tiny_store)


def test_unknown_layer_names_the_choices(tiny_store: Path) -> None:
    with pytest.raises(StoreError, match="block1, block2, hidden, logits"):
        open_run(tiny_store).layer("block9")


def test_epoch_and_group_reads_agree_with_whole_reads(tiny_store: Path) -> None:
    run = open_run(tiny_store)
    whole = run.layer_activations("block2", probe=1)
    np.testing.assert_array_equal(run.layer_at("block2", 2, probe=1), whole[2])
    np.testing.assert_array_equal(run.channel_range("block2", 1, 2, 5), whole[:, 2:5])
    np.testing.assert_array_equal(run.kernels("block1", 1), run.kernels("block1")[1])
    with pytest.raises(StoreError, match="no conv kernels"):
        run.kernels("hidden")
