"""The reader: committed epochs only, typed accessors, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.errors import StoreError
from generator.store import LayerSpec, StoreWriter, open_run
from tests.conftest import make_store, synthetic_record


def test_accessors_return_schema_shapes(tiny_store: Path) -> None:
    run = open_run(tiny_store)
    assert run.epochs == 3
    assert list(run.attrs.class_names) == ["alpha", "beta", "gamma"]
    assert [layer.name for layer in run.attrs.conv_layers] == ["block1", "block2"]
    assert run.layer_activations("block1").shape == (3, 2, 4, 8, 8)
    assert run.layer_activations("block1", probe=1).shape == (3, 4, 8, 8)
    assert run.layer_at("block2", 1).shape == (2, 6, 4, 4)
    assert run.channel("block2", 5, 1).shape == (3, 4, 4)
    assert run.kernels("block1").shape == (3, 4, 3, 3, 3)
    assert run.confusion().shape == (3, 3, 3)
    assert run.probe_probs().shape == (3, 2, 3)
    assert run.channel_stats("block1", "abs_max").shape == (3, 2, 4)
    assert list(run.attrs.probe_sources) == ["a.png", "b.png"]
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


# -- schema version 1, as the previous release wrote it ---------------------------------------
V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1run.zarr"


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A private copy: the committed fixture is never opened in place."""
    import shutil

    return Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1run.zarr"))


def test_a_v1_store_of_the_previous_release_opens(v1_store: Path) -> None:
    run = open_run(v1_store)
    assert run.attrs.schema_version == 1 and run.epochs == 2
    assert [layer.name for layer in run.layers] == ["block1", "block2", "hidden", "logits"]
    block2 = run.layer("block2")
    assert (block2.shape, block2.kernel_shape, block2.receptive_field) == (
        (4, 8, 8),
        (4, 4, 3, 3),
        8,
    )
    assert (block2.module, block2.parent, block2.stride, block2.groups) == (None, None, None, 1)
    assert run.layer_activations("block1").shape == (2, 2, 4, 16, 16)
    assert run.kernels("block2").shape == (2, 4, 4, 3, 3)
    assert run.channel_stats("hidden", "abs_max").shape == (2, 2, 256)
    assert run.confusion().shape == (2, 6, 6) and run.probe_probs().shape == (2, 2, 6)
    assert np.isnan(run.scalar_metric("train_loss")[0])
    assert run.weight_change()["block1"].shape == (2,)


@pytest.mark.slow
def test_a_v1_store_builds_a_gallery(v1_store: Path, tmp_path: Path) -> None:
    from generator.__main__ import main

    site = tmp_path / "site"
    assert main(["build", "--store", str(v1_store), "--out", str(site), "--jobs", "1"]) == 0
    pages = [p.read_text() for p in site.glob("runs/*/layers/*.html")]
    assert len(pages) == 4 and all("block" in p or "hidden" in p or "logits" in p for p in pages)
    assert (site / "index.html").is_file()
    assert list(site.glob("runs/*/media/**/*.png")) or list(site.glob("runs/*/media/**/*.mp4"))


# -- schema version 2: layer names of any model ----------------------------------------------
ODD_NAMES = ["layer1.0.conv1", "features.3", "a/b", "__init", "zarr.json", "dw conv", "é[0]"]


def test_layer_names_of_any_model_round_trip(tmp_path: Path) -> None:
    layers = [
        LayerSpec(name, "conv", (2, 4, 4), (2, 1, 3, 3), 20, groups=2, module=name)
        for name in ODD_NAMES
    ]
    writer = StoreWriter.create(
        tmp_path / "run.zarr",
        class_names=["alpha", "beta", "gamma"],
        layers=layers,
        input_size=8,
        training={},
        probe_sources=["a.png", "b.png"],
        probe_images=np.zeros((2, 3, 8, 8), dtype=np.uint8),
        probe_labels=np.arange(2),
    )
    for epoch in range(2):
        writer.write_epoch(epoch, synthetic_record(epoch, layers=layers))
    writer.close()
    run = open_run(tmp_path / "run.zarr")
    assert [layer.name for layer in run.layers] == ODD_NAMES
    for layer in layers:
        expected = synthetic_record(1, layers=layers).activations[layer.name]
        np.testing.assert_array_equal(run.layer_at(layer.name, 1), expected.astype(np.float16))
        assert run.kernels(layer.name).shape == (2, 2, 1, 3, 3)
    folders = sorted(p.name for p in (tmp_path / "run.zarr" / "activations").iterdir())
    assert "layer1.0.conv1" in folders and "features.3" in folders
    assert "a%2Fb" in folders and "zarr%2Ejson" in folders and "%5F_init" in folders
