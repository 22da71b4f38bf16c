"""Schema version 3: probes of any channel count and shape (``probe_shape``), their RGB
pictures (``probes/display`` for channel counts other than 1 and 3), and version-2 stores
(square RGB, ``input_size`` only) still read as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.errors import StoreError
from generator.store import SCHEMA_VERSION, LayerSpec, StoreWriter, open_run
from generator.store._schema import parse_root_attrs
from tests.conftest import TINY_LAYERS, make_store
from tests.test_store_schema import unstack_to_v4


def create(path: Path, images: np.ndarray, **options: object) -> StoreWriter:
    """A v3 store of ``images`` (P, C, H, W) with no epoch yet."""
    layers = [
        LayerSpec("conv", "conv", (2, *images.shape[2:]), (2, images.shape[1], 3, 3)),
        LayerSpec("logits", "linear", (3,)),
    ]
    return StoreWriter.create(
        path,
        class_names=["a", "b", "c"],
        layers=layers,
        training={},
        probe_sources=[f"p{i}" for i in range(len(images))],
        probe_images=images,
        probe_labels=np.zeros(len(images), np.int64),
        **options,  # type: ignore[arg-type]
    )


def pictures(channels: int, height: int = 6, width: int = 10) -> np.ndarray:
    size = 2 * channels * height * width
    return (np.arange(size) % 251).astype(np.uint8).reshape(2, channels, height, width)


def test_version_5_is_written_and_read() -> None:
    assert SCHEMA_VERSION == 5  # v4 added gradients (issue 26), v5 stacked statistics


def test_grey_non_square_probes_are_stored_as_given_and_shown_grey(tmp_path: Path) -> None:
    images = pictures(1)
    create(tmp_path / "run.zarr", images).close()
    root = json.loads((tmp_path / "run.zarr" / "zarr.json").read_text())["attributes"]
    assert (root["schema_version"], root["probe_shape"], root["input_size"]) == (
        SCHEMA_VERSION,
        [1, 6, 10],
        10,
    )
    assert not (tmp_path / "run.zarr" / "probes" / "display").exists()
    run = open_run(tmp_path / "run.zarr")
    assert run.attrs.input_shape == (1, 6, 10)
    np.testing.assert_array_equal(run.probe_images, images)
    shown = run.probe_pictures
    assert shown.shape == (2, 6, 10, 3) and shown.dtype == np.uint8
    for colour in range(3):
        np.testing.assert_array_equal(shown[..., colour], images[:, 0])


def test_four_channels_keep_their_display_pictures(tmp_path: Path) -> None:
    images = pictures(4)
    display = np.ascontiguousarray(images[:, [3, 2, 1]])
    create(tmp_path / "run.zarr", images, probe_display=display).close()
    run = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(run.probe_images, images)
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(display, 1, -1))


def test_four_channels_without_a_display_show_the_first_three(tmp_path: Path) -> None:
    images = pictures(4, 5, 5)
    create(tmp_path / "run.zarr", images).close()
    run = open_run(tmp_path / "run.zarr")
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(images[:, :3], 1, -1))


def test_a_display_of_the_wrong_shape_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="RGB pictures must be uint8"):
        create(tmp_path / "run.zarr", pictures(4), probe_display=pictures(3, 5, 5))
    assert not (tmp_path / "run.zarr").exists()


def test_rgb_square_probes_are_shown_as_they_are(tmp_path: Path) -> None:
    images = pictures(3, 8, 8)
    create(tmp_path / "run.zarr", images, input_size=8).close()
    run = open_run(tmp_path / "run.zarr")
    assert run.attrs.input_shape == (3, 8, 8) and run.attrs.input_size == 8
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(images, 1, -1))


def test_a_version_2_store_still_reads(tmp_path: Path) -> None:
    """A v2 store is a v3 one without ``probe_shape``: square RGB of ``input_size``."""
    make_store(tmp_path / "run.zarr").close()
    unstack_to_v4(tmp_path / "run.zarr")
    meta = tmp_path / "run.zarr" / "zarr.json"
    node = json.loads(meta.read_text())
    node["attributes"]["schema_version"] = 2
    del node["attributes"]["probe_shape"]
    meta.write_text(json.dumps(node))
    run = open_run(tmp_path / "run.zarr")
    assert run.attrs.schema_version == 2 and run.attrs.probe_shape is None
    assert run.attrs.input_shape == (3, 8, 8)
    assert run.probe_images.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(run.probe_images, 1, -1))
    assert run.layer_at("block1", 0).shape[0] == 2
    with pytest.raises(StoreError, match="schema v2"):
        StoreWriter.open_for_resume(tmp_path / "run.zarr")


@pytest.mark.parametrize(
    ("probe_shape", "message"),
    [
        ([3, 8], "not \\[channels, height, width\\]"),
        ([0, 8, 8], "not \\[channels, height, width\\]"),
        ("3x8x8", "not \\[channels, height, width\\]"),
        ([1, 8, 6], "does not match input_size 10"),
    ],
)
def test_a_bad_probe_shape_is_one_line(probe_shape: object, message: str) -> None:
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "class_names": ["a", "b"],
        "input_size": 10,
        "probe_shape": probe_shape,
        "layers": [layer.to_json() for layer in TINY_LAYERS],
        "activation_dtype": "float16",
        "epochs_committed": 0,
    }
    with pytest.raises(StoreError, match=message) as error:
        parse_root_attrs("run.zarr", attrs)
    assert "\n" not in str(error.value)
