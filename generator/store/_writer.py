"""The run store's one writer: creates a zarr v3 store and appends one epoch at a time.

What the store holds (attributes, layer descriptions, arrays, versions) is described in
``generator.store._schema``, which the reader imports too; ``docs/store.md`` is its human copy.
This module is the how: creating a store safely, growing arrays, and committing an epoch
only when all of its arrays are written.

Arrays grow before their data is written, so a reader must use ``epochs_committed``
(advanced last, in one atomic metadata write) and never the array length.

Crash safety (``docs/reliability.md``): a new store is built in a hidden staging folder and
renamed into place; a writer holds a lock on the store folder; every chunk carries a
CRC-32C after its blosc frame; reopening for ``--resume`` removes the ``*.partial`` temp
files of zarr writes a kill interrupted. In object storage (a ``StoreURL``; no rename, no
``flock``) a new store is created in place with its root attributes written last, and the
lock is an object created by a conditional put (``generator.store._backends.RemoteLock``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs
from zarr.core.sync import sync as zarr_sync

from generator.errors import StoreError
from generator.faults import maybe_die
from generator.store._backends import (
    RemoteLock,
    StoreLocation,
    StoreURL,
    delete_prefix,
    remote_error,
    remote_errors,
    store_location,
    zarr_store,
)
from generator.store._files import CREATING, open_group_checked, remote_state
from generator.store._schema import (
    ACTIVATION_DTYPES,
    CONFUSION,
    EXAMPLE_FIELDS,
    EXAMPLES,
    EXTRA_METRICS,
    FEATVIZ,
    PROBE_PROBS,
    SCALAR_METRICS,
    SCHEMA_VERSION,
    STAT_FIELDS,
    ArraySpec,
    ExampleSettings,
    FeatvizSpec,
    LayerSpec,
    activation_path,
    array_plan,
    channel_stat_path,
    check_layers,
    example_path,
    example_pool_path,
    example_pool_plan,
    featviz_path,
    kernel_path,
    metric_path,
    parse_root_attrs,
    probe_path,
    probe_plan,
    weight_change_path,
)

try:  # advisory locks: POSIX only; elsewhere two writers are not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

GROW_EPOCHS = 16


@dataclass
class EpochRecord:
    """Everything recorded for one epoch, as numpy arrays keyed by layer name.

    A metric the loop did not measure is left out: a missing scalar is stored as NaN, a
    missing confusion matrix as zeros (no images counted), ``extra`` scalars by name.
    """

    activations: dict[str, np.ndarray]
    channel_stats: dict[str, dict[str, np.ndarray]]
    kernels: dict[str, np.ndarray]
    weight_change: dict[str, float]
    probe_probs: np.ndarray
    confusion: np.ndarray | None = None
    scalars: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    featviz: dict[str, np.ndarray] = field(default_factory=dict)  # (C, S, S, 3) uint8
    # conv layer -> "index" (C, k), "position" (C, k, 2), "value" (C, k): dataset examples,
    # required exactly when the store keeps them (``ExamplePoolRecord``)
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExamplePoolRecord:
    """The example pool a store keeps once: images (N, S, S, 3) uint8, labels (N,) with
    -1 = unknown, a source name per image, and how many top images each channel keeps."""

    images: np.ndarray
    labels: np.ndarray
    sources: tuple[str, ...]
    top_k: int


def _compressors() -> tuple[zarr.codecs.BloscCodec, zarr.codecs.Crc32cCodec]:
    """Blosc, then a CRC-32C of the compressed chunk.

    lz4 level 1 with byte shuffle was chosen by measurement (docs/store.md): the fastest
    writer, and it still shrinks trained activations. The checksum (4 bytes per chunk) makes
    a damaged chunk a read error instead of silently wrong pixels; every zarr reads it.
    """
    return (
        zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
        zarr.codecs.Crc32cCodec(),
    )


class StoreWriter:
    """Appends epochs to one run store; the only code that writes zarr.

    Create with :meth:`create` (a new store; refuses to replace an existing one) or
    :meth:`open_for_resume`. Each :meth:`write_epoch` grows the arrays, writes the data,
    then advances ``epochs_committed`` — the last step, so a reader never sees half an epoch.
    A writer holds an exclusive lock on the store folder until :meth:`close` (or its
    process ends, even by SIGKILL), so two training runs can never write one store.
    """

    def __init__(
        self, group: zarr.Group, path: StoreLocation, *, lock: RemoteLock | None = None
    ) -> None:
        self._lock: int | RemoteLock | None = lock or _lock_store(path)
        self._group = group
        self.path = path
        self._arrays: dict[str, zarr.Array] = {}
        root = parse_root_attrs(path, group.attrs.asdict())
        self.layers = list(root.layers)
        self.examples = root.examples
        self._plan = array_plan(
            self.layers,
            int(group[probe_path("labels")].shape[0]),
            len(root.class_names),
            root.activation_dtype,
            featviz=root.featviz,
            example_top_k=root.examples.top_k if root.examples else 0,
        )

    @classmethod
    def create(
        cls,
        path: StoreLocation,
        *,
        class_names: Sequence[str],
        layers: Sequence[LayerSpec],
        input_size: int,
        training: Mapping[str, Any],
        probe_images: np.ndarray,
        probe_labels: np.ndarray,
        probe_sources: Sequence[str],
        activation_dtype: str = "float16",
        featviz: FeatvizSpec | None = None,
        example_pool: ExamplePoolRecord | None = None,
    ) -> StoreWriter:
        """A new, empty store (no epochs committed) with the probes written once;
        ``featviz`` adds the optional feature-visualization arrays.

        The store is built in a hidden staging folder beside ``path`` and renamed into place
        when complete, so a run killed while creating it leaves no half-made store behind.
        In object storage it is made in place, marked ``CREATING`` until its root attributes
        are written last (:meth:`_create_at_url`).
        """
        path = store_location(path)
        if isinstance(path, Path) and path.exists():
            raise StoreError(
                f"{path}: already exists; pass --resume to continue that run "
                "or choose another --out (a run is never overwritten)"
            )
        if activation_dtype not in ACTIVATION_DTYPES:
            raise StoreError(
                f"activation dtype {activation_dtype!r}: use one of {', '.join(ACTIVATION_DTYPES)}"
            )
        check_layers(path, layers)
        attrs = {
            "schema_version": SCHEMA_VERSION,
            "class_names": list(class_names),
            "input_size": int(input_size),
            "layers": [layer.to_json() for layer in layers],
            "training": dict(training),
            "activation_dtype": activation_dtype,
            "probe_sources": list(probe_sources),
            "stat_fields": list(STAT_FIELDS),
            "epochs_committed": 0,
            "run_id": uuid.uuid4().hex,  # binds the run's checkpoints to it
        }
        if featviz is not None:
            attrs[FEATVIZ] = featviz.to_json()
        top_k = 0
        if example_pool is not None:
            settings = ExampleSettings(
                len(example_pool.labels), example_pool.top_k, tuple(example_pool.sources)
            )
            attrs[EXAMPLES], top_k = settings.to_json(), settings.top_k
        parse_root_attrs(path, attrs)  # never write what the reader would refuse
        probes = (probe_plan(len(probe_labels), int(input_size)), probe_images, probe_labels)

        def write_fixed(group: zarr.Group) -> None:
            """What a store holds once: the probes and, when kept, the example pool."""
            _write_probes(group, *probes)
            if example_pool is not None:
                _write_example_pool(group, example_pool, int(input_size))

        plan = array_plan(
            layers,
            len(probe_labels),
            len(class_names),
            activation_dtype,
            featviz=featviz,
            example_top_k=top_k,
        )
        if isinstance(path, StoreURL):
            return cls._create_at_url(path, attrs, write_fixed, plan)
        staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
        _remove_stale_staging(path)
        try:
            group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
            write_fixed(group)
            _create_arrays(group, plan)
            group.attrs.update(attrs)
            maybe_die("store.create", 0)
            _publish(staging, path)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store ({_reason(exc)})") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when published
        return cls.open_for_resume(path)

    @classmethod
    def _create_at_url(
        cls,
        url: StoreURL,
        attrs: Mapping[str, Any],
        write_fixed: Callable[[zarr.Group], None],
        plan: Mapping[str, tuple],
    ) -> StoreWriter:
        """Object storage has no rename: take the lock, clear what a killed creation left,
        write the root marked ``CREATING`` (readers treat it as not there yet), the probes
        and the empty arrays, then replace the root attributes in one PUT — the commit."""
        lock = RemoteLock(url).acquire()
        try:
            state = remote_state(url)
            if state != "absent" and state != CREATING:
                raise StoreError(
                    f"{url}: already exists ({state}); pass --resume to continue a run there "
                    "or choose another --out (a run is never overwritten)"
                )
            if state == CREATING:  # we hold the lock: its creator is gone
                log.info("%s: removing a store whose creation was interrupted", url)
                delete_prefix(url)
            group = zarr.open_group(
                zarr_store(url, read_only=False),
                mode="w-",
                zarr_format=3,
                attributes={CREATING: attrs["run_id"]},
            )
            write_fixed(group)
            _create_arrays(group, plan)
            maybe_die("store.create", 0)
            group.attrs.put(dict(attrs))
            return cls(group, url, lock=lock)
        except BaseException as exc:
            lock.release()
            if isinstance(exc, remote_errors()):
                raise remote_error(url, exc) from exc
            raise

    @classmethod
    def open_for_resume(cls, path: StoreLocation) -> StoreWriter:
        """An existing store of this schema, opened to append (see ``reader.open_run``).

        Temp files a killed writer left inside (zarr's ``*.partial``) are removed: they are
        never part of the store, and nobody else can be writing it while we hold the lock.
        A store of an older schema is refused: its layer entries cannot say what a layer of
        this version says, and one store never mixes versions.
        """
        path = store_location(path)
        group = open_group_checked(path, mode="r+")
        version = group.attrs["schema_version"]
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{path}: made by an older netlapse (store schema v{version}); this version "
                f"appends only to v{SCHEMA_VERSION} stores. It still reads and builds it: "
                "train a new run instead of --resume"
            )
        writer = cls(group, path)
        removed = remove_partial_files(path) if isinstance(path, Path) else 0
        if removed:
            log.info("%s: removed %d temp files of an interrupted write", path, removed)
        return writer

    def close(self) -> None:
        """Release the store's write lock (also released when the process ends)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if isinstance(lock, RemoteLock):
            lock.release()
        elif lock is not None:
            os.close(lock)

    def __del__(self) -> None:
        self.close()

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self._group.attrs.asdict()

    def probe_images(self) -> np.ndarray:
        """The stored probe images (P, 3, S, S) uint8, to check a resumed run uses them."""
        return np.asarray(self._group[probe_path("images")][...])

    def example_pool(self) -> ExamplePoolRecord | None:
        """The stored example pool (None when the store keeps no dataset examples), so a
        resumed run searches the same images."""
        if self.examples is None:
            return None
        return ExamplePoolRecord(
            np.asarray(self._group[example_pool_path("images")][...]),
            np.asarray(self._group[example_pool_path("labels")][...]),
            self.examples.sources,
            self.examples.top_k,
        )

    @property
    def epochs_committed(self) -> int:
        return int(self._group.attrs["epochs_committed"])

    def update_training(self, training: Mapping[str, Any]) -> None:
        """Replace the ``training`` attribute (``--resume`` records what it changed there),
        in one atomic rewrite of the root metadata, like a commit."""
        try:
            self._group.attrs["training"] = dict(training)
        except (OSError, *remote_errors()) as exc:
            raise StoreError(
                f"{self.path}: cannot record the resumed settings ({_reason(exc)}); the "
                "epochs committed are intact"
            ) from exc

    def trim(self) -> None:
        """Shrink every array to the committed epochs, so a finished store's shapes read E.

        While training, arrays grow in blocks (``grown_length``); a kill during the trim
        leaves some arrays exact and some padded, both valid.
        """
        committed = self.epochs_committed
        for name, (shape, _, _) in self._plan.items():
            array = self._array(name)
            if array.shape[0] != committed:
                array.resize((committed, *shape))

    def rewind(self, epochs: int) -> None:
        """Uncommit every epoch from ``epochs`` on; their slots are overwritten later."""
        if epochs < self.epochs_committed:
            self._set_committed(epochs)

    def write_epoch(self, epoch: int, record: EpochRecord) -> None:
        """Write one epoch's arrays, then commit it. ``epoch`` must be the next one."""
        if epoch != self.epochs_committed:
            raise StoreError(
                f"{self.path}: cannot write epoch {epoch}; the store has "
                f"{self.epochs_committed} epochs committed"
            )
        slots = _flatten_record(record)
        for name in self._plan:  # a record without its visualizations stores blanks
            if name.startswith(f"{FEATVIZ}/"):
                slots.setdefault(name, None)
        self._check_examples(record)
        for name, value in slots.items():  # check every shape before touching the disk
            if name not in self._plan:
                raise StoreError(f"{self.path}: {name} is not an array of this store")
            if value is None:
                shape, _, dtype = self._plan[name]
                slots[name] = np.zeros(shape, dtype) if "int" in dtype else np.full(shape, np.nan)
            _check_shape(self.path, name, slots[name], self._plan[name].shape)
        try:
            self._grow(epoch)
            zarr_sync(self._write_slots(epoch, slots))
        except (OSError, *remote_errors()) as exc:
            raise StoreError(
                f"{self.path}: writing epoch {epoch} failed "
                f"({_reason(exc)}); the {epoch} epochs committed before "
                "it are intact"
            ) from exc
        self._set_committed(epoch + 1, extra=record.extra)

    def _check_examples(self, record: EpochRecord) -> None:
        """A store that keeps dataset examples gets them every epoch (a missing one would
        read as pool image 0), and one that does not never gets them."""
        wanted = {name for name in self._plan if name.startswith(f"{EXAMPLES}/")}
        given = {example_path(layer, f) for layer in record.examples for f in EXAMPLE_FIELDS}
        missing = sorted(wanted - given)
        if missing:
            raise StoreError(
                f"{self.path}: this store keeps dataset examples but the epoch has no "
                f"{missing[0]}; record it with the example pool it was created with"
            )

    def _set_committed(self, epochs: int, *, extra: Mapping[str, float] | None = None) -> None:
        """Rewrite the root metadata with a new ``epochs_committed`` (one atomic rename) and,
        when committing an epoch, its ``extra`` scalars."""
        update: dict[str, Any] = {"epochs_committed": int(epochs)}
        if extra is not None:
            stored = self._group.attrs.get(EXTRA_METRICS, {})
            update[EXTRA_METRICS] = _extra_metrics(stored, epochs - 1, extra)
        try:
            self._group.attrs.update(update)
        except (OSError, *remote_errors()) as exc:
            raise StoreError(
                f"{self.path}: cannot mark {epochs} epochs committed "
                f"({_reason(exc)}); the epochs committed before are "
                "intact"
            ) from exc

    def _array(self, name: str) -> zarr.Array:
        """The array ``name``, opened once per writer: opening reads its metadata file, and
        an epoch of a resnet18 writes ~230 arrays."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self._group[name]
        return array

    def _grow(self, epoch: int) -> None:
        """Make room for ``epoch`` in every array (once every ``GROW_EPOCHS`` epochs)."""
        for name, (shape, _, _) in self._plan.items():
            array = self._array(name)
            if array.shape[0] <= epoch:
                array.resize((grown_length(epoch), *shape))

    async def _write_slots(self, epoch: int, slots: Mapping[str, np.ndarray | float]) -> None:
        """Every array's slot of ``epoch`` at once, in zarr's event loop: each write is a
        small file, so they overlap (blosc runs in zarr's threads) instead of queueing
        one by one. The first error is raised; the epoch is not committed then."""
        written = 0

        async def write(name: str, value: np.ndarray | float) -> None:
            nonlocal written
            await self._write_slot(name, epoch, value)
            written += 1
            maybe_die("store.array", epoch, written)

        await asyncio.gather(*(write(name, value) for name, value in slots.items()))

    async def _write_slot(self, name: str, epoch: int, value: np.ndarray | float) -> None:
        _, _, dtype = self._plan[name]
        await self._array(name).async_array.setitem(epoch, np.asarray(value, dtype=dtype))


def _extra_metrics(
    stored: Mapping[str, list], epoch: int, values: Mapping[str, float]
) -> dict[str, list]:
    """name -> per-epoch values up to ``epoch`` (values of rewound epochs dropped)."""
    merged = {}
    for name in dict.fromkeys([*stored, *values]):
        kept = list(stored.get(name, []))[:epoch]
        value = values.get(name)
        finite = value is not None and math.isfinite(value)
        merged[name] = kept + [None] * (epoch - len(kept)) + [float(value) if finite else None]
    return merged


def grown_length(epoch: int) -> int:
    """Arrays grow in blocks of ``GROW_EPOCHS``: rewriting ~90 arrays' metadata for every
    epoch was a third of an epoch's store write. Readers go by ``epochs_committed``."""
    return (epoch // GROW_EPOCHS + 1) * GROW_EPOCHS


def _reason(exc: BaseException) -> str:
    """An OSError as its plain words, e.g. "No space left on device"; an object store's
    error as its first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n", 1)[0][:200] or type(exc).__name__


def _lock_store(path: StoreLocation) -> int | RemoteLock | None:
    """An exclusive, non-blocking lock on the store folder; the kernel drops it when the
    holder dies, so a killed run never leaves a stale lock behind. In object storage, the
    lock object of ``storage.RemoteLock``."""
    if isinstance(path, StoreURL):
        return RemoteLock(path).acquire()
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"{path}: another process is writing to this store (a training "
            "run); wait for it to finish or stop it first"
        ) from None
    return fd


def remove_partial_files(path: Path) -> int:
    """Delete the ``*.partial`` temp files a killed zarr write leaves; returns how many."""
    removed = 0
    for leftover in Path(path).rglob("*.partial"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_stale_staging(path: Path) -> None:
    """Staging folders of earlier attempts to create ``path`` that were killed."""
    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _publish(staging: Path, path: Path) -> None:
    """Move the finished staging folder to ``path``; refuse if something appeared there."""
    if path.exists():
        raise StoreError(f"{path}: already exists; choose another --out")
    os.rename(staging, path)


def _create_arrays(group: zarr.Group, plan: Mapping[str, tuple]) -> None:
    """Every epoch-indexed array with zero epochs; ``write_epoch`` grows them."""
    for name, (shape, chunk, dtype) in plan.items():
        group.create_array(
            name,
            shape=(0, *shape),
            chunks=(1, *chunk),
            dtype=dtype,
            compressors=_compressors(),
            fill_value=0,
        )


def _check_shape(path: Path, name: str, value: np.ndarray | float, shape: tuple[int, ...]) -> None:
    if np.shape(value) != shape:
        raise StoreError(f"{path}: {name} has shape {np.shape(value)}, expected {shape}")


def _write_probes(
    group: zarr.Group, plan: Mapping[str, ArraySpec], images: np.ndarray, labels: np.ndarray
) -> None:
    """The probe images and labels, written once, in the shapes of ``schema.probe_plan``."""
    values = {
        probe_path("images"): np.ascontiguousarray(images, dtype=np.uint8),
        probe_path("labels"): np.asarray(labels, dtype=np.int64),
    }
    for name, value in values.items():
        spec = plan[name]
        if value.shape != spec.shape:
            raise StoreError(f"{name} must have shape {spec.shape}, got {value.shape}")
        group.create_array(name, data=value, chunks=spec.chunk, compressors=_compressors())


def _write_example_pool(group: zarr.Group, pool: ExamplePoolRecord, input_size: int) -> None:
    """The example pool images and labels, in the shapes of ``schema.example_pool_plan``."""
    plan = example_pool_plan(len(pool.labels), input_size)
    values = {
        example_pool_path("images"): np.ascontiguousarray(pool.images, dtype=np.uint8),
        example_pool_path("labels"): np.asarray(pool.labels, dtype=np.int64),
    }
    for name, value in values.items():
        spec = plan[name]
        if value.shape != spec.shape:
            raise StoreError(f"{name} must have shape {spec.shape}, got {value.shape}")
        group.create_array(name, data=value, chunks=spec.chunk, compressors=_compressors())


def _flatten_record(record: EpochRecord) -> dict[str, np.ndarray | float | None]:
    """An epoch record as store paths -> values, matching ``array_plan``."""
    out: dict[str, np.ndarray | float | None] = {}
    for layer, value in record.activations.items():
        out[activation_path(layer)] = value
    for layer, stats in record.channel_stats.items():
        for stat in STAT_FIELDS:
            out[channel_stat_path(layer, stat)] = stats[stat]
    for layer, value in record.kernels.items():
        out[kernel_path(layer)] = value
    for layer, value in record.weight_change.items():
        out[weight_change_path(layer)] = value
    for name in SCALAR_METRICS:
        out[metric_path(name)] = record.scalars.get(name, math.nan)
    out[metric_path(CONFUSION)] = record.confusion
    out[metric_path(PROBE_PROBS)] = record.probe_probs
    for layer, value in record.featviz.items():
        out[featviz_path(layer)] = value
    for layer, fields_ in record.examples.items():
        for name, value in fields_.items():
            out[example_path(layer, name)] = value
    return out
