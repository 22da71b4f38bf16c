"""The store reader: the only code besides the writer (``_writer``) that touches zarr.

Every accessor is clipped to the committed epochs, so a store that a training run is still
appending to reads as the run so far, never as fill values. Arrays come back as numpy with
the shapes of the schema in ``generator.store._schema``; activations keep their stored dtype
(float16 by default) so a whole layer stays small in memory. Stores of schema version 1
and 2 are read alike: layers are addressed by name, and their arrays are found through
``_keys.array_key``. The run's description is ``run.attrs`` (a ``RootAttrs``); the reader
itself keeps only what is its own: ``epochs`` (clipped), ``layers``, ``name`` and reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr

from generator.errors import StoreError, one_line
from generator.store._backends import (
    StoreLocation,
    StoreURL,
    remote_error,
    remote_errors,
    store_location,
)
from generator.store._distributions import DistributionViews
from generator.store._files import (
    check_array,
    check_array_metadata,
    open_group_checked,
    verify_chunks,
)
from generator.store._layer_metrics import LayerMetricViews
from generator.store._pictures import pictures_hwc
from generator.store._schema import (
    CONFUSION,
    EXAMPLE_FIELDS,
    PROBE_DISPLAY,
    PROBE_PROBS,
    PROBES,
    SCALAR_METRICS,
    LayerSpec,
    RootAttrs,
    activation_path,
    array_plan_of,
    example_path,
    example_pool_path,
    featviz_path,
    has_display,
    kernel_path,
    metric_path,
    parse_root_attrs,
    probe_path,
    written_once,
)

__all__ = ["RunReader", "TopExamples", "open_group_checked", "open_run"]


@dataclass(frozen=True)
class TopExamples:
    """A conv layer's dataset examples: per epoch and channel the top-k pool images, best
    first. ``index`` (E, C, k) into the pool, ``position`` (E, C, k, 2) the (y, x) of the
    channel's maximum in its own map, ``value`` (E, C, k) that maximum. With a channel
    chosen, the C axis is gone."""

    index: np.ndarray
    position: np.ndarray
    value: np.ndarray


class RunReader(DistributionViews, LayerMetricViews):
    """Typed, read-only access to the committed epochs of one run store.

    Opening checks everything that can be checked cheaply, so a damaged store fails here
    with a one-line ``StoreError`` instead of half-way through a build: the attributes and
    their types, every array the schema lists (present, dtype, shape, chunking, long enough
    for the committed epochs) and the size of every committed chunk file against its
    header. Chunk contents are checksummed and verified when they are read.
    """

    def __init__(
        self, path: StoreLocation | str, *, verify: bool = True, epochs: int | None = None
    ) -> None:
        self.path = store_location(path)
        self._group = open_group_checked(self.path)
        # parsed again from zarr's copy: a writer may have committed since the check
        self.attrs: RootAttrs = parse_root_attrs(self.path, self._group.attrs.asdict())
        self.epochs = _clipped(self.path, self.attrs.epochs_committed, epochs)
        self._arrays: dict[str, zarr.Array] = {}
        for name, spec in array_plan_of(self.attrs, self._probe_count()).items():
            check_array(self.path, name, self._open_array(name), spec, self._epoch_limit(name))
        if verify:
            for name, array in self._arrays.items():
                verify_chunks(self.path, name, array, self._epoch_limit(name))

    def _epoch_limit(self, name: str) -> int | None:
        """How many epochs of array ``name`` are read: None for the arrays written once."""
        return None if written_once(name) else self.epochs

    def _probe_count(self) -> int:
        """How many probes the store has: the length of its labels, the one array whose
        shape the root attributes do not give."""
        labels = self._open_array(probe_path("labels"))
        if labels.ndim != 1 or labels.shape[0] < 1:
            raise StoreError(
                f"{self.path}: {PROBES}/labels has shape {labels.shape}; the store is damaged"
            )
        return int(labels.shape[0])

    def _open_array(self, name: str) -> zarr.Array:
        """The array at ``name`` (cached), or a one-line ``StoreError`` saying what is wrong."""
        if name in self._arrays:
            return self._arrays[name]
        if isinstance(self.path, Path) and not (self.path / name / "zarr.json").exists():
            raise StoreError(
                f"{self.path}: array {name} is missing; the store is incomplete or damaged"
            )
        check_array_metadata(self.path, name)
        try:
            node = self._group[name]
        except KeyError:
            raise StoreError(
                f"{self.path}: array {name} is missing; the store is incomplete or damaged"
            ) from None
        except Exception as exc:  # zarr raises many kinds for damaged metadata
            raise StoreError(
                f"{self.path}: array {name} has unreadable metadata "
                f"({one_line(exc)}); the store is damaged"
            ) from exc
        if not isinstance(node, zarr.Array):
            raise StoreError(f"{self.path}: {name} is not an array; the store is damaged")
        self._arrays[name] = node
        return node

    # -- run description: ``attrs`` (a ``RootAttrs``) for everything else ------------
    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    @cached_property
    def layers(self) -> list[LayerSpec]:
        """The recorded layers in forward order (``LayerSpec``: name, kind, shape, ...)."""
        return list(self.attrs.layers)

    def layer(self, name: str) -> LayerSpec:
        """The recorded layer ``name``, or a one-line ``StoreError`` listing the layers."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise StoreError(
            f"{self.path}: no layer {name!r}; layers are "
            f"{', '.join(layer.name for layer in self.layers)}"
        )

    # -- probes ----------------------------------------------------------------------
    @cached_property
    def probe_images(self) -> np.ndarray:
        """(P, C, H, W) uint8, the images every activation was recorded for."""
        return self._read(probe_path("images"), epochs=False)

    probe_pictures = cached_property(lambda self: shown_probes(self))  # (P, H, W, 3) uint8

    @cached_property
    def probe_labels(self) -> np.ndarray:
        """(P,) int64 class index of each probe."""
        return self._read(probe_path("labels"), epochs=False)

    @property
    def n_probes(self) -> int:
        """How many probe images every activation was recorded for (P)."""
        return int(self._open_array(probe_path("labels")).shape[0])

    # -- dataset examples ------------------------------------------------------------
    @cached_property
    def example_images(self) -> np.ndarray:
        """(N, H, W, C) uint8: the example pool every epoch's top-k indexes into."""
        self._need_examples()
        return self._read(example_pool_path("images"), epochs=False)

    @cached_property
    def example_labels(self) -> np.ndarray:
        """(N,) int64 class index of each pool image (-1 = unknown)."""
        self._need_examples()
        return self._read(example_pool_path("labels"), epochs=False)

    def examples(self, name: str, channel: int | None = None) -> TopExamples:
        """A conv layer's top-k pool images per epoch and channel (see ``TopExamples``)."""
        self._need_examples()
        if not self.layer(name).is_conv:
            raise StoreError(f"{self.path}: layer {name!r} has no dataset examples (not conv)")
        index = (slice(0, self.epochs),) if channel is None else (slice(0, self.epochs), channel)
        return TopExamples(
            *(self._read(example_path(name, f), index=index) for f in EXAMPLE_FIELDS)
        )

    def _need_examples(self) -> None:
        if self.attrs.examples is None:
            raise StoreError(
                f"{self.path}: the run kept no dataset examples (train with --example-pool N)"
            )

    # -- activations and kernels -----------------------------------------------------
    def layer_activations(self, name: str, probe: int | None = None) -> np.ndarray:
        """(E, P, C, H, W) or (E, P, N); with ``probe``, (E, C, H, W) or (E, N)."""
        self.layer(name)
        index = (slice(0, self.epochs),) if probe is None else (slice(0, self.epochs), probe)
        return self._read(activation_path(name), index=index)

    def layer_at(self, name: str, epoch: int, probe: int | None = None) -> np.ndarray:
        """(P, C, H, W) or (P, N) at one committed epoch; with ``probe``, (C, H, W) or (N,).

        A chunk holds one probe or a few (up to 1 MB): reading an epoch at a time keeps
        memory independent of E.
        """
        self.layer(name)
        self._check_epoch(epoch)
        index = (epoch,) if probe is None else (epoch, probe)
        return self._read(activation_path(name), index=index)

    def channel(self, name: str, channel: int, probe: int) -> np.ndarray:
        """(E, H, W) (or (E,) for a linear unit): one channel of one probe over epochs."""
        self.layer(name)
        return self._read(activation_path(name), index=(slice(0, self.epochs), probe, channel))

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
            return self._read(kernel_path(name)).astype(np.float32, copy=False)
        self._check_epoch(epoch)
        return self._read(kernel_path(name), index=(epoch,)).astype(np.float32, copy=False)

    # -- feature visualizations (optional) -------------------------------------------
    def featviz(self, name: str, epoch: int | None = None) -> np.ndarray:
        """(E, C, S, S, 3) uint8 images maximising each visualised channel of ``name``;
        with ``epoch``, (C, S, S, 3). C is the layer's first ``attrs.featviz`` channels."""
        spec = self.attrs.featviz
        if spec is None or name not in spec.channels:
            have = ", ".join(spec.channels) if spec else "none"
            raise StoreError(
                f"{self.path}: no feature visualizations of layer {name!r} (layers: {have})"
            )
        if epoch is None:
            return self._read(featviz_path(name))
        self._check_epoch(epoch)
        return self._read(featviz_path(name), index=(epoch,))

    # -- metrics ---------------------------------------------------------------------
    def scalar_metric(self, name: str) -> np.ndarray:
        """(E,) float32; one of ``SCALAR_METRICS``; NaN where not defined (epoch 0 train)."""
        if name not in SCALAR_METRICS:
            raise StoreError(f"unknown metric {name!r}; use one of {', '.join(SCALAR_METRICS)}")
        return self._read(metric_path(name))

    def confusion(self) -> np.ndarray:
        """(E, K, K) int64 validation confusion matrices, rows = true class."""
        return self._read(metric_path(CONFUSION))

    def probe_probs(self) -> np.ndarray:
        """(E, P, K) float32 class probabilities of each probe."""
        return self._read(metric_path(PROBE_PROBS))

    # -- plumbing --------------------------------------------------------------------
    def _check_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < self.epochs:
            raise StoreError(
                f"{self.path}: epoch {epoch} is not committed (epochs 0..{self.epochs - 1} are)"
            )

    def _read(self, path: str, *, index: tuple = (), epochs: bool = True) -> np.ndarray:
        """``path[index]`` as numpy (by default every epoch read, for an epoch-indexed
        array); a failed read is a one-line ``StoreError`` saying what failed."""
        if epochs and not index:
            index = (slice(0, self.epochs),)
        array = self._open_array(path)
        try:
            return np.asarray(array[index])
        except IndexError as exc:
            raise StoreError(
                f"{self.path}: {path} has no element {index} ({one_line(exc)})"
            ) from exc
        except remote_errors() as exc:  # the object store, not the chunk, failed
            if isinstance(self.path, StoreURL):
                raise remote_error(self.path, exc) from exc
            raise
        except Exception as exc:  # zarr and its codecs raise many kinds for a bad chunk
            why = "a checksum does not match" if "checksum" in str(exc) else one_line(exc)
            raise StoreError(
                f"{self.path}: cannot read {path}{_show(index)} ({why}); a "
                "chunk is truncated or corrupted"
            ) from exc


def shown_probes(run: RunReader) -> np.ndarray:
    """``run.probe_pictures``: (P, H, W, 3) uint8, the probes as every page shows them (grey
    repeated, RGB as is, other channel counts through the mapping stored at record time)."""
    keeps = has_display(run.attrs.input_shape)
    shown = run._read(probe_path(PROBE_DISPLAY), epochs=False) if keeps else None
    return pictures_hwc(run.probe_images, shown)


def _clipped(path: StoreLocation, committed: int, epochs: int | None) -> int:
    """The epochs a reader shows: all committed ones, or the first ``epochs`` of them (a
    build renders what it planned while a run keeps appending); more is refused."""
    if epochs is None:
        return committed
    if not 0 <= epochs <= committed:
        raise StoreError(
            f"{path}: cannot read {epochs} epochs; the store has {committed} committed"
        )
    return epochs


def _show(index: tuple) -> str:
    """``(1, slice(0, 4))`` -> ``[1, 0:4]``: which part of an array a read asked for."""
    parts = [f"{i.start or 0}:{i.stop}" if isinstance(i, slice) else str(i) for i in index]
    return f"[{', '.join(parts)}]" if parts else ""


def open_run(
    path: StoreLocation | str, *, verify: bool = True, epochs: int | None = None
) -> RunReader:
    """Open a run store (a folder or an object-storage URL) for reading; any problem is a
    one-line ``StoreError``. This is ``generator.open_run``, e.g. in a notebook::

        run = generator.open_run("runs/demo.zarr")  # or "s3://bucket/runs/demo.zarr"
        run.scalar_metric("val_accuracy")  # (E,) float32, epoch 0 = untrained
        run.layer_activations("block1", probe=0)  # (E, C, H, W); see RunReader

    ``verify=False`` skips the chunk-size check (one small read per chunk file) for callers
    that open a store many times; reads still verify each chunk's checksum. ``epochs=N``
    reads only the first N committed epochs (more is a ``StoreError``): a build renders
    exactly the epochs it planned while a training run keeps appending.
    """
    return RunReader(path, verify=verify, epochs=epochs)
