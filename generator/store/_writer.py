"""The run store's one writer: creates a zarr v3 store and appends one epoch at a time.

What the store holds (attributes, layer descriptions, arrays, versions) is described in
``generator.store._schema``, which the reader imports too; ``docs/store.md`` is its human copy.
This module is the how of one store's life: creating it, growing arrays, and committing an
epoch only when all of its arrays are written. Its collaborators are private modules too:
``_staging`` (creating a store safely), ``_locks`` (one writer per store), ``_arrays`` (zarr
arrays from the plan) and ``_records`` (the input types and their store paths).

Arrays grow before their data is written, so a reader must use ``epochs_committed``
(advanced last, in one atomic metadata write) and never the array length.

Crash safety (``docs/reliability.md``): a new store is built in a hidden staging folder and
renamed into place; a writer holds a lock on the store folder; every chunk carries a
CRC-32C after its blosc frame; reopening for ``--resume`` removes the ``*.partial`` temp
files of zarr writes a kill interrupted. In object storage (a ``StoreURL``; no rename, no
``flock``) a new store is created in place with its root attributes written last, and the
lock is an object created by a conditional put (``generator.store._locks.RemoteLock``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync as zarr_sync

from generator.errors import StoreError
from generator.faults import maybe_die
from generator.store._arrays import create_arrays, grown_length, per_epoch, write_once
from generator.store._backends import (
    StoreLocation,
    StoreURL,
    io_errors,
    store_location,
)
from generator.store._files import epochs_left, gather_all, open_group_checked
from generator.store._locks import WriteLock, lock_store, release
from generator.store._pictures import first_three
from generator.store._records import (
    EpochRecord,
    ExamplePoolRecord,
    Slot,
    epoch_slots,
    merge_extra_metrics,
    recording_notes,
)
from generator.store._schema import (
    ACTIVATION_DTYPES,
    EXTRA_METRICS,
    PROBE_DISPLAY,
    SCHEMA_VERSION,
    STAT_FIELDS,
    ExampleSettings,
    FeatvizSpec,
    GradientSpec,
    LayerSpec,
    RootAttrs,
    array_plan_of,
    check_layers,
    example_pool_path,
    has_display,
    input_size_of,
    parse_root_attrs,
    probe_path,
)
from generator.store._staging import create_local, create_remote, reason, remove_partial_files

__all__ = ["EpochRecord", "ExamplePoolRecord", "StoreWriter", "remove_partial_files"]

log = logging.getLogger(__name__)


class StoreWriter:
    """Appends epochs to one run store; the only code that writes zarr.

    Create with :meth:`create` (a new store; refuses to replace an existing one) or
    :meth:`open_for_resume`. Each :meth:`write_epoch` grows the arrays, writes the data,
    then advances ``epochs_committed`` — the last step, so a reader never sees half an epoch.
    A writer holds an exclusive lock on the store folder until :meth:`close` (or its
    process ends, even by SIGKILL), so two training runs can never write one store.
    """

    def __init__(self, group: zarr.Group, path: StoreLocation, *, lock: WriteLock = None) -> None:
        self._lock: WriteLock = lock or lock_store(path)
        self._group = group
        self.path = path
        self._arrays: dict[str, zarr.Array] = {}
        attrs = self.attrs
        self._committed = attrs.epochs_committed
        probes = int(self._array(probe_path("labels")).shape[0])
        self._plan = per_epoch(array_plan_of(attrs, probes))
        self._layers = attrs.layers  # in model order: the stacked weight changes follow it

    @classmethod
    def create(
        cls,
        path: StoreLocation,
        *,
        class_names: Sequence[str],
        layers: Sequence[LayerSpec],
        training: Mapping[str, Any],
        probe_images: np.ndarray,
        probe_labels: np.ndarray,
        probe_sources: Sequence[str],
        input_size: int | None = None,
        activation_dtype: str = "float16",
        featviz: FeatvizSpec | None = None,
        example_pool: ExamplePoolRecord | None = None,
        probe_display: np.ndarray | None = None,
        kernel_dtype: str = "float32",
        gradients: GradientSpec | None = None,
    ) -> StoreWriter:
        """A new, empty store (no epochs committed) with the probes written once, keeping
        their (C, H, W) (``probe_display``: see ``once_arrays``); ``featviz`` and
        ``gradients`` add their optional arrays.

        The store is built in a hidden staging folder beside ``path`` and renamed into place
        when complete, so a run killed while creating it leaves no half-made store behind.
        In object storage it is made in place, marked ``CREATING`` until its root attributes
        are written last (``_staging.create_remote``).
        """
        path = store_location(path)
        shape = probe_shape_of(path, probe_images, input_size, probe_display)
        attrs = RootAttrs(
            schema_version=SCHEMA_VERSION,
            class_names=tuple(class_names),
            input_size=input_size_of(shape),
            probe_shape=shape,
            layers=tuple(layers),
            activation_dtype=activation_dtype,
            epochs_committed=0,
            training=dict(training),
            probe_sources=tuple(probe_sources),
            stat_fields=STAT_FIELDS,
            featviz=featviz,
            examples=_example_settings(example_pool),
            run_id=uuid.uuid4().hex,  # binds the run's checkpoints to it
            kernel_dtype=kernel_dtype,
            gradients=gradients,
        )
        _check_new(path, attrs)
        plan = array_plan_of(attrs, len(probe_labels))
        once = once_arrays(probe_images, probe_labels, probe_display, example_pool)

        def fill(group: zarr.Group) -> None:
            """The probes (and example pool) written once, then the per-epoch arrays."""
            write_once(group, plan, once)
            create_arrays(group, plan)

        if isinstance(path, StoreURL):
            group, lock = create_remote(path, attrs, fill)
            return cls(group, path, lock=lock)
        create_local(path, attrs, fill)
        return cls.open_for_resume(path)

    @classmethod
    def open_for_resume(cls, path: StoreLocation) -> StoreWriter:
        """An existing store of this schema, opened to append (see ``_reader.open_run``).

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
        release(lock)

    def __del__(self) -> None:
        self.close()

    @property
    def attrs(self) -> RootAttrs:
        """The store's root attributes as they are now (committed epochs, ``training``)."""
        return parse_root_attrs(self.path, self._group.attrs.asdict())

    def probe_images(self) -> np.ndarray:
        """The stored probe images (P, C, H, W) uint8, to check a resumed run uses them."""
        return np.asarray(self._array(probe_path("images"))[...])

    def example_pool(self) -> ExamplePoolRecord | None:
        """The stored example pool (None when the store keeps no dataset examples), so a
        resumed run searches the same images."""
        examples = self.attrs.examples
        if examples is None:
            return None
        return ExamplePoolRecord(
            np.asarray(self._array(example_pool_path("images"))[...]),
            np.asarray(self._array(example_pool_path("labels"))[...]),
            examples.sources,
            examples.top_k,
        )

    @property
    def epochs_committed(self) -> int:
        """The epochs committed: this writer's own count, as it holds the only lock."""
        return self._committed

    def update_training(self, training: Mapping[str, Any]) -> None:
        """Replace the ``training`` attribute (``--resume`` records what it changed there),
        in one atomic rewrite of the root metadata, like a commit."""
        try:
            self._group.attrs["training"] = dict(training)
        except io_errors() as exc:
            raise StoreError(
                f"{self.path}: cannot record the resumed settings ({reason(exc)}); the "
                "epochs committed are intact"
            ) from exc

    def trim(self) -> None:
        """Shrink every array to the committed epochs, so a finished store's shapes read E.

        While training, arrays grow in blocks (``grown_length``); a kill during the trim
        leaves some arrays exact and some padded, both valid.
        """
        committed = self.epochs_committed
        for name, spec in self._plan.items():
            array = self._array(name)
            if array.shape[0] != committed:
                array.resize((committed, *spec.shape))

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
        # all checked before any write
        slots = epoch_slots(self.path, record, self._plan, layers=self._layers)
        try:
            self._grow(epoch)
            zarr_sync(self._write_slots(epoch, slots))
        except io_errors() as exc:
            raise StoreError(
                f"{self.path}: writing epoch {epoch} failed ({reason(exc)}); "
                f"{epochs_left(self.path, epoch)}"
            ) from exc
        self._set_committed(epoch + 1, extra=record.extra, record=record)

    def _set_committed(
        self,
        epochs: int,
        *,
        extra: Mapping[str, float] | None = None,
        record: EpochRecord | None = None,
    ) -> None:
        """Rewrite the root metadata with a new ``epochs_committed`` (one atomic rename) and,
        when committing an epoch, its ``extra`` scalars and what recording left out."""
        update: dict[str, Any] = {"epochs_committed": int(epochs)}
        if extra is not None:
            stored = self.attrs.extra_metrics or {}
            update[EXTRA_METRICS] = merge_extra_metrics(stored, epochs - 1, extra)
        if record is not None:
            attrs = self.attrs
            notes = recording_notes(attrs.featviz_skipped, attrs.budget, epochs - 1, record)
            update.update(notes)
        try:
            self._group.attrs.update(update)
        except io_errors() as exc:
            raise StoreError(
                f"{self.path}: cannot mark {epochs} epochs committed ({reason(exc)}); "
                f"{epochs_left(self.path, self._committed)}"
            ) from exc
        self._committed = int(epochs)

    def _array(self, name: str) -> zarr.Array:
        """The array ``name``, opened once per writer: opening reads its metadata file, and
        an epoch of a resnet18 writes ~230 arrays."""
        array = self._arrays.get(name)
        if array is None:
            node = self._group[name]
            if not isinstance(node, zarr.Array):
                raise StoreError(f"{self.path}: {name} is not an array; the store is damaged")
            array = self._arrays[name] = node
        return array

    def _grow(self, epoch: int) -> None:
        """Make room for ``epoch`` in every array (once every ``GROW_EPOCHS`` epochs)."""
        for name, spec in self._plan.items():
            array = self._array(name)
            if array.shape[0] <= epoch:
                array.resize((grown_length(epoch), *spec.shape))

    async def _write_slots(self, epoch: int, slots: Mapping[str, Slot]) -> None:
        """Every array's slot of ``epoch`` at once, in zarr's event loop: each write is a
        small file, so they overlap (blosc runs in zarr's threads) instead of queueing
        one by one. The first error is raised; the epoch is not committed then."""
        written = 0

        async def write(name: str, value: Slot) -> None:
            nonlocal written
            await self._write_slot(name, epoch, value)
            written += 1
            maybe_die("store.array", epoch, written)

        await gather_all(map(write, slots, slots.values()))

    async def _write_slot(self, name: str, epoch: int, value: Slot) -> None:
        dtype = self._plan[name].dtype
        await self._array(name).async_array.setitem(epoch, np.asarray(value, dtype=dtype))


def _example_settings(pool: ExamplePoolRecord | None) -> ExampleSettings | None:
    """The ``examples`` root attribute of a store that keeps ``pool`` (None: keeps none)."""
    if pool is None:
        return None
    return ExampleSettings(len(pool.labels), pool.top_k, tuple(pool.sources))


def _check_new(path: StoreLocation, attrs: RootAttrs) -> None:
    """Refuse, before anything is written, a store that is there already or that the
    reader would refuse (an unknown activation dtype, bad layers, any bad attribute)."""
    if isinstance(path, Path) and path.exists():
        raise StoreError(
            f"{path}: already exists; pass --resume to continue that run "
            "or choose another --out (a run is never overwritten)"
        )
    if attrs.activation_dtype not in ACTIVATION_DTYPES:
        raise StoreError(
            f"activation dtype {attrs.activation_dtype!r}: use one of "
            f"{', '.join(ACTIVATION_DTYPES)}"
        )
    check_layers(path, attrs.layers)
    parse_root_attrs(path, attrs.to_json())  # never write what the reader would refuse


def once_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    display: np.ndarray | None,
    pool: ExamplePoolRecord | None,
) -> dict[str, np.ndarray]:
    """The arrays written at creation: the probes, their RGB pictures (``display``, or the
    first three channels) when they are neither grey nor RGB, and the example pool."""
    once = {probe_path("images"): images, probe_path("labels"): labels}
    if has_display(images.shape[1:]):
        once[probe_path(PROBE_DISPLAY)] = (
            first_three(images, axis=1) if display is None else display
        )
    once.update(pool.arrays() if pool is not None else {})
    return once


def probe_shape_of(
    path: StoreLocation,
    images: np.ndarray,
    input_size: int | None,
    display: np.ndarray | None,
) -> tuple[int, int, int]:
    """The probes' (C, H, W), refused before anything is written when ``input_size`` or
    ``display`` disagree with the images (a reader would refuse the store)."""
    if images.ndim != 4:
        raise StoreError(f"{path}: probe images are {images.shape}, not (P, C, H, W)")
    shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    if input_size is not None and input_size_of(shape) != input_size:
        raise StoreError(
            f"{path}: probes/images must have shape (P, C, {input_size}, {input_size}) "
            f"for input_size {input_size}, got {tuple(images.shape)}"
        )
    wanted = (len(images), 3, *shape[1:])
    if display is not None and (tuple(display.shape) != wanted or display.dtype != np.uint8):
        raise StoreError(
            f"{path}: the probes' RGB pictures must be uint8 {wanted}, got "
            f"{display.dtype} {tuple(display.shape)}"
        )
    return shape
