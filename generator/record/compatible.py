"""The one compatibility check of a resumed store against the settings of this run.

Every epoch of a store is one network seen on one set of probes: a run that continues a
store must record the same layers, classes, input size, activation dtype and feature
visualizations, or its epochs would not line up with the stored ones. Both the
``Recorder`` (``resume=True``) and ``train --resume`` ask ``first_difference`` and word
the refusal in their own terms (a parameter, a command-line option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from generator.store import FeatvizSpec, LayerSpec, RootAttrs

# the fields of ``Recording``, in the order they are compared
Setting = Literal["class_names", "input_size", "layers", "activation_dtype", "featviz"]


@dataclass(frozen=True)
class Recording:
    """What every epoch of one store shares: the class names (the confusion's and the
    probabilities' axes), the probes' input size, the recorded layers, how activations are
    stored, and the feature visualizations (None = none)."""

    class_names: tuple[str, ...]
    input_size: int
    layers: tuple[LayerSpec, ...]
    activation_dtype: str
    featviz: FeatvizSpec | None = None

    @classmethod
    def of_store(cls, attrs: RootAttrs) -> Recording:
        """The recording a store describes, from its root attributes."""
        return cls(
            class_names=attrs.class_names,
            input_size=attrs.input_size,
            layers=attrs.layers,
            activation_dtype=attrs.activation_dtype,
            featviz=attrs.featviz,
        )

    def first_difference(self, stored: Recording) -> Setting | None:
        """The first setting (in ``Setting`` order) in which this run differs from ``stored``;
        None when it can continue the store."""
        for setting in get_args(Setting):
            if getattr(self, setting) != getattr(stored, setting):
                return setting
        return None
