"""The writer: schema on disk, commit protocol, refusal to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from generator.errors import StoreError
from generator.store import SCHEMA_VERSION, StoreWriter
from tests.conftest import TINY_LAYERS, make_store, synthetic_record


def test_store_is_plain_zarr_v3_with_the_documented_layout(tiny_store: Path) -> None:
    group = zarr.open_group(str(tiny_store), mode="r")
    assert json.loads((tiny_store / "zarr.json").read_text())["zarr_format"] == 3
    assert group.attrs["schema_version"] == SCHEMA_VERSION
    assert group.attrs["epochs_committed"] == 3
    assert [layer["name"] for layer in group.attrs["layers"]] == [
        layer.name for layer in TINY_LAYERS
    ]
    assert group["activations/block1"].shape == (3, 2, 4, 8, 8)
    assert group["activations/block1"].chunks == (1, 2, 4, 8, 8)  # the probes in 1 MB
    assert group["activations/block1"].dtype == np.float16
    assert group["activations/hidden"].shape == (3, 2, 5)
    assert group["kernels/block2"].shape == (3, 6, 4, 3, 3)
    assert group["kernels/block2"].dtype == np.float32
    assert group["metrics/weight_change"].shape == (3, 4)  # epoch, layer with parameters
    assert group["metrics/confusion"].shape == (3, 3, 3)
    assert group["metrics/probe_probs"].shape == (3, 2, 3)
    assert group["metrics/channel_stats/block2"].shape == (3, 5, 2, 6)  # epoch, stat, probe, ch
    assert group["probes/images"].dtype == np.uint8
    assert group["probes/images"].shape == (2, 3, 8, 8)


def test_epoch_values_round_trip(tiny_store: Path) -> None:
    group = zarr.open_group(str(tiny_store), mode="r")
    expected = synthetic_record(2).activations["block2"].astype(np.float16)
    np.testing.assert_array_equal(group["activations/block2"][2], expected)
    assert np.isnan(group["metrics/train_loss"][0])
    assert group["metrics/train_loss"][2] == pytest.approx(0.5)


def test_create_refuses_an_existing_path(tiny_store: Path) -> None:
    before = zarr.open_group(str(tiny_store), mode="r").attrs["epochs_committed"]
    with pytest.raises(StoreError, match="already exists"):
        make_store(tiny_store)
    assert zarr.open_group(str(tiny_store), mode="r").attrs["epochs_committed"] == before


def test_epochs_must_be_written_in_order(tmp_path: Path) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=1)
    with pytest.raises(StoreError, match="cannot write epoch 3"):
        writer.write_epoch(3, synthetic_record(3))


def test_a_wrong_shape_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=2)
    broken = synthetic_record(2)
    broken.probe_probs = np.zeros((5, 5))
    with pytest.raises(StoreError, match="probe_probs"):
        writer.write_epoch(2, broken)
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")
    assert group.attrs["epochs_committed"] == 2
    assert group["activations/block1"].shape[0] == 2


def test_a_failed_write_leaves_the_epoch_uncommitted(tmp_path: Path, monkeypatch) -> None:
    import errno

    writer = make_store(tmp_path / "run.zarr", epochs=2)
    real = StoreWriter._write_slot

    async def disk_full_on_confusion(self, name, epoch, value):
        if name.endswith("confusion"):
            raise OSError(errno.ENOSPC, "No space left on device")
        await real(self, name, epoch, value)

    monkeypatch.setattr(StoreWriter, "_write_slot", disk_full_on_confusion)
    with pytest.raises(StoreError, match="No space left on device.*2 epochs committed"):
        writer.write_epoch(2, synthetic_record(2))
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")
    assert group.attrs["epochs_committed"] == 2
    assert group["activations/block1"].shape[0] >= 3  # grown and written, not committed
    np.testing.assert_array_equal(
        group["activations/block1"][1], synthetic_record(1).activations["block1"].astype(np.float16)
    )


def test_rewind_then_rewrite_replaces_the_epoch(tmp_path: Path) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=3)
    writer.rewind(2)
    assert writer.epochs_committed == 2
    writer.write_epoch(2, synthetic_record(7))
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")
    np.testing.assert_array_equal(
        group["activations/block1"][2], synthetic_record(7).activations["block1"].astype(np.float16)
    )


def test_arrays_grow_in_blocks_and_trim_to_the_committed_epochs(tmp_path: Path) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=3, trim=False)
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")
    assert group["activations/block1"].shape[0] == 16
    writer.trim()
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")
    assert group["activations/block1"].shape == (3, 2, 4, 8, 8)
    assert group["metrics/val_loss"].shape == (3,)
    np.testing.assert_array_equal(
        group["activations/block1"][2], synthetic_record(2).activations["block1"].astype(np.float16)
    )


def test_resume_reopens_with_the_same_layers(tiny_store: Path) -> None:
    writer = StoreWriter.open_for_resume(tiny_store)
    assert writer.epochs_committed == 3
    assert list(writer.attrs.layers) == TINY_LAYERS


def test_the_root_attributes_describe_every_layer_in_v2(tiny_store: Path) -> None:
    layers = zarr.open_group(str(tiny_store), mode="r").attrs["layers"]
    assert layers[0]["key"] == "block1"
    for field in ("module", "module_type", "parent", "weights", "groups", "stride", "padding"):
        assert all(field in layer for layer in layers), field


def test_a_v1_store_is_not_resumed(tmp_path: Path) -> None:
    """One store never mixes versions: the previous release's store is read, not extended."""
    import shutil

    store = shutil.copytree(Path(__file__).parent / "fixtures" / "v1run.zarr", tmp_path / "v1")
    before = (Path(store) / "zarr.json").read_bytes()
    with pytest.raises(StoreError, match="older netlapse.*schema v1.*train a new run"):
        StoreWriter.open_for_resume(Path(store))
    assert (Path(store) / "zarr.json").read_bytes() == before


def test_probe_images_of_another_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="probes/images must have shape"):
        StoreWriter.create(
            tmp_path / "run.zarr",
            class_names=["a", "b", "c"],
            layers=TINY_LAYERS,
            input_size=16,
            training={},
            probe_sources=["a.png"],
            probe_images=np.zeros((1, 3, 8, 8), dtype=np.uint8),
            probe_labels=np.zeros(1),
        )
    assert not (tmp_path / "run.zarr").exists()


def test_layers_the_reader_would_refuse_are_never_written(tmp_path: Path) -> None:
    layers = [*TINY_LAYERS, TINY_LAYERS[0]]
    with pytest.raises(StoreError, match="repeated layer name"):
        StoreWriter.create(
            tmp_path / "run.zarr",
            class_names=["a", "b", "c"],
            layers=layers,
            input_size=8,
            training={},
            probe_sources=["a.png"],
            probe_images=np.zeros((1, 3, 8, 8), dtype=np.uint8),
            probe_labels=np.zeros(1),
        )
    assert list(tmp_path.iterdir()) == []
