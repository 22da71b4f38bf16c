"""A store as files: special files are refused without blocking, and any bytes in any
``zarr.json`` give a one-line ``StoreError`` naming the store, never another exception."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.errors import StoreError
from generator.store import StoreWriter, open_run
from tests.conftest import make_store

CHUNK = "activations/block1/c/1/0/0/0/0"
ARRAY_META = "activations/block1/zarr.json"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "run.zarr"
    make_store(path, epochs=2).close()
    return path


def copy_of(pristine: Path, folder: Path) -> Path:
    store = folder / "run.zarr"
    shutil.copytree(pristine, store)
    return store


def open_unblocking(store: Path, opener: Callable[[Path], object], fifo: Path) -> BaseException:
    """Run ``opener(store)`` in a thread and return what it raised. If it is still waiting
    on the FIFO after a minute, a writer end is opened to free it and the test fails: a
    store must never make ``open()`` wait."""
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            opener(store)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        with open(fifo, "wb"):  # unblocks the reader stuck in open()
            pass
        thread.join()
        pytest.fail(f"opening the store waited on the FIFO {fifo.name}")
    assert outcome, "a store with a FIFO inside was opened without complaint"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("where", ["zarr.json", ARRAY_META, CHUNK, "activations/zarr.json"])
@pytest.mark.parametrize(
    "opener",
    [open_run, lambda p: open_run(p, verify=False), StoreWriter.open_for_resume],
    ids=["open_run", "open_run-unverified", "resume"],
)
def test_a_fifo_anywhere_is_refused_without_blocking(
    pristine: Path, tmp_path: Path, where: str, opener: Callable[[Path], object]
) -> None:
    store = copy_of(pristine, tmp_path)
    target = store / where
    target.unlink()
    os.mkfifo(target)
    error = open_unblocking(store, opener, target)
    assert isinstance(error, StoreError), error
    assert "named pipe" in str(error) and where in str(error) and "\n" not in str(error)


def test_a_socket_in_place_of_a_chunk_is_refused(pristine: Path) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # AF_UNIX paths are short
        store = copy_of(pristine, Path(folder))
        (store / CHUNK).unlink()
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(store / CHUNK))
            with pytest.raises(StoreError, match="is a socket"):
                open_run(store)
        finally:
            server.close()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("where", ["zarr.json", ARRAY_META, CHUNK])
def test_a_link_to_a_device_is_refused(pristine: Path, tmp_path: Path, where: str) -> None:
    """/dev/zero as zarr.json would otherwise be read without end."""
    store = copy_of(pristine, tmp_path)
    (store / where).unlink()
    (store / where).symlink_to("/dev/zero")
    with pytest.raises(StoreError, match="character device"):
        open_run(store)


def test_a_huge_metadata_file_is_refused_unread(pristine: Path, tmp_path: Path) -> None:
    store = copy_of(pristine, tmp_path)
    with open(store / ARRAY_META, "r+b") as handle:
        handle.truncate(64 * 2**20)  # sparse: no disk used
    with pytest.raises(StoreError, match="larger than"):
        open_run(store)


# -- any bytes in any zarr.json --------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DOCUMENT_DAMAGE = st.one_of(
    st.binary(max_size=80).map(lambda b: ("bytes", b)),
    st.integers(0, 400).map(lambda n: ("truncate", n)),
    st.sampled_from(
        [
            ("bytes", b"\xff\xfe{}"),
            ("bytes", b'{"zarr_format": 3, "node_type": "group", "attributes": "\xe9"}'),
            ("bytes", nested(100_000).encode()),
            ("bytes", ("1" * 5000).encode()),
            ("bytes", b"[1e999999, -Infinity, NaN]"),
            ("bytes", b"null"),
            ("bytes", b""),
        ]
    ),
    st.tuples(
        st.just("value"),
        st.sampled_from(["attributes", "shape", "data_type", "codecs", "chunk_grid"]),
        st.sampled_from(
            [None, 2**70, -1, 1e308, "x", [], {}, [[[[[]]]]], {"a": {"b": None}}, 10**40]
        ),
    ),
    st.tuples(
        st.just("attribute"),
        st.sampled_from(["layers", "class_names", "input_size", "epochs_committed", "training"]),
        st.sampled_from([None, 2**70, -1, 1e308, "x", [], {}, [[[[[]]]]], [{"name": 1}]]),
    ),
)


def damage_document(path: Path, damage: tuple) -> None:
    """Write garbage bytes, a truncated copy, or the document with one value replaced."""
    raw = path.read_bytes()
    if damage[0] == "bytes":
        path.write_bytes(damage[1])
    elif damage[0] == "truncate":
        path.write_bytes(raw[: damage[1] % max(len(raw), 1)])
    else:
        doc = json.loads(raw)
        node = doc.get("attributes", {}) if damage[0] == "attribute" else doc
        node[damage[1]] = damage[2]
        path.write_text(json.dumps(doc))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.sampled_from(
        ["zarr.json", ARRAY_META, "metrics/confusion/zarr.json", "probes/images/zarr.json"]
    ),
    damage=DOCUMENT_DAMAGE,
)
def test_any_zarr_json_gives_a_store_error_or_reads(
    pristine: Path, where: str, damage: tuple
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = copy_of(pristine, Path(folder))
        damage_document(store / where, damage)
        try:
            run = open_run(store)
            run.layer_activations("block1")
            run.confusion()
        except StoreError as exc:
            assert "\n" not in str(exc) and str(store) in str(exc)


@pytest.mark.parametrize(
    "where, content",
    [
        ("zarr.json", nested(100_000).encode()),  # deeper than Python's recursion limit
        ("zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": ' + b"1" * 5000),
        ("zarr.json", b"\xc3\x28 not UTF-8"),
        (ARRAY_META, nested(100_000).encode()),
        (ARRAY_META, b'{"zarr_format": 3, "node_type": "array", "shape": [1e999]}'),
    ],
    ids=["deep-root", "truncated-huge-number", "not-utf8", "deep-array", "infinite-shape"],
)
def test_known_bad_documents_are_one_line(
    pristine: Path, tmp_path: Path, where: str, content: bytes
) -> None:
    store = copy_of(pristine, tmp_path)
    (store / where).write_bytes(content)
    with pytest.raises(StoreError) as info:
        open_run(store)
    assert "\n" not in str(info.value) and str(store) in str(info.value)
