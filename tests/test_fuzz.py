"""Fuzzing (hypothesis): a damaged store is a StoreError, odd numbers never crash a render.

The store half copies a small synthetic store (``conftest.make_store``), damages it at
random — JSON edits, removals and garbage in the root's and arrays' ``zarr.json``, random
bytes, truncation, flipped bytes and deletion in chunk files — then opens it and calls every
reader accessor (and ``info``'s summary): each must work or raise ``StoreError``, nothing
else. The render half feeds every renderer random arrays of every small shape, full of
NaN, ±inf, constants, 1e38 and 1e-38: they must never raise.

Example counts are fixed (``EXAMPLES``) so the module runs in well under a minute; the
number actually tried is printed (``pytest -s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from generator.errors import StoreError
from generator.info import summarise_run
from generator.render.colormaps import (
    COLORMAPS,
    NAN_INDEX,
    SCALE_MODES,
    ZERO_INDEX,
    compute_scales,
    map_values,
)
from generator.render.contact import contact_sheet
from generator.render.frames import channel_frames, layer_frames
from generator.render.kernels import MATRIX, RGB, kernel_frames, kernel_layout
from generator.render.probs import probe_frames
from generator.store import SCALAR_METRICS, STAT_FIELDS, open_run
from tests.conftest import make_store

EXAMPLES = {"store": 60, "render": 150, "scales": 300}
TRIED: Counter[str] = Counter()
# No shrinking: a failure prints every draw that made it, and shrinking a store example
# can take minutes. No example database in the repository either.
FUZZ = settings(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print("\nfuzz examples tried: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())))


# -- the store reader ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "run.zarr"
    make_store(path, epochs=3).close()
    return path


def metadata_files(store: Path) -> list[Path]:
    return sorted(store.rglob("zarr.json"))


def chunk_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file() and "/c/" in p.as_posix())


def json_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a JSON document (the root, ``()``, included)."""
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths += json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += json_paths(value, (*prefix, index))
    return paths


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from([0, -1, 1, 3, 2**63])
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["float64", "|O", "string", "../x", "c", "blosc", "crc32c", "v2"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def edit_json(data: st.DataObject, path: Path) -> str:
    """Remove, replace or garble one part of a zarr.json; returns what was done."""
    how = data.draw(st.sampled_from(["remove", "replace", "replace", "bytes", "truncate"]))
    raw = path.read_bytes()
    if how == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=64)))
        return how
    if how == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
        return how
    try:
        doc = json.loads(raw)
    except ValueError:  # garbled by an earlier damage already
        return "already garbled"
    paths = json_paths(doc)[1:]  # never the whole document: that is "bytes"
    if not paths:
        return "nothing to edit"
    target = data.draw(st.sampled_from(paths))
    parent = doc
    for key in target[:-1]:
        parent = parent[key]
    if how == "remove":
        del parent[target[-1]]
    else:
        parent[target[-1]] = data.draw(JSON_VALUES)
    path.write_text(json.dumps(doc))
    return f"{how} {'/'.join(map(str, target))}"


def damage_chunk(data: st.DataObject, path: Path) -> str:
    """Random bytes, truncation, a flipped byte or deletion of one chunk file."""
    how = data.draw(st.sampled_from(["bytes", "truncate", "flip", "delete"]))
    raw = path.read_bytes()
    if not raw and how in ("truncate", "flip"):
        how = "bytes"
    if how == "bytes":
        path.write_bytes(data.draw(st.binary(min_size=0, max_size=len(raw) + 32)))
    elif how == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
    elif how == "flip":
        at = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(
            raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
        )
    else:
        path.unlink()
    return how


def read_everything(path: Path) -> None:
    """Open the store and call every accessor of the reader, as build and info do."""
    run = open_run(path)
    _ = (
        run.name,
        run.attrs,
        run.attrs.to_json(),
        run.layers,
        run.n_probes,
        run.probe_images,
        run.probe_labels,
    )
    for layer in run.layers:
        run.layer(layer.name)
        run.layer_activations(layer.name)
        run.layer_activations(layer.name, probe=0)
        run.channel(layer.name, 0, 0)
        run.channel_range(layer.name, 0, 0, layer.channels)
        for epoch in range(run.epochs):
            run.layer_at(layer.name, epoch)
            run.layer_at(layer.name, epoch, 0)
            if layer.is_conv:
                run.kernels(layer.name, epoch)
        if layer.is_conv:
            run.kernels(layer.name)
        for stat in STAT_FIELDS:
            run.channel_stats(layer.name, stat)
    for metric in SCALAR_METRICS:
        run.scalar_metric(metric)
    run.confusion()
    run.probe_probs()
    run.weight_change()
    summarise_run(run)


@pytest.mark.slow  # 60 damaged stores take ~25 s: CI runs it, the fast subset does not
@settings(FUZZ, max_examples=EXAMPLES["store"])
@given(data=st.data())
def test_a_damaged_store_reads_or_raises_store_error(pristine: Path, data: st.DataObject) -> None:
    metadata = [str(p.relative_to(pristine)) for p in metadata_files(pristine)]
    chunks = [str(p.relative_to(pristine)) for p in chunk_files(pristine)]
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "run.zarr"
        shutil.copytree(pristine, store)
        for _ in range(data.draw(st.integers(1, 3), label="damages")):
            is_metadata = data.draw(st.booleans(), label="metadata")
            relative = data.draw(st.sampled_from(metadata if is_metadata else chunks))
            target = store / relative
            if not target.exists():  # deleted by an earlier damage
                continue
            done = edit_json(data, target) if is_metadata else damage_chunk(data, target)
            note(f"{relative}: {done}")
        TRIED["store"] += 1
        try:
            read_everything(store)
        except StoreError as exc:
            assert "\n" not in str(exc)
            TRIED["store: StoreError"] += 1
        else:
            TRIED["store: read"] += 1


# -- the renderers ------------------------------------------------------------------------
SPECIALS = np.array(
    [np.nan, np.inf, -np.inf, 0.0, 1e38, -1e38, 1e-38, -1e-38, 1.0, -1.0], dtype=np.float64
)


@st.composite
def odd_arrays(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``shape`` that is constant, tiny, huge, normal or sprinkled with NaN,
    ±inf and extremes; float32 or float16 (where 1e38 becomes inf), as stored."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["constant", "normal", "specials", "mixed"]))
    if kind == "constant":
        values = np.full(shape, draw(st.sampled_from(list(SPECIALS))))
    else:
        values = rng.standard_normal(shape) * 10.0 ** draw(st.integers(-38, 38))
        if kind != "normal":
            share = 1.0 if kind == "specials" else draw(st.floats(0.0, 0.5))
            mask = rng.random(shape) < share
            values[mask] = rng.choice(SPECIALS, size=int(mask.sum()))
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


SIDES = st.integers(1, 40)


@settings(FUZZ, max_examples=EXAMPLES["scales"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    p=st.integers(1, 4),
    c=st.integers(1, 70),
    mode=st.sampled_from(SCALE_MODES),
    share=st.booleans(),
)
def test_compute_scales_never_crashes(
    data: st.DataObject, e: int, p: int, c: int, mode: str, share: bool
) -> None:
    low, high = (data.draw(odd_arrays((e, p, c))) for _ in range(2))
    scales = compute_scales(low, high, mode, share_channels=share)
    TRIED["compute_scales"] += 1
    for half in scales:
        assert half.shape == (e, p, c) and half.dtype == np.float32
        assert not np.isnan(half).any() and (half >= 0).all()


@settings(FUZZ, max_examples=EXAMPLES["scales"])
@given(data=st.data(), n=st.integers(1, 300))
def test_map_values_keeps_zero_sign_and_range(data: st.DataObject, n: int) -> None:
    values = data.draw(odd_arrays((n,)))
    neg, pos = data.draw(odd_arrays((n,))), data.draw(odd_arrays((n,)))
    mapped = map_values(values, neg, pos)
    TRIED["map_values"] += 1
    v = values.astype(np.float32)
    finite = np.isfinite(v)
    index = mapped.indices.astype(int)
    assert (index[~finite] == NAN_INDEX).all() and mapped.nonfinite == int((~finite).sum())
    assert (index[finite] <= 2 * ZERO_INDEX).all()
    assert (index[finite & (v == 0)] == ZERO_INDEX).all()
    assert (index[finite & (v > 0)] >= ZERO_INDEX).all()
    assert (index[finite & (v < 0)] <= ZERO_INDEX).all()


def _check_frames(frames: np.ndarray, values: np.ndarray, nonfinite: int, e: int) -> None:
    assert frames.dtype == np.uint8 and frames.shape[0] == e
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    assert nonfinite == int(np.count_nonzero(~np.isfinite(values.astype(np.float32))))


@settings(FUZZ, max_examples=EXAMPLES["render"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    c=st.integers(1, 70),
    h=SIDES,
    w=SIDES,
    linear=st.booleans(),
    colormap=st.sampled_from(COLORMAPS),
)
def test_layer_frames_never_crash(
    data: st.DataObject, e: int, c: int, h: int, w: int, linear: bool, colormap: str
) -> None:
    values = data.draw(odd_arrays((e, c) if linear else (e, c, h, w)))
    neg, pos = data.draw(odd_arrays((e, c))), data.draw(odd_arrays((e, c)))
    frames = layer_frames(
        values, neg, pos, colormap=colormap, max_side=512, captions=[f"epoch {i}" for i in range(e)]
    )
    TRIED["layer_frames"] += 1
    _check_frames(frames.frames, values, frames.nonfinite, e)
    assert max(frames.frames.shape[1:]) <= 512


@settings(FUZZ, max_examples=EXAMPLES["render"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    h=SIDES,
    w=SIDES,
    linear=st.booleans(),
    colormap=st.sampled_from(COLORMAPS),
)
def test_channel_frames_never_crash(
    data: st.DataObject, e: int, h: int, w: int, linear: bool, colormap: str
) -> None:
    values = data.draw(odd_arrays((e,) if linear else (e, h, w)))
    neg, pos = data.draw(odd_arrays((e,))), data.draw(odd_arrays((e,)))
    frames = channel_frames(values, neg, pos, colormap=colormap, min_side=64, max_side=256)
    TRIED["channel_frames"] += 1
    _check_frames(frames.frames, values, frames.nonfinite, e)


@settings(FUZZ, max_examples=EXAMPLES["render"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    o=st.integers(1, 70),
    i=st.integers(1, 70),
    k=st.integers(1, 7),
    mode=st.sampled_from(SCALE_MODES),
    rgb=st.booleans(),
)
def test_kernel_frames_never_crash(
    data: st.DataObject, e: int, o: int, i: int, k: int, mode: str, rgb: bool
) -> None:
    weights = data.draw(odd_arrays((e, o, 3 if rgb else i, k, k)))
    frames = kernel_frames(weights, scale=mode, max_side=512)
    TRIED["kernel_frames"] += 1
    assert frames.frames.dtype == np.uint8 and frames.frames.shape[0] == e
    # RGB patches (3 inputs) and the O x I heatmap of 1x1 kernels show every kernel; the
    # depthwise and (out x in) grids are capped at 32 x 32
    every = kernel_layout(weights.shape[1:]) in (RGB, MATRIX)
    shown = weights if every else weights[:, :32, :32]
    assert frames.nonfinite == int(np.count_nonzero(~np.isfinite(shown.astype(np.float32))))


@settings(FUZZ, max_examples=EXAMPLES["render"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    c=st.integers(1, 70),
    h=SIDES,
    w=SIDES,
    linear=st.booleans(),
    colormap=st.sampled_from(COLORMAPS),
)
def test_contact_sheets_never_crash(
    data: st.DataObject, e: int, c: int, h: int, w: int, linear: bool, colormap: str
) -> None:
    values = data.draw(odd_arrays((e, c) if linear else (e, c, h, w)))
    neg, pos = data.draw(odd_arrays((e, c))), data.draw(odd_arrays((e, c)))
    sheet = contact_sheet(values, neg, pos, colormap=colormap, max_width=512, title="fuzz")
    TRIED["contact_sheet"] += 1
    assert sheet.image.dtype == np.uint8 and sheet.image.ndim == 2
    assert sheet.epochs == list(range(e)) and sheet.channels == list(range(min(c, 64)))


@settings(FUZZ, max_examples=EXAMPLES["render"])
@given(
    data=st.data(),
    e=st.integers(1, 5),
    k=st.integers(1, 30),
    h=SIDES,
    w=SIDES,
    true_class=st.integers(0, 29),
    name=st.text(max_size=40),
)
def test_probe_frames_never_crash(
    data: st.DataObject, e: int, k: int, h: int, w: int, true_class: int, name: str
) -> None:
    image = np.random.default_rng(h * w).integers(0, 256, (3, h, w), dtype=np.uint8)
    probs = data.draw(odd_arrays((e, k)))
    names = [f"{name}{i}" for i in range(k)]
    frames = probe_frames(image, probs, names, min(true_class, k - 1))
    TRIED["probe_frames"] += 1
    assert frames.frames.dtype == np.uint8 and frames.frames.shape[0] == e


def test_probe_frames_of_an_unlabelled_probe() -> None:
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    frames = probe_frames(image, np.full((2, 3), 1 / 3), ["a", "b", "c"], -1)
    assert frames.frames.shape[0] == 2
    many = probe_frames(image, np.full((2, 20), 1 / 20), [f"c{i}" for i in range(20)], -1)
    assert many.frames.shape[0] == 2


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (5, 70, 40, 40), (5, 70, 1, 1), (1, 1, 40, 40)])
@pytest.mark.parametrize("fill", [np.nan, np.inf, 0.0, 1e38, 1e-38, "specials"])
def test_renderers_at_the_corners(shape: tuple[int, int, int, int], fill: float | str) -> None:
    """The shapes and values hypothesis reaches least often: smallest, largest, all-odd."""
    e, c, h, w = shape
    if fill == "specials":
        values = np.resize(SPECIALS, shape).astype(np.float32)
    else:
        values = np.full(shape, fill, dtype=np.float32)
    stats = values.reshape(e, 1, c, h * w)
    low, high = np.fmin.reduce(stats, axis=3), np.fmax.reduce(stats, axis=3)
    scales = compute_scales(low, high, "channel")
    neg, pos = scales.neg[:, 0], scales.pos[:, 0]
    layer_frames(values, neg, pos, max_side=1024)
    channel_frames(values[:, 0], neg[:, 0], pos[:, 0])
    contact_sheet(values, neg, pos)
    kernel_frames(values.reshape(e, c, 1, h, w)[:, :, :, :7, :7])
    TRIED["corners"] += 1
