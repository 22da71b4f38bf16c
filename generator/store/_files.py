"""A run store as files: what the writer and the reader check before zarr reads anything.

zarr trusts the folder it is given. A store is a user's folder, so before zarr opens it
this module refuses what would hang or mislead it: a special file (a FIFO would block
``open()`` forever, a device could stream without end) anywhere inside, and a root
``zarr.json`` that is not a small UTF-8 JSON object. ``open_group_checked`` is the one way
both sides open a store's root group; chunk files are compared with their blosc headers
here too (``verify_chunks``), and each array with its plan entry (``check_array``).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import struct
from collections.abc import Awaitable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from generator.errors import StoreError, StoreNotFoundError, one_line
from generator.store._backends import (
    StoreLocation,
    StoreURL,
    get_bytes,
    has_objects,
    store_location,
    zarr_store,
)
from generator.store._schema import ArraySpec, RootAttrs, parse_root_attrs

METADATA = "zarr.json"
# Root attribute of a store in object storage while it is being created (no rename there):
# replaced by the full attributes in the one write that makes it a store.
CREATING = "netlapse_creating"
MAX_METADATA_BYTES = 16 * 2**20  # a root with 100,000 classes and layers is ~10 MB
BLOSC_HEADER = 16  # bytes: version, versionlz, flags, typesize, nbytes, blocksize, cbytes
SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """What kind of special file a stat mode is, or None for a file or a folder."""
    for test, kind in SPECIAL_KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def refuse_special_files(store: Path) -> None:
    """Raise ``StoreError`` if any entry inside ``store`` is a FIFO, socket or device.

    Only ``stat`` is called (never ``open``), and directory entries usually carry their type,
    so this costs one listing per folder. Linked folders are followed once each.
    """
    seen: set[tuple[int, int]] = set()
    folders = [Path(store)]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise StoreError(f"{store}: cannot list {folder} ({exc.strerror or exc})") from exc
        for entry in entries:
            mode = _mode(entry)
            if mode is None:
                continue  # a dangling link: zarr reports the missing file itself
            kind = special_kind(mode)
            if kind:
                raise StoreError(
                    f"{store}: {Path(entry.path).relative_to(store)} is {kind}, not a "
                    "file; a store holds only files and folders (remove it)"
                )
            if stat.S_ISDIR(mode):
                identity = _identity(entry)
                if identity not in seen:
                    seen.add(identity)
                    folders.append(Path(entry.path))


def _mode(entry: os.DirEntry) -> int | None:
    """The entry's file type bits, following a link; None for a dangling link."""
    try:
        if entry.is_symlink():
            return os.stat(entry.path).st_mode
        if entry.is_dir(follow_symlinks=False):
            return stat.S_IFDIR
        if entry.is_file(follow_symlinks=False):
            return stat.S_IFREG
        return entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return None


def _identity(entry: os.DirEntry) -> tuple[int, int]:
    info = entry.stat(follow_symlinks=True)
    return info.st_dev, info.st_ino


def read_json_document(store: Path, file: Path, *, array: str | None = None) -> Any:
    """A metadata document of the store (of ``array``, if given), parsed; a one-line
    ``StoreError`` if it is not a regular file of at most ``MAX_METADATA_BYTES`` holding
    UTF-8 JSON.

    ``stat`` first, then ``open`` without blocking: a FIFO put in its place after the check
    still cannot hang the reader.
    """
    where = file.relative_to(store) if file.is_relative_to(store) else file
    what = f"array {array} has unreadable metadata" if array else f"{where} is unreadable"
    try:
        kind = special_kind(os.stat(file).st_mode)
        if kind:
            raise StoreError(f"{store}: {where} is {kind}, not a file; the store is damaged")
        raw = _read_regular(file)
    except OSError as exc:
        raise StoreError(f"{store}: {what} ({exc.strerror or exc}); the store is damaged") from exc
    if raw is None:
        raise StoreError(
            f"{store}: {where} is larger than {MAX_METADATA_BYTES // 2**20} MB or not a "
            "file; the store is damaged"
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{store}: {what} ({one_line(exc)}); the store is damaged") from exc


def _read_regular(file: Path) -> bytes | None:
    """The bytes of ``file``, or None if it is not a regular file or too large."""
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_METADATA_BYTES:
            return None
        raw = handle.read(MAX_METADATA_BYTES + 1)
    return None if len(raw) > MAX_METADATA_BYTES else raw


def read_root(path: StoreLocation) -> RootAttrs:
    """The checked root attributes of the store at ``path`` (before zarr opens it)."""
    path = store_location(path)
    if isinstance(path, StoreURL):
        return parse_root_attrs(path, _remote_root_attributes(path))
    if not path.exists():
        raise StoreNotFoundError(
            f"{path}: no such store; train one with `python -m generator train --out PATH`"
        )
    if not path.is_dir():
        raise StoreError(f"{path}: not a zarr store (not a folder); pass a run store folder")
    refuse_special_files(path)
    if not (path / METADATA).is_file():
        raise StoreError(
            f"{path}: not a zarr store (no zarr.json); pass a run store "
            "made by `python -m generator train`"
        )
    node = read_json_document(path, path / METADATA)
    if not isinstance(node, dict):
        raise StoreError(f"{path}/zarr.json: not a JSON object; the store is damaged")
    return parse_root_attrs(path, node.get("attributes", {}))


def open_group_checked(path: StoreLocation, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    """Open a run store's root group, or raise a one-line ``StoreError`` saying why not."""
    path = store_location(path)
    read_root(path)
    where: Any = str(path)
    if isinstance(path, StoreURL):
        where = zarr_store(path, read_only=mode == "r")
    try:
        return zarr.open_group(where, mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises many kinds for a damaged store
        raise StoreError(f"{path}: cannot open the store ({one_line(exc)})") from exc


def check_array_metadata(store: StoreLocation, name: str) -> None:
    """The ``zarr.json`` of array ``name`` is a readable JSON object (zarr parses it next)."""
    if isinstance(store, StoreURL):
        node = _remote_json(store, f"{name}/{METADATA}", array=name)
    else:
        node = read_json_document(store, store / name / METADATA, array=name)
    if not isinstance(node, dict) or node.get("node_type") != "array":
        raise StoreError(f"{store}: {name} is not an array; the store is damaged")


def _remote_json(url: StoreURL, key: str, *, array: str | None = None) -> Any:
    """A metadata document of a store in object storage, parsed (limits as for files)."""
    raw = get_bytes(url, key, limit=MAX_METADATA_BYTES)
    if raw is None:
        if array is None:
            return None
        raise StoreError(f"{url}: array {array} is missing; the store is incomplete or damaged")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(
            f"{url}: {key} is unreadable ({one_line(exc)}); the store is damaged"
        ) from exc


def epochs_left(location: Path | StoreURL, epochs: int) -> str:
    """What became of the ``epochs`` committed before a failed write, checked, not
    assumed: a deleted bucket or folder takes them with it."""
    before = f"the {epochs} epochs committed before it"
    try:
        committed = read_root(location).epochs_committed
    except StoreNotFoundError:
        return f"the store is gone, and {before} with it"
    except Exception as exc:  # the storage cannot even be asked
        return f"whether {before} are still there cannot be checked ({one_line(exc)})"
    if committed >= epochs:
        return f"{before} are intact"
    return f"only {committed} of {before} are left"


async def gather_all(writes: Iterable[Awaitable[None]]) -> None:
    """Await every write, then raise the first error: none is left pending (asyncio would
    report "Task was destroyed but it is pending!" at exit, with the server's reply)."""
    done = await asyncio.gather(*writes, return_exceptions=True)
    if failed := [result for result in done if isinstance(result, BaseException)]:
        raise failed[0]


def remote_state(url: StoreURL) -> str:
    """What is at ``url``: ``"absent"``, ``CREATING`` (a creation that has not finished),
    ``"a run store"`` or ``"objects that are not a run store"``."""
    node = _remote_json(url, METADATA)
    if node is None:
        return "objects that are not a run store" if has_objects(url) else "absent"
    attributes = node.get("attributes") if isinstance(node, dict) else None
    if isinstance(attributes, dict) and CREATING in attributes:
        return CREATING
    return "a run store"


def check_remote_out(url: StoreURL, *, resume: bool) -> None:
    """``train --out URL`` before any data is loaded (and the endpoint, bucket and
    credentials with it): a new run needs nothing there but a killed creation, ``--resume``
    needs a run store."""
    state = remote_state(url)
    if resume and state != "a run store":
        raise StoreNotFoundError(
            f"{url}: no run store to resume there; run without --resume to start it"
        )
    if not resume and state not in ("absent", CREATING):
        raise StoreError(
            f"{url}: already holds {state}; pass --resume to continue a run there or choose "
            "another --out (a run is never overwritten)"
        )


def _remote_root_attributes(url: StoreURL) -> dict[str, Any]:
    """The root attributes of a store in object storage; a store whose creation has not
    finished (``CREATING`` still set: its root attributes are written last) is not there yet."""
    node = _remote_json(url, METADATA)
    if node is None:
        raise StoreError(
            f"{url}: no such store; train one with `python -m generator train --out {url}`"
        )
    if not isinstance(node, dict):
        raise StoreError(f"{url}/zarr.json: not a JSON object; the store is damaged")
    attributes = node.get("attributes", {})
    if isinstance(attributes, dict) and CREATING in attributes:
        raise StoreError(
            f"{url}: is still being created (or its creation was killed); wait for its first "
            "epoch, or train it again with the same --out"
        )
    return attributes


# -- chunk files -----------------------------------------------------------------------------
def verify_chunks(store: StoreLocation, name: str, array: zarr.Array, epochs: int | None) -> None:
    """Compare every stored chunk file of the first ``epochs`` (all if None) with the size
    its blosc header promises: a truncated or overwritten chunk fails here, cheaply (16
    bytes read per chunk), instead of in the middle of a build. Objects in object storage
    are written whole (no torn writes), so there only the checksum on read checks them."""
    if isinstance(store, StoreURL):
        return
    tail = _checksum_tail(array)
    if tail is None:
        return  # not our codec chain: left to the read to find problems
    expected = int(np.prod(array.chunks)) * array.dtype.itemsize
    for key, file in _chunk_files(store / name, epochs):
        problem = _chunk_problem(file, expected, tail)
        if problem:
            raise StoreError(
                f"{store}: {name} chunk {key} is {problem}; the store is "
                "damaged (train it again, or --resume from before that epoch)"
            )


def _checksum_tail(array: zarr.Array) -> int | None:
    """Bytes after the blosc frame (4 with a CRC-32C, 0 without), or None for other codecs."""
    meta = array.metadata
    codecs = tuple(getattr(meta, "codecs", ()))
    encoding = getattr(meta, "chunk_key_encoding", None)
    if not (isinstance(encoding, DefaultChunkKeyEncoding) and encoding.separator == "/"):
        return None
    if (
        len(codecs) not in (2, 3)
        or not isinstance(codecs[0], BytesCodec)
        or not isinstance(codecs[1], BloscCodec)
    ):
        return None
    if len(codecs) == 3:
        return 4 if isinstance(codecs[2], Crc32cCodec) else None
    return 0


def _chunk_files(folder: Path, epochs: int | None) -> Iterator[tuple[str, Path]]:
    """(key, file) of the chunk files under ``folder/c`` whose epoch index is < ``epochs``;
    temp files of an interrupted write are not chunks and are skipped."""
    root = folder / "c"
    for parent, _dirs, files in os.walk(root):
        for file in files:
            path = Path(parent, file)
            key = path.relative_to(root).parts
            if file.endswith(".partial") or not all(part.isdigit() for part in key):
                continue
            if epochs is None or int(key[0]) < epochs:
                yield "c/" + "/".join(key), path


def _chunk_problem(file: Path, expected: int, tail: int) -> str | None:
    """Why a chunk file does not match its blosc header, or None if it does."""
    try:
        kind = special_kind(os.stat(file).st_mode)
        if kind:
            return kind
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(fd).st_size
            header = handle.read(BLOSC_HEADER)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if len(header) < BLOSC_HEADER:
        return f"truncated ({size} bytes)"
    nbytes, _blocksize, cbytes = struct.unpack_from("<iii", header, 4)
    if nbytes != expected:
        return f"corrupted (its header says {nbytes} bytes of data, not {expected})"
    if cbytes + tail != size:
        return f"truncated or corrupted ({size} bytes on disk, {cbytes + tail} expected)"
    return None


# -- arrays against the plan -------------------------------------------------------------------
def check_array(
    path: StoreLocation, name: str, array: zarr.Array, spec: ArraySpec, epochs: int | None
) -> None:
    """One array of the plan: of its dtype and shape, long enough for the ``epochs`` read
    (None: written once, the whole shape), chunked sanely; else a one-line ``StoreError``."""
    shape, dtype = spec.shape, spec.dtype
    found = array.shape if epochs is None else array.shape[1:]
    if array.dtype != np.dtype(dtype) or found != shape:
        raise StoreError(
            f"{path}: {name} is {array.dtype} {array.shape}, "
            f"expected {dtype} {shape if epochs is None else ('E', *shape)}; "
            "the store is damaged"
        )
    if epochs is not None and array.shape[0] < epochs:
        raise StoreError(
            f"{path}: {name} holds {array.shape[0]} epochs but "
            f"{epochs} are marked committed; the store is damaged"
        )
    limit = shape if epochs is None else (1, *shape)
    if any(not 1 <= c <= max(s, 1) for c, s in zip(array.chunks, limit, strict=True)):
        raise StoreError(
            f"{path}: {name} has chunks {array.chunks} that do not "
            f"fit its shape; the store is damaged"
        )
