"""Every array of a run store opens in xarray with labelled axes (zarr v3 ``dimension_names``)
and the values our reader returns: a store written by ``train`` (the shared run) and one by
the Recorder (a tiny model with four-channel probes, dataset examples, feature
visualizations and whatever else the Recorder records by default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from torch import nn

from generator import Recorder, open_run
from generator.store import RunReader

EPOCH_DIMS = {
    "activations": ("epoch", "probe", "channel"),
    "kernels": ("epoch", "channel", "in_channel", "ky", "kx"),
    "featviz": ("epoch", "channel", "y", "x", "rgb"),
    "examples": ("epoch", "channel", "rank"),
    "probes": ("probe",),
    "example_pool": ("image",),
}


def arrays_of(group: zarr.Group, prefix: str = "") -> dict[str, zarr.Array]:
    """Every array under ``group``, by its path in the store."""
    found: dict[str, zarr.Array] = {}
    for name, node in group.members():
        if isinstance(node, zarr.Array):
            found[prefix + name] = node
        else:
            found.update(arrays_of(node, f"{prefix}{name}/"))
    return found


def open_array(store: Path, path: str) -> xr.DataArray:
    """One array through ``xarray.open_zarr`` on its group, its siblings dropped: a group's
    arrays of different layers have different sizes along the same named axis, which one
    xarray Dataset cannot hold."""
    parent, _, name = path.rpartition("/")
    siblings = [n for n, _ in zarr.open_group(store, path=parent, mode="r").arrays() if n != name]
    dataset = xr.open_zarr(
        store, group=parent, consolidated=False, chunks=None, drop_variables=siblings
    )
    return dataset[name]


def groups_that_open_whole(store: Path, arrays: dict[str, zarr.Array]) -> list[str]:
    """Each group whose arrays agree on the size of every axis name opens as one Dataset
    with all of them (as the README says); returns those groups."""
    by_group: dict[str, dict[str, zarr.Array]] = {}
    for path, array in arrays.items():
        parent, _, name = path.rpartition("/")
        by_group.setdefault(parent, {})[name] = array
    whole = []
    for parent, members in by_group.items():
        sizes: dict[str, int] = {}
        pairs = [
            pair
            for array in members.values()
            for pair in zip(array.metadata.dimension_names, array.shape, strict=True)
        ]
        if all(sizes.setdefault(dim, size) == size for dim, size in pairs):
            opened = xr.open_zarr(store, group=parent, consolidated=False, chunks=None)
            assert set(opened.data_vars) == set(members), parent
            whole.append(parent)
    return whole


def check_every_array_opens_labelled(store: Path) -> int:
    """Each array's dims are all named, distinct and what zarr stores; its shape and values
    equal the reader's (zeros stay zeros: no fill value masked); returns how many."""
    run: RunReader = open_run(store)
    arrays = arrays_of(zarr.open_group(store, mode="r"))
    for path, array in arrays.items():
        named = open_array(store, path)
        dims = array.metadata.dimension_names
        assert dims is not None and all(dims) and len(set(dims)) == len(dims), path
        assert named.dims == dims, path
        group = path.partition("/")[0]
        assert dims[: len(EPOCH_DIMS.get(group, ("epoch",)))] == EPOCH_DIMS.get(
            group, ("epoch",)
        ), path
        ours = run._read(path, epochs=group not in ("probes", "example_pool"))
        assert named.shape == ours.shape, path
        np.testing.assert_array_equal(named.values, ours, err_msg=path)
    whole = groups_that_open_whole(store, arrays)
    assert "metrics" in whole  # the scalars, confusion and probe probabilities agree on sizes
    metrics = xr.open_zarr(store, group="metrics", consolidated=False, chunks=None)
    assert metrics["val_loss"].dims == ("epoch",) and metrics.sizes["epoch"] == run.epochs
    assert metrics["confusion"].dims == ("epoch", "true_class", "class")
    return len(arrays)


@pytest.mark.slow
def test_a_trained_run_opens_in_xarray(trained_run: Path) -> None:
    count = check_every_array_opens_labelled(trained_run)
    groups = {path.partition("/")[0] for path in arrays_of(zarr.open_group(trained_run))}
    assert {"activations", "kernels", "metrics", "probes", "featviz", "examples"} <= groups
    assert count > 50


class Tiny(nn.Module):
    """Two convs on four-channel input and a linear head: every kind of array, quickly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 5, 3, stride=2)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def test_a_recorder_run_opens_in_xarray(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, store = Tiny(), tmp_path / "rec.zarr"
    images = torch.randint(0, 256, (6, 4, 12, 10), dtype=torch.uint8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(
        model,
        probes=images[:2],
        probe_labels=[0, 1],
        out=store,
        class_names=["a", "b", "c"],
        example_pool=images,
        example_top_k=2,
        featviz_steps=1,
    ) as recorder:
        for _ in range(2):
            loss = nn.functional.cross_entropy(model(images.float() / 255), torch.arange(6) % 3)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recorder.epoch(train_loss=loss.item())
    assert check_every_array_opens_labelled(store) > 20
    groups = {path.partition("/")[0] for path in arrays_of(zarr.open_group(store))}
    wanted = {"activations", "kernels", "probes", "featviz", "examples", "example_pool"}
    assert wanted | {"gradients", "histograms"} <= groups  # every default, gradients too
    probes = xr.open_zarr(store, group="probes", consolidated=False, chunks=None)
    assert probes["display"].dims == ("probe", "rgb", "y", "x")  # four channels, shown as RGB
    assert probes["images"].sizes == {"probe": 2, "in_channel": 4, "y": 12, "x": 10}


def test_a_store_from_before_the_axis_names_still_reads() -> None:
    """A version-1 store (no ``dimension_names``) reads as ever with our reader; xarray
    refuses its arrays with its own message, which the README quotes."""
    fixture = Path(__file__).parent / "fixtures" / "v1run.zarr"
    run = open_run(fixture)
    name = run.layers[0].name
    assert run.layer_activations(name).shape[0] == run.epochs
    assert (
        zarr.open_array(fixture / "activations" / name, mode="r").metadata.dimension_names is None
    )
    with pytest.raises(KeyError, match="dimension_names"):
        open_array(fixture, f"activations/{name}")
