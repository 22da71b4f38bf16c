"""The store reader: the only code besides ``store`` that touches zarr, read-only.

Every accessor is clipped to the committed epochs, so a store that a training run is still
appending to reads as the run so far, never as fill values. Arrays come back as numpy with
the shapes of the schema in ``generator.store``; activations keep their stored dtype
(float16 by default) so a whole layer stays small in memory.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from generator.errors import StoreError
from generator.store import (
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
    layers_from_attrs,
)

REQUIRED_ATTRS = ("schema_version", "class_names", "layers", "input_size", "epochs_committed")


def open_group_checked(path: Path, mode: str = "r") -> zarr.Group:
    """Open a run store's root group, or raise a one-line ``StoreError`` saying why not."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store; train one with "
                         "`python -m generator train --out PATH`")
    meta = path / "zarr.json"
    if not meta.is_file():
        raise StoreError(f"{path}: not a zarr store (no zarr.json); pass a run store "
                         "made by `python -m generator train`")
    try:
        node = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}/zarr.json: unreadable ({exc}); the store is damaged") from exc
    _check_attrs(path, node.get("attributes", {}) if isinstance(node, dict) else {})
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises many kinds for a damaged store
        raise StoreError(f"{path}: cannot open the store ({exc})") from exc


def _check_attrs(path: Path, attrs: Any) -> None:
    missing = [key for key in REQUIRED_ATTRS if not isinstance(attrs, dict) or key not in attrs]
    if missing:
        raise StoreError(f"{path}: not a netlapse run store (missing {', '.join(missing)})")
    version = attrs["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema_version {version} is newer than this netlapse "
                         f"reads ({SCHEMA_VERSION}); upgrade netlapse")


class RunReader:
    """Typed, read-only access to the committed epochs of one run store."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._group = open_group_checked(self.path)
        self._attrs: dict[str, Any] = self._group.attrs.asdict()
        self.epochs = int(self._attrs["epochs_committed"])
        self._check_arrays()

    def _check_arrays(self) -> None:
        for path in (f"{PROBES}/images", f"{PROBES}/labels",
                     *(f"{ACTIVATIONS}/{layer.name}" for layer in self.layers)):
            try:
                array = self._group[path]
            except KeyError:
                raise StoreError(f"{self.path}: array {path} is missing; the store is "
                                 "incomplete or damaged") from None
            if path.startswith(ACTIVATIONS) and array.shape[0] < self.epochs:
                raise StoreError(f"{self.path}: {path} holds {array.shape[0]} epochs but "
                                 f"{self.epochs} are marked committed; the store is damaged")

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
        raise StoreError(f"{self.path}: no layer {name!r}; layers are "
                         f"{', '.join(layer.name for layer in self.layers)}")

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
        return int(self._group[f"{PROBES}/labels"].shape[0])

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
        return self._read(f"{ACTIVATIONS}/{name}",
                          index=(slice(0, self.epochs), probe, channel))

    def channel_range(self, name: str, probe: int, start: int, stop: int) -> np.ndarray:
        """(E, stop - start, H, W): a group of channels of one probe over every epoch."""
        return self._read(f"{ACTIVATIONS}/{name}",
                          index=(slice(0, self.epochs), probe, slice(start, stop)))

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
        return {layer.name: self._read(f"{METRICS}/{WEIGHT_CHANGE}/{layer.name}")
                for layer in self.layers if layer.params}

    def channel_stats(self, name: str, stat: str) -> np.ndarray:
        """(E, P, C) float32 per-channel statistic ``stat`` (see ``STAT_FIELDS``)."""
        if stat not in STAT_FIELDS:
            raise StoreError(f"unknown statistic {stat!r}; use one of {', '.join(STAT_FIELDS)}")
        self.layer(name)
        return self._read(f"{METRICS}/{CHANNEL_STATS}/{name}/{stat}")

    # -- plumbing --------------------------------------------------------------------
    def _check_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < self.epochs:
            raise StoreError(f"{self.path}: epoch {epoch} is not committed "
                             f"(epochs 0..{self.epochs - 1} are)")

    def _read(self, path: str, index: tuple = (), epochs: bool = True) -> np.ndarray:
        if epochs and not index:
            index = (slice(0, self.epochs),)
        try:
            return np.asarray(self._group[path][index])
        except KeyError:
            raise StoreError(f"{self.path}: array {path} is missing; the store is "
                             "incomplete or damaged") from None
        except (ValueError, RuntimeError, OSError) as exc:
            raise StoreError(f"{self.path}: cannot read {path} ({exc}); a chunk may be "
                             "truncated or corrupted") from exc


def open_run(path: Path | str) -> RunReader:
    """Open a run store for reading (raises ``StoreError`` with a one-line reason)."""
    return RunReader(path)
