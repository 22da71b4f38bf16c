"""The store's contract: layer names as store paths, layer entries of v1 and v2, the root
attribute checks (one-line ``StoreError`` naming the store, whatever the JSON holds)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import StoreError
from generator.store import open_run
from generator.store._schema import (
    KEY_CHARACTERS,
    MAX_KEY_LENGTH,
    SCHEMA_VERSION,
    STAT_FIELDS,
    LayerSpec,
    array_key,
    array_plan,
    check_layers,
    dimension_names,
    example_pool_plan,
    gradient_layers,
    layer_name,
    parse_root_attrs,
    probe_plan,
)
from tests.conftest import TINY_FEATVIZ, TINY_LAYERS, make_store

STORE = Path("runs/some.zarr")
MODULE_PATHS = ["layer1.0.conv1", "features.3", "block1", "head.hidden", "conv-1_a"]


# -- layer names as array keys ---------------------------------------------------------------
@pytest.mark.parametrize("name", MODULE_PATHS)
def test_module_paths_are_their_own_keys(name: str) -> None:
    assert array_key(name) == name


@pytest.mark.parametrize(
    "name, key",
    [
        ("a/b", "a%2Fb"),
        ("__x", "%5F_x"),
        (".hidden", "%2Ehidden"),
        ("..", "%2E."),
        ("zarr.json", "zarr%2Ejson"),
        ("a[0]", "a%5B0%5D"),
        ("50%", "50%25"),
        ("é", "%C3%A9"),
    ],
)
def test_names_zarr_cannot_hold_are_escaped(name: str, key: str) -> None:
    assert array_key(name) == key
    assert layer_name(key) == name


@given(st.text(min_size=1, max_size=40))
def test_every_name_has_one_portable_key_that_decodes_back(name: str) -> None:
    key = array_key(name)
    assert layer_name(key) == name
    assert set(key) <= KEY_CHARACTERS | {"%"}
    assert "/" not in key and not key.startswith(("__", ".")) and key != "zarr.json"


def test_zarr_itself_takes_dotted_and_bracketed_names(tmp_path: Path) -> None:
    """Why dots stay as they are: zarr v3 keeps them (and brackets) as plain node names."""
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w-", zarr_format=3)
    names = ["layer1.0.conv1", "features.3", "a[0]"]
    for index, name in enumerate(names):
        group.create_array(f"activations/{name}", shape=(2,), dtype="float32")[:] = index
    reread = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert sorted(reread["activations"].keys()) == sorted(names)
    assert [float(reread[f"activations/{n}"][0]) for n in names] == [0.0, 1.0, 2.0]


def test_the_plan_puts_each_layer_under_its_key() -> None:
    layer = LayerSpec("layer1.0/conv", "conv", (2, 4, 4), (2, 1, 3, 3), 20, groups=2)
    plan = array_plan([layer], 3, 4, "float16")
    assert plan["activations/layer1.0%2Fconv"].shape == (3, 2, 4, 4)
    assert plan["kernels/layer1.0%2Fconv"].shape == (2, 1, 3, 3)
    assert plan["metrics/channel_stats/layer1.0%2Fconv"].shape == (5, 3, 2)  # stat, probe, ch
    assert plan["metrics/weight_change"].shape == (1,)  # over the layers with parameters
    old = array_plan([layer], 3, 4, "float16", version=4)  # older stores: one array a field
    assert "metrics/channel_stats/layer1.0%2Fconv/abs_max" in old


def test_an_activation_chunk_holds_the_probes_that_fit_in_a_megabyte() -> None:
    """Each file costs the write about 1 ms: a small layer's probes share one chunk (a
    resnet18 at 32 px wrote 225 activation files an epoch, one per probe), while a large
    map keeps one probe a chunk, so a build reading one probe reads about 1 MB at most."""
    small = LayerSpec("small", "conv", (64, 16, 16), (64, 3, 3, 3), 1792)  # 32 kB a probe
    mid = LayerSpec("mid", "conv", (64, 56, 56), (64, 3, 3, 3), 1792)  # 392 kB a probe
    large = LayerSpec("large", "conv", (64, 112, 112), (64, 3, 3, 3), 1792)  # 1.6 MB
    vector = LayerSpec("fc", "linear", (10,), (10, 512), 5130)
    plan = array_plan([small, mid, large, vector], 8, 10, "float16")
    chunks = {n: plan[f"activations/{n}"].chunk[0] for n in ("small", "mid", "large", "fc")}
    assert chunks == {"small": 8, "mid": 2, "large": 1, "fc": 8}
    assert array_plan([mid], 8, 10, "float32")["activations/mid"].chunk[0] == 1


def test_an_epoch_of_a_resnet_like_net_is_a_few_arrays_per_layer() -> None:
    """The write costs about 0.5 ms of CPU per array whatever its bytes: from v5 a layer's
    five statistics are one array and the weight changes one array for the run."""
    layers = [
        LayerSpec(f"layer{k}", "conv", (8, 4, 4), (8, 8, 3, 3), 584, groups=1) for k in range(29)
    ]
    stacked, old = (
        array_plan(layers, 8, 10, "float16"),
        array_plan(layers, 8, 10, "float16", version=4),
    )
    assert len(stacked) == 3 * 29 + 1 + 6  # activations, kernels, statistics; changes; metrics
    assert len(old) - len(stacked) == 29 * 5 - 1


def unstack_to_v4(path: Path) -> None:
    """Rewrite a store in the v4 layout, as netlapse wrote it before v5: one array per
    channel statistic of a layer, one scalar array per layer's weight change."""
    group = zarr.open_group(str(path), mode="r+")
    attrs = parse_root_attrs(path, group.attrs.asdict())
    stats = group["metrics/channel_stats"]
    assert isinstance(stats, zarr.Group)
    for layer in attrs.layers:
        stacked = np.asarray(stats[array_key(layer.name)][...])  # (E, stat, P, C)
        del stats[array_key(layer.name)]
        fields = stats.create_group(array_key(layer.name))
        for k, stat in enumerate(STAT_FIELDS):
            data = np.ascontiguousarray(stacked[:, k])
            fields.create_array(stat, data=data, chunks=(1, *data.shape[1:]))
    changes = np.asarray(group["metrics/weight_change"][...])  # (E, layers with parameters)
    del group["metrics/weight_change"]
    per_layer = group.create_group("metrics/weight_change")
    for k, layer in enumerate(gradient_layers(attrs.layers)):
        per_layer.create_array(array_key(layer.name), data=changes[:, k], chunks=(1,))
    group.attrs["schema_version"] = 4


def test_a_v4_store_reads_the_statistics_a_v5_store_stacks(tmp_path: Path) -> None:
    make_store(tmp_path / "v5.zarr").close()
    shutil.copytree(tmp_path / "v5.zarr", tmp_path / "v4.zarr")
    unstack_to_v4(tmp_path / "v4.zarr")
    new, old = open_run(tmp_path / "v5.zarr"), open_run(tmp_path / "v4.zarr")
    assert (new.attrs.schema_version, old.attrs.schema_version) == (SCHEMA_VERSION, 4)
    for layer in new.layers:
        for stat in STAT_FIELDS:
            expected = new.channel_stats(layer.name, stat)
            assert expected.shape == (new.epochs, new.n_probes, layer.channels)
            np.testing.assert_array_equal(old.channel_stats(layer.name, stat), expected)
    assert new.weight_change().keys() == old.weight_change().keys()
    for name, changes in new.weight_change().items():
        assert changes.shape == (new.epochs,)
        np.testing.assert_array_equal(old.weight_change()[name], changes)


def test_every_planned_array_names_each_of_its_axes() -> None:
    """zarr v3 ``dimension_names`` for every array (xarray's labels): the epoch axis first
    where there is one, a layer's channels named alike wherever they appear."""
    plan = array_plan(TINY_LAYERS, 2, 3, "float16", featviz=TINY_FEATVIZ, example_top_k=3)
    plan |= probe_plan(2, (4, 8, 6)) | example_pool_plan(5, (4, 8, 6))
    for path, spec in plan.items():
        names = dimension_names(path, spec)
        assert names is not None, path
        once = path.startswith(("probes/", "example_pool/"))
        assert len(names) == len(spec.shape) + (0 if once else 1), path
        assert once or names[0] == "epoch"
        assert len(set(names)) == len(names), path  # xarray needs distinct names
    assert dimension_names("activations/block1", plan["activations/block1"]) == (
        "epoch",
        "probe",
        "channel",
        "y",
        "x",
    )
    assert plan["kernels/block2"].dims == ("channel", "in_channel", "ky", "kx")
    assert plan["metrics/channel_stats/hidden"].dims == ("stat", "probe", "channel")
    assert plan["metrics/weight_change"].dims == ("layer",)
    assert plan["probes/display"].dims == ("probe", "rgb", "y", "x")
    bad = plan["metrics/val_loss"]._replace(dims=("probe",))
    with pytest.raises(ValueError, match="do not fit"):
        dimension_names("metrics/val_loss", bad)


# -- layer entries ---------------------------------------------------------------------------
def test_a_v2_layer_round_trips_through_json() -> None:
    layer = LayerSpec(
        "layer1.0.conv1",
        "conv",
        (8, 16, 16),
        (8, 1, 3, 3),
        80,
        7,
        module="layer1.0.conv1",
        module_type="Conv2d",
        parent="layer1.0",
        weights="layer1.0.conv1",
        groups=8,
        stride=(2, 2),
        dilation=(1, 1),
        padding=(1, 1),
    )
    entry = json.loads(json.dumps(layer.to_json()))
    assert entry["key"] == "layer1.0.conv1" and entry["groups"] == 8
    assert LayerSpec.from_json(entry) == layer


def test_a_v1_layer_entry_reads_with_the_defaults() -> None:
    entry = {
        "name": "block1",
        "kind": "conv",
        "shape": [4, 16, 16],
        "kernel_shape": [4, 3, 3, 3],
        "params": 120,
        "receptive_field": 3,
    }
    layer = LayerSpec.from_json(entry)
    assert (layer.name, layer.shape, layer.kernel_shape) == ("block1", (4, 16, 16), (4, 3, 3, 3))
    assert (layer.module, layer.parent, layer.stride, layer.groups) == (None, None, None, 1)


def test_the_writer_refuses_layers_the_reader_would_refuse() -> None:
    long_name = "x" * (MAX_KEY_LENGTH + 1)
    cases = [
        ([TINY_LAYERS[0], TINY_LAYERS[0]], "repeated layer name"),
        ([LayerSpec(long_name, "linear", (3,))], "at most"),
        ([LayerSpec("a\x1b[31m", "linear", (3,))], "printable"),
        ([LayerSpec("é" * 40, "linear", (3,))], "once escaped"),
        ([LayerSpec("c", "conv", (3, 4, 4), (3, 1, 3, 3), groups=2)], "groups"),
        ([LayerSpec("c", "conv", (3, 4, 4))], "kernel_shape"),
    ]
    for layers, message in cases:
        with pytest.raises(StoreError, match=message):
            check_layers(STORE, layers)


# -- the root attributes ---------------------------------------------------------------------
def good_attrs() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "class_names": ["a", "b"],
        "input_size": 8,
        "layers": [layer.to_json() for layer in TINY_LAYERS],
        "training": {"seed": 0},
        "activation_dtype": "float16",
        "probe_sources": ["a.png"],
        "stat_fields": ["min"],
        "epochs_committed": 2,
    }


def test_good_attributes_parse_into_types() -> None:
    root = parse_root_attrs(STORE, good_attrs())
    assert root.layers == tuple(TINY_LAYERS)
    assert (root.epochs_committed, root.input_size, root.class_names) == (2, 8, ("a", "b"))


def test_a_newer_schema_asks_for_an_upgrade() -> None:
    with pytest.raises(StoreError, match="newer than this netlapse reads"):
        parse_root_attrs(STORE, {**good_attrs(), "schema_version": SCHEMA_VERSION + 1})


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


GARBAGE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63), 10**30, 0, -1])
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["conv", "linear", "float16", "../x", "a/b", "", "\udc80"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
) | st.builds(nested, st.sampled_from([200, 3000]))


def json_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Key/index paths into a document, to a depth of 6 (garbage may nest thousands deep)."""
    paths = [prefix]
    if len(prefix) >= 6:
        return paths
    if isinstance(node, dict):
        for key, value in node.items():
            paths += json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += json_paths(value, (*prefix, index))
    return paths


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_to_the_attributes_is_one_line_naming_the_store(data: st.DataObject) -> None:
    attrs = copy.deepcopy(good_attrs())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(attrs)[1:]
        target = data.draw(st.sampled_from(paths))
        parent = attrs
        for key in target[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[target[-1]]
        else:
            parent[target[-1]] = data.draw(GARBAGE)
    try:
        root = parse_root_attrs(STORE, attrs)
    except StoreError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{STORE}: ")
        assert len(str(exc)) < 400
    else:
        check_layers(STORE, root.layers)  # what was accepted is writable again as it is
        assert all(isinstance(n, str) for n in root.class_names)


@given(attrs=GARBAGE)
def test_attributes_of_any_shape_are_one_line(attrs: Any) -> None:
    with pytest.raises(StoreError) as info:
        parse_root_attrs(STORE, attrs)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{STORE}: ")


def test_numbers_out_of_range_are_refused() -> None:
    for key, value in [("input_size", 2**64), ("epochs_committed", -1), ("input_size", 1e400)]:
        with pytest.raises(StoreError, match=key):
            parse_root_attrs(STORE, {**good_attrs(), key: value})
    layers = good_attrs()["layers"]
    layers[0]["shape"] = [4, 2**40, 8]
    with pytest.raises(StoreError, match="shape"):
        parse_root_attrs(STORE, {**good_attrs(), "layers": layers})
    assert np.isfinite(parse_root_attrs(STORE, good_attrs()).input_size)


def test_the_schema_is_pure_description() -> None:
    """Anything may import the schema: it loads neither torch nor zarr."""
    import subprocess
    import sys

    code = (
        "import sys, generator.store._schema; "
        "print(sorted(m for m in ('torch', 'zarr', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
