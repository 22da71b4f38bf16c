"""Gradients and distributions (schema v4, optional): what a store holds of them, and where.

A store made with gradients (the default of ``train`` and the ``Recorder``) has the root
attribute ``gradients`` (``GradientSpec``: ``{"bins": B}``) and, per epoch, a handful of
arrays stacked over layers, so 200 layers are still ten arrays (one chunk per epoch each):

- ``gradients/norm``, ``norm_max``, ``update_ratio`` (L,) float32 and ``passes`` (L,)
  int64, one entry per layer with parameters (``gradient_layers``: the layers that have a
  ``weight_change`` too), in model order;
- ``histograms/<kind>/edges`` (L, B + 1) float32 and ``counts`` (L, B + 2) float64 for the
  kinds ``weights`` and ``gradients`` (layers with parameters) and ``activations`` (every
  layer): B bins between fixed edges, plus an underflow bin first and an overflow bin last.

How each is measured is ``generator/record/gradients.py``'s docstring and docs/store.md.
A store without the attribute (older ones, or ``gradients=False``) has none of these
arrays and reads and builds as before: the reader returns None. Pure description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generator.store._checks import is_count
from generator.store._layers import LayerSpec

GRADIENTS, HISTOGRAMS = "gradients", "histograms"
LAYER, BIN, EDGE = "layer", "bin", "edge"  # the axis names of these arrays (after epoch)
# per layer and epoch: the gradient norm's RMS and max over the epoch's backward passes,
# the mean update/weight ratio over its optimizer steps, and how many passes there were
GRADIENT_FIELDS = {
    "norm": "float32",
    "norm_max": "float32",
    "update_ratio": "float32",
    "passes": "int64",
    "sampled": "int64",  # the passes measured (the monitor samples them: record/sampling.py)
}
HISTOGRAM_KINDS = ("weights", "activations", "gradients")
MAX_BINS = 4096


@dataclass(frozen=True)
class GradientSpec:
    """The ``gradients`` root attribute: how many bins each histogram has between its
    edges (the underflow and overflow bins come on top)."""

    bins: int

    def to_json(self) -> dict[str, Any]:
        return {"bins": int(self.bins)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GradientSpec:
        """A ``gradients`` attribute checked first with ``gradient_spec_problem``."""
        return cls(bins=int(data["bins"]))


def gradient_spec_problem(value: Any) -> str | None:
    """What is wrong with the ``gradients`` root attribute, or None."""
    if not isinstance(value, dict) or not is_count(value.get("bins"), 1):
        return "is not an object with a number of bins"
    if value["bins"] > MAX_BINS:
        return f"has {value['bins']} bins, more than {MAX_BINS}"
    return None


def gradient_layers(layers: Sequence[LayerSpec]) -> list[LayerSpec]:
    """The layers with gradients, weights and their histograms: those with parameters."""
    return [layer for layer in layers if layer.params]


def histogram_layers(layers: Sequence[LayerSpec], kind: str) -> list[LayerSpec]:
    """The layers a histogram kind has, in model order: every layer for activations."""
    return list(layers) if kind == "activations" else gradient_layers(layers)


def gradient_path(field: str) -> str:
    """``gradients/<field>``: (E, L) over the layers with parameters."""
    return f"{GRADIENTS}/{field}"


def histogram_path(kind: str, part: str) -> str:
    """``histograms/<kind>/edges`` or ``counts``: (E, L, B + 1) or (E, L, B + 2)."""
    return f"{HISTOGRAMS}/{kind}/{part}"


def gradient_arrays(
    layers: Sequence[LayerSpec], spec: GradientSpec
) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
    """path -> (one epoch's shape, dtype, axis names) of every gradient array; kinds
    without a layer have none (zarr keeps no empty chunk)."""
    arrays: dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]] = {}
    count = len(gradient_layers(layers))
    if count:
        for field, dtype in GRADIENT_FIELDS.items():
            arrays[gradient_path(field)] = ((count,), dtype, (LAYER,))
    for kind in HISTOGRAM_KINDS:
        n = len(histogram_layers(layers, kind))
        if n:
            arrays[histogram_path(kind, "edges")] = ((n, spec.bins + 1), "float32", (LAYER, EDGE))
            arrays[histogram_path(kind, "counts")] = ((n, spec.bins + 2), "float64", (LAYER, BIN))
    return arrays
