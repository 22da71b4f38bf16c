"""The reader's view of the per-layer statistics and weight changes, in both layouts:
one array per layer and statistic (schema v1-v4), or stacked (v5 on, ``STACKED_FROM``):
a layer's five statistics in one array, the weight changes of all layers in one."""

from __future__ import annotations

import numpy as np

from generator.errors import StoreError
from generator.store._attrs import RootAttrs
from generator.store._schema import (
    STACKED_FROM,
    STAT_FIELDS,
    WEIGHT_CHANGE,
    LayerSpec,
    channel_stat_path,
    channel_stats_path,
    metric_path,
    weight_change_path,
)


class LayerMetricViews:
    """The ``RunReader`` methods for channel statistics and weight changes (a base class,
    so the reader stays one module); ``attrs``, ``layer`` and ``_read`` are the reader's."""

    attrs: RootAttrs

    def _read(self, path: str, *, index: tuple = (), epochs: bool = True) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - the reader's

    def layer(self, name: str) -> LayerSpec:
        raise NotImplementedError  # pragma: no cover - the reader's

    def weight_change(self) -> dict[str, np.ndarray]:
        """layer -> (E,) relative weight change from the previous epoch (NaN at epoch 0)."""
        changed = [layer.name for layer in self.attrs.layers if layer.params]
        if self._stacked and changed:
            stacked = self._read(metric_path(WEIGHT_CHANGE))
            return {name: stacked[:, k] for k, name in enumerate(changed)}
        return {name: self._read(weight_change_path(name)) for name in changed}

    def channel_stats(self, name: str, stat: str) -> np.ndarray:
        """(E, P, C) float32 per-channel statistic ``stat`` (see ``STAT_FIELDS``)."""
        if stat not in STAT_FIELDS:
            raise StoreError(f"unknown statistic {stat!r}; use one of {', '.join(STAT_FIELDS)}")
        self.layer(name)
        if self._stacked:  # one read of the layer's stacked statistics
            return self._read(channel_stats_path(name))[:, STAT_FIELDS.index(stat)]
        return self._read(channel_stat_path(name, stat))

    @property
    def _stacked(self) -> bool:
        """Whether this store stacks its per-layer statistics (schema v5 on)."""
        return self.attrs.schema_version >= STACKED_FROM
