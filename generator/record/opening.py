"""What a Recorder is asked to record (``RecorderSetup``) and the store it opens for it:
a new one, or an existing one reopened and checked to continue (``resume``).

The Recorder's two doors (its public constructor, and ``train``'s private one) each turn
their arguments into one ``RecorderSetup``; everything after that is shared. A store is
never overwritten, and a reopened store must be the same recording
(``compatible.Recording``) on the same probe images; on a refusal the lock is released
and the store is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from generator.defaults import GRADIENTS, HISTOGRAM_BINS, KERNEL_DTYPE, OVERHEAD
from generator.errors import ModelOutputError, OptionError, StoreError
from generator.record.compatible import Recording
from generator.record.examples import ExamplePool
from generator.record.featviz import FeatureVisualizer, FeatvizSettings, follow_store
from generator.record.layers import Trace
from generator.record.outputs import OutputChoice
from generator.record.probes import ProbeSet, Transform
from generator.store import (
    ACTIVATION_DTYPES,
    ExamplePoolRecord,
    GradientSpec,
    LayerSpec,
    StoreLocation,
    StoreWriter,
    discard_created,
)


@dataclass(frozen=True)
class RecorderSetup:
    """Everything a Recorder records, checked: where, on which probes, which layers and
    classes, how activations are stored, the ``training`` settings a new store keeps, the
    feature visualizations, the dataset examples (None = off), the live gallery and where
    the logits are in the model's output (``pick_logits``)."""

    out: StoreLocation
    probes: ProbeSet
    class_names: list[str]
    layers: list[LayerSpec]
    transform: Transform
    activation_dtype: str
    training: Mapping[str, Any]
    featviz: FeatvizSettings
    pool: ExamplePool | None = None
    site: str | Path | None = None
    output: OutputChoice = None  # where the logits are in the model's output
    kernel_dtype: str = KERNEL_DTYPE  # how a new store keeps conv kernels
    overhead: float | None = OVERHEAD  # recording's share of training time (None: no limit)
    gradients: bool = GRADIENTS  # gradient norms and histograms (a resumed store decides)

    def recording(self, featviz: FeatureVisualizer | None) -> Recording:
        """What every epoch of this run shares (``featviz``: the visualizer in use)."""
        return Recording(
            class_names=tuple(self.class_names),
            input_size=self.probes.size,
            layers=tuple(self.layers),
            activation_dtype=self.activation_dtype,
            featviz=featviz.spec if featviz else None,
        )


def check_activation_dtype(activation_dtype: str, *, option: str = "activation_dtype") -> None:
    if activation_dtype not in ACTIVATION_DTYPES:
        raise OptionError(
            f"{option}={activation_dtype!r}: use one of {', '.join(ACTIVATION_DTYPES)}"
        )


def checked_class_names(
    output_shape: tuple[int, ...] | None, given: Sequence[str] | None, probes: ProbeSet
) -> list[str]:
    """The class names, checked against the model's logits (N, K)."""
    if output_shape is None or len(output_shape) != 1 or output_shape[0] < 2:
        shown = "no tensor" if output_shape is None else f"{tuple(output_shape)} per probe"
        raise ModelOutputError(
            f"the model returns {shown}; netlapse records "
            "classifiers that return logits (N, classes) with at least 2 classes"
        )
    k = output_shape[0]
    if isinstance(given, str | bytes):
        raise OptionError(f"class_names={given!r} is one string; pass a list of {k} names")
    labels = probes.labels
    outside = labels[(labels < -1) | (labels >= k)]
    if outside.size:
        raise OptionError(
            f"probe_labels holds {outside[0]}, not a class of the model's {k}; pass class "
            f"indices 0..{k - 1} (-1 = unknown)"
        )
    names = list(given) if given is not None else probes.class_names
    if names is None:
        return [f"class {i}" for i in range(k)]
    if len(names) != k:
        raise ModelOutputError(
            f"class_names has {len(names)} names but the model returns {k} logits; pass {k} names"
        )
    return [str(name) for name in names]


def check_single_calls(found: Trace, layers: Sequence[LayerSpec], pool: object) -> None:
    """Dataset examples hook a conv module for its whole forward: one called more than
    once per forward (recorded as ``name#k``) would mix its calls' maps; one line."""
    if pool is None:
        return
    for spec in layers:
        path = spec.module or spec.name
        if spec.is_conv and f"{path}#2" in found.shapes:
            raise OptionError(
                f"example_pool: module {path!r} runs more than once per forward, so its "
                f"dataset examples would mix its calls; pass example_pool=None or layers= "
                f"without {spec.name!r}"
            )


def recorded_settings(model: nn.Module, training: Mapping[str, Any]) -> dict[str, Any]:
    """The ``training`` attribute of a new store: the model's class and who recorded it,
    under the settings the loop passed (a ``train`` run names its ``--model`` there)."""
    return {"model": type(model).__name__, "recorded_by": "generator.Recorder", **training}


def refuse_existing(setup: RecorderSetup) -> None:
    """One line when ``setup.out`` is taken: a run is never overwritten."""
    if setup.out.exists():
        raise StoreError(
            f"{setup.out}: already exists; pass resume=True to continue that run or "
            "choose another out= (a run is never overwritten)"
        )


def remove_created(setup: RecorderSetup) -> None:
    """Delete the store this Recorder has just created and failed to fill, on disk or in
    object storage (never one that existed before it: only called after
    ``refuse_existing`` passed)."""
    discard_created(setup.out)


def create_store(setup: RecorderSetup, featviz: FeatureVisualizer | None) -> StoreWriter:
    """A new store for ``setup``, with no epoch yet; refuses a place already taken."""
    refuse_existing(setup)
    probes, pool = setup.probes, setup.pool
    return StoreWriter.create(
        setup.out,
        class_names=setup.class_names,
        layers=setup.layers,
        input_size=probes.size,
        training=setup.training,
        probe_images=probes.images,
        probe_labels=probes.labels,
        probe_sources=probes.sources,
        activation_dtype=setup.activation_dtype,
        kernel_dtype=setup.kernel_dtype,
        featviz=featviz.spec if featviz else None,
        example_pool=None if pool is None else ExamplePoolRecord(*pool.stored()),
        probe_display=probes.display,
        gradients=GradientSpec(HISTOGRAM_BINS) if setup.gradients else None,
    )


def reopen_store(
    setup: RecorderSetup, featviz: FeatureVisualizer | None, opened: StoreWriter | None
) -> tuple[StoreWriter, FeatureVisualizer | None]:
    """The existing store (``opened`` already, or opened here) and the feature visualizer
    to continue it with, if the store records this model on these probes; else one line,
    with the lock released."""
    writer = opened or StoreWriter.open_for_resume(setup.out)
    try:
        stored = Recording.of_store(writer.attrs)
        if setup.featviz.layers is None:  # featviz_layers not given: continue as the store did
            featviz = follow_store(featviz, stored.featviz)
        different = setup.recording(featviz).first_difference(stored)
        if different is not None:
            raise StoreError(
                f"{setup.out}: resume=True with a different {different.replace('_', ' ')} "
                "than the store was recorded with; pass the same model, probes and "
                "class_names, or another out="
            )
        if not np.array_equal(writer.probe_images(), setup.probes.images):
            raise StoreError(
                f"{setup.out}: resume=True with other probe images than the store's; "
                "pass the same probes"
            )
    except BaseException:
        writer.close()
        raise
    return writer, featviz
