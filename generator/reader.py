"""The store reader: the only code besides ``store`` that touches zarr, read-only.

Every accessor is clipped to the committed epochs, so a store that a training run is still
appending to reads as the run so far, never as fill values. Arrays come back as numpy with
the shapes of the schema in ``generator.store``; activations keep their stored dtype
(float16 by default) so a whole layer stays small in memory.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from generator.errors import StoreError
from generator.store import (
    ACTIVATION_DTYPES,
    ACTIVATIONS,
    CHANNEL_STATS,
    CONFUSION,
    KERNELS,
    METRICS,
    PROBE_PROBS,
    PROBES,
    SCALAR_METRICS,
    SCHEMA_VERSION,
    STAT_FIELDS,
    WEIGHT_CHANGE,
    LayerSpec,
    array_plan,
    layers_from_attrs,
)

REQUIRED_ATTRS = (
    "schema_version",
    "class_names",
    "layers",
    "input_size",
    "epochs_committed",
    "activation_dtype",
)
# A layer name becomes a path inside the store: one plain component, never "..".
LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
BLOSC_HEADER = 16  # bytes: version, versionlz, flags, typesize, nbytes, blocksize, cbytes


def open_group_checked(path: Path, mode: str = "r") -> zarr.Group:
    """Open a run store's root group, or raise a one-line ``StoreError`` saying why not."""
    path = Path(path)
    if not path.exists():
        raise StoreError(
            f"{path}: no such store; train one with `python -m generator train --out PATH`"
        )
    meta = path / "zarr.json"
    if not meta.is_file():
        raise StoreError(
            f"{path}: not a zarr store (no zarr.json); pass a run store "
            "made by `python -m generator train`"
        )
    try:
        node = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(
            f"{path}/zarr.json: unreadable ({_one_line(exc)}); the store is damaged"
        ) from exc
    check_attrs(path, node.get("attributes", {}) if isinstance(node, dict) else {})
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises many kinds for a damaged store
        raise StoreError(f"{path}: cannot open the store ({_one_line(exc)})") from exc


def check_attrs(path: Path, attrs: Any) -> None:
    """Refuse root attributes a reader would misread: missing, newer or of the wrong type."""
    missing = [key for key in REQUIRED_ATTRS if not isinstance(attrs, dict) or key not in attrs]
    if missing:
        raise StoreError(f"{path}: not a netlapse run store (missing {', '.join(missing)})")
    version = attrs["schema_version"]
    if not _is_int(version) or version < 1:
        raise StoreError(
            f"{path}: schema_version {version!r} is not a version number; the store is damaged"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema_version {version} is newer than this netlapse "
            f"reads ({SCHEMA_VERSION}); upgrade netlapse"
        )
    problem = _attrs_problem(attrs)
    if problem:
        raise StoreError(f"{path}: root attribute {problem}; the store is damaged")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _attrs_problem(attrs: dict[str, Any]) -> str | None:
    """What is wrong with the typed root attributes, or None."""
    checks = (
        (
            "epochs_committed",
            _is_int(attrs["epochs_committed"]) and attrs["epochs_committed"] >= 0,
            "a count of epochs",
        ),
        (
            "input_size",
            _is_int(attrs["input_size"]) and attrs["input_size"] >= 1,
            "a positive number of pixels",
        ),
        (
            "class_names",
            _is_str_list(attrs["class_names"]) and attrs["class_names"],
            "a list of class names",
        ),
        (
            "activation_dtype",
            attrs["activation_dtype"] in ACTIVATION_DTYPES,
            f"one of {', '.join(ACTIVATION_DTYPES)}",
        ),
        ("training", isinstance(attrs.get("training", {}), dict), "an object"),
        ("probe_sources", _is_str_list(attrs.get("probe_sources", [])), "a list of paths"),
        ("stat_fields", _is_str_list(attrs.get("stat_fields", [])), "a list of names"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"{key} is {_short(attrs.get(key))}, not {expected}"
    layers = attrs["layers"]
    if not isinstance(layers, list) or not layers:
        return f"layers is {_short(layers)}, not a list of layers"
    names = [item.get("name") if isinstance(item, dict) else None for item in layers]
    if len(set(map(str, names))) != len(names):
        return "layers has a repeated layer name"
    for item in layers:
        problem = _layer_problem(item)
        if problem:
            return f"layers has {_short(item)}: {problem}"
    return None


def _layer_problem(item: Any) -> str | None:
    """What is wrong with one stored layer description, or None."""
    if not isinstance(item, dict):
        return "not an object"
    name, kind = item.get("name"), item.get("kind")
    if not isinstance(name, str) or not LAYER_NAME.match(name):
        return "its name is not a plain name"
    if kind not in ("conv", "linear"):
        return "its kind is not conv or linear"
    if not _dims(item.get("shape"), 3 if kind == "conv" else 1):
        return "its shape does not fit its kind"
    kernel = item.get("kernel_shape")
    if (kernel is not None or kind == "conv") and not _dims(kernel, 4):
        return "its kernel_shape is not 4 positive sizes"
    if not _is_int(item.get("params", 0)) or item.get("params", 0) < 0:
        return "its params is not a count"
    if item.get("receptive_field") is not None and not _is_int(item["receptive_field"]):
        return "its receptive_field is not a number"
    return None


def _dims(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(_is_int(v) and 1 <= v <= 2**31 for v in value)
    )


def _short(value: Any, limit: int = 60) -> str:
    """A value in a message: its JSON, cut to fit one line."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: libraries put whole logs and tracebacks in theirs."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunReader:
    """Typed, read-only access to the committed epochs of one run store.

    Opening checks everything that can be checked cheaply, so a damaged store fails here
    with a one-line ``StoreError`` instead of half-way through a build: the attributes and
    their types, every array the schema lists (present, dtype, shape, chunking, long enough
    for the committed epochs) and the size of every committed chunk file against its
    header. Chunk contents are checksummed and verified when they are read.
    """

    def __init__(self, path: Path | str, *, verify: bool = True) -> None:
        self.path = Path(path)
        self._group = open_group_checked(self.path)
        self._attrs: dict[str, Any] = self._group.attrs.asdict()
        check_attrs(self.path, self._attrs)  # re-read by zarr: a writer may have committed
        self.epochs = int(self._attrs["epochs_committed"])
        self._arrays: dict[str, zarr.Array] = {}
        self._check_arrays()
        if verify:
            for name, array in self._arrays.items():
                verify_chunks(self.path, name, array, self._epoch_limit(name))

    def _epoch_limit(self, name: str) -> int | None:
        return None if name.startswith(f"{PROBES}/") else self.epochs

    def _expected_arrays(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]:
        """path -> (shape of one epoch or whole shape, chunk of it, dtype) for every array."""
        labels = self._open_array(f"{PROBES}/labels")
        if labels.ndim != 1 or labels.shape[0] < 1:
            raise StoreError(
                f"{self.path}: {PROBES}/labels has shape {labels.shape}; the store is damaged"
            )
        n, size = labels.shape[0], self.input_size
        expected = {
            f"{PROBES}/labels": ((n,), (n,), "int64"),
            f"{PROBES}/images": ((n, 3, size, size), (1, 3, size, size), "uint8"),
        }
        plan = array_plan(
            self.layers, n, len(self.class_names), str(self._attrs["activation_dtype"])
        )
        return {**expected, **plan}

    def _check_arrays(self) -> None:
        """Every array of the schema: present, of its dtype and shape, chunked sanely."""
        for name, (shape, _chunk, dtype) in self._expected_arrays().items():
            array = self._open_array(name)
            epochs = self._epoch_limit(name) is not None
            found = array.shape[1:] if epochs else array.shape
            if array.dtype != np.dtype(dtype) or found != shape:
                raise StoreError(
                    f"{self.path}: {name} is {array.dtype} {array.shape}, "
                    f"expected {dtype} {('E', *shape) if epochs else shape}; "
                    "the store is damaged"
                )
            if epochs and array.shape[0] < self.epochs:
                raise StoreError(
                    f"{self.path}: {name} holds {array.shape[0]} epochs but "
                    f"{self.epochs} are marked committed; the store is damaged"
                )
            limit = (1, *shape) if epochs else shape
            if any(not 1 <= c <= max(s, 1) for c, s in zip(array.chunks, limit, strict=True)):
                raise StoreError(
                    f"{self.path}: {name} has chunks {array.chunks} that do not "
                    f"fit its shape; the store is damaged"
                )

    def _open_array(self, name: str) -> zarr.Array:
        """The array at ``name`` (cached), or a one-line ``StoreError`` saying what is wrong."""
        if name in self._arrays:
            return self._arrays[name]
        try:
            node = self._group[name]
        except KeyError:
            raise StoreError(
                f"{self.path}: array {name} is missing; the store is incomplete or damaged"
            ) from None
        except Exception as exc:  # zarr raises many kinds for damaged metadata
            raise StoreError(
                f"{self.path}: array {name} has unreadable metadata "
                f"({_one_line(exc)}); the store is damaged"
            ) from exc
        if not isinstance(node, zarr.Array):
            raise StoreError(f"{self.path}: {name} is not an array; the store is damaged")
        self._arrays[name] = node
        return node

    # -- run description -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self._attrs["class_names"]]

    @cached_property
    def layers(self) -> list[LayerSpec]:
        return layers_from_attrs(self._attrs)

    @property
    def conv_layers(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.is_conv]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise StoreError(
            f"{self.path}: no layer {name!r}; layers are "
            f"{', '.join(layer.name for layer in self.layers)}"
        )

    @property
    def input_size(self) -> int:
        return int(self._attrs["input_size"])

    @property
    def training(self) -> dict[str, Any]:
        return dict(self._attrs.get("training", {}))

    @property
    def schema_version(self) -> int:
        return int(self._attrs["schema_version"])

    # -- probes ----------------------------------------------------------------------
    @cached_property
    def probe_images(self) -> np.ndarray:
        """(P, 3, H, W) uint8, the images every activation was recorded for."""
        return self._read(f"{PROBES}/images", epochs=False)

    @cached_property
    def probe_labels(self) -> np.ndarray:
        """(P,) int64 class index of each probe."""
        return self._read(f"{PROBES}/labels", epochs=False)

    @property
    def probe_sources(self) -> list[str]:
        return [str(s) for s in self._attrs.get("probe_sources", [])]

    @property
    def n_probes(self) -> int:
        return int(self._open_array(f"{PROBES}/labels").shape[0])

    # -- activations and kernels -----------------------------------------------------
    def layer_activations(self, name: str, probe: int | None = None) -> np.ndarray:
        """(E, P, C, H, W) or (E, P, N); with ``probe``, (E, C, H, W) or (E, N)."""
        self.layer(name)
        index = (slice(0, self.epochs),) if probe is None else (slice(0, self.epochs), probe)
        return self._read(f"{ACTIVATIONS}/{name}", index=index)

    def layer_at(self, name: str, epoch: int, probe: int | None = None) -> np.ndarray:
        """(P, C, H, W) or (P, N) at one committed epoch; with ``probe``, (C, H, W) or (N,).

        One chunk per probe: reading an epoch at a time keeps memory independent of E.
        """
        self._check_epoch(epoch)
        index = (epoch,) if probe is None else (epoch, probe)
        return self._read(f"{ACTIVATIONS}/{name}", index=index)

    def channel(self, name: str, channel: int, probe: int) -> np.ndarray:
        """(E, H, W) (or (E,) for a linear unit): one channel of one probe over epochs."""
        return self._read(f"{ACTIVATIONS}/{name}", index=(slice(0, self.epochs), probe, channel))

    def channel_range(self, name: str, probe: int, start: int, stop: int) -> np.ndarray:
        """(E, stop - start, H, W): a group of channels of one probe over every epoch.

        Read one epoch at a time into the result: a chunk holds all channels, and a single
        read across epochs lets zarr decode many whole chunks at once, so peak memory would
        grow with E instead of staying at the result plus one chunk.
        """
        first = self.layer_at(name, 0, probe)[start:stop]
        out = np.empty((self.epochs, *first.shape), dtype=first.dtype)
        out[0] = first
        for epoch in range(1, self.epochs):
            out[epoch] = self.layer_at(name, epoch, probe)[start:stop]
        return out

    def kernels(self, name: str, epoch: int | None = None) -> np.ndarray:
        """(E, O, I, kh, kw) float32 weights of a conv layer; with ``epoch``, (O, I, kh, kw)."""
        if not self.layer(name).is_conv:
            raise StoreError(f"{self.path}: layer {name!r} has no conv kernels")
        if epoch is None:
            return self._read(f"{KERNELS}/{name}")
        self._check_epoch(epoch)
        return self._read(f"{KERNELS}/{name}", index=(epoch,))

    # -- metrics ---------------------------------------------------------------------
    def scalar_metric(self, name: str) -> np.ndarray:
        """(E,) float32; one of ``SCALAR_METRICS``; NaN where not defined (epoch 0 train)."""
        if name not in SCALAR_METRICS:
            raise StoreError(f"unknown metric {name!r}; use one of {', '.join(SCALAR_METRICS)}")
        return self._read(f"{METRICS}/{name}")

    def confusion(self) -> np.ndarray:
        """(E, K, K) int64 validation confusion matrices, rows = true class."""
        return self._read(f"{METRICS}/{CONFUSION}")

    def probe_probs(self) -> np.ndarray:
        """(E, P, K) float32 class probabilities of each probe."""
        return self._read(f"{METRICS}/{PROBE_PROBS}")

    def weight_change(self) -> dict[str, np.ndarray]:
        """layer -> (E,) relative weight change from the previous epoch (NaN at epoch 0)."""
        return {
            layer.name: self._read(f"{METRICS}/{WEIGHT_CHANGE}/{layer.name}")
            for layer in self.layers
            if layer.params
        }

    def channel_stats(self, name: str, stat: str) -> np.ndarray:
        """(E, P, C) float32 per-channel statistic ``stat`` (see ``STAT_FIELDS``)."""
        if stat not in STAT_FIELDS:
            raise StoreError(f"unknown statistic {stat!r}; use one of {', '.join(STAT_FIELDS)}")
        self.layer(name)
        return self._read(f"{METRICS}/{CHANNEL_STATS}/{name}/{stat}")

    # -- plumbing --------------------------------------------------------------------
    def _check_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < self.epochs:
            raise StoreError(
                f"{self.path}: epoch {epoch} is not committed (epochs 0..{self.epochs - 1} are)"
            )

    def _read(self, path: str, index: tuple = (), epochs: bool = True) -> np.ndarray:
        if epochs and not index:
            index = (slice(0, self.epochs),)
        array = self._open_array(path)
        try:
            return np.asarray(array[index])
        except IndexError as exc:
            raise StoreError(
                f"{self.path}: {path} has no element {index} ({_one_line(exc)})"
            ) from exc
        except Exception as exc:  # zarr and its codecs raise many kinds for a bad chunk
            why = "a checksum does not match" if "checksum" in str(exc) else _one_line(exc)
            raise StoreError(
                f"{self.path}: cannot read {path}{_show(index)} ({why}); a "
                "chunk is truncated or corrupted"
            ) from exc


def _show(index: tuple) -> str:
    """``(1, slice(0, 4))`` -> ``[1, 0:4]``: which part of an array a read asked for."""
    parts = [f"{i.start or 0}:{i.stop}" if isinstance(i, slice) else str(i) for i in index]
    return f"[{', '.join(parts)}]" if parts else ""


def verify_chunks(store: Path, name: str, array: zarr.Array, epochs: int | None) -> None:
    """Compare every stored chunk file of the first ``epochs`` (all if None) with the size
    its blosc header promises: a truncated or overwritten chunk fails here, cheaply (16
    bytes read per chunk), instead of in the middle of a build."""
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
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
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


def open_run(path: Path | str, *, verify: bool = True) -> RunReader:
    """Open a run store for reading (raises ``StoreError`` with a one-line reason).

    ``verify=False`` skips the chunk-size check (one small read per chunk file) for callers
    that open the same store many times; reads still verify each chunk's checksum.
    """
    return RunReader(path, verify=verify)
