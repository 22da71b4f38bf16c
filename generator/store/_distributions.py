"""The reader's view of gradients and distributions (``_gradients``): typed, None for a
store without them (older ones, or recorded with ``gradients=False``), so pages hide
their views instead of failing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.errors import StoreError
from generator.store._attrs import RootAttrs
from generator.store._gradients import (
    GRADIENT_FIELDS,
    HISTOGRAM_KINDS,
    gradient_layers,
    gradient_path,
    histogram_layers,
    histogram_path,
)


@dataclass(frozen=True)
class GradientStats:
    """Per epoch (axis 0) and layer with parameters (axis 1, ``layers`` in model order):
    the gradient norm's RMS (``norm``) and maximum (``norm_max``) over the epoch's backward
    passes, the mean update/weight ratio over its optimizer steps (``update_ratio``), all
    NaN where the epoch had no pass (epoch 0), and the number of passes (``passes``)."""

    layers: tuple[str, ...]
    norm: np.ndarray
    norm_max: np.ndarray
    update_ratio: np.ndarray
    passes: np.ndarray
    sampled: np.ndarray


@dataclass(frozen=True)
class Histograms:
    """One kind's histograms: ``edges`` (E, L, B + 1) fixed per layer, ``counts`` (E, L,
    B + 2) with the underflow bin first and the overflow bin last, ``layers`` in model
    order. NaN rows: nothing measured that epoch (gradients at epoch 0)."""

    kind: str
    layers: tuple[str, ...]
    edges: np.ndarray
    counts: np.ndarray

    def of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(E, B + 1) edges and (E, B + 2) counts of layer ``name``."""
        if name not in self.layers:
            raise StoreError(f"no {self.kind} histogram of layer {name!r}")
        index = self.layers.index(name)
        return self.edges[:, index], self.counts[:, index]


class DistributionViews:
    """The ``RunReader`` methods for gradients and histograms (a base class, so the reader
    stays one module); ``attrs`` and ``_read`` are the reader's."""

    attrs: RootAttrs

    def _read(self, path: str, *, index: tuple = (), epochs: bool = True) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - the reader's

    def gradients(self) -> GradientStats | None:
        """The per-layer gradient statistics, or None for a store without them."""
        layers = gradient_layers(self.attrs.layers)
        if self.attrs.gradients is None or not layers:
            return None
        read = {field: self._read(gradient_path(field)) for field in GRADIENT_FIELDS}
        return GradientStats(layers=tuple(layer.name for layer in layers), **read)

    def histograms(self, kind: str) -> Histograms | None:
        """The ``kind`` (weights, activations, gradients) histograms, or None for a store
        without them."""
        if kind not in HISTOGRAM_KINDS:
            raise StoreError(f"unknown histogram {kind!r}; use one of {', '.join(HISTOGRAM_KINDS)}")
        layers = histogram_layers(self.attrs.layers, kind)
        if self.attrs.gradients is None or not layers:
            return None
        return Histograms(
            kind=kind,
            layers=tuple(layer.name for layer in layers),
            edges=self._read(histogram_path(kind, "edges")),
            counts=self._read(histogram_path(kind, "counts")),
        )
