"""The one compatibility check of a resumed store (``record.compatible.Recording``), which
the Recorder's ``resume=True`` and ``train --resume`` both word in their own terms."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from generator.model import NetlapseCNN
from generator.record import Recording, Setting
from generator.store import FeatvizSpec
from generator.train.resume import COMPATIBLE

LAYERS = tuple(NetlapseCNN(3, 64).layer_specs())
FEATVIZ = FeatvizSpec(size=48, channels={"block1": 8}, steps=8, first_steps=32)


def recording() -> Recording:
    return Recording(
        class_names=("a", "b", "c"),
        input_size=64,
        layers=LAYERS,
        activation_dtype="float16",
        featviz=FEATVIZ,
    )


def test_the_same_recording_can_continue_the_store() -> None:
    assert recording().first_difference(recording()) is None


@pytest.mark.parametrize(
    ("changed", "setting"),
    [
        ({"class_names": ("a", "b", "d")}, "class_names"),
        ({"input_size": 96}, "input_size"),
        ({"layers": LAYERS[:-1]}, "layers"),
        ({"activation_dtype": "float32"}, "activation_dtype"),
        ({"featviz": None}, "featviz"),
        ({"input_size": 96, "layers": LAYERS[:-1]}, "input_size"),  # the first one is named
    ],
)
def test_the_first_difference_is_named(changed: dict[str, object], setting: str) -> None:
    ours = replace(recording(), **changed)
    assert ours.first_difference(recording()) == setting


def test_train_words_every_setting() -> None:
    """``train --resume`` names each setting by its options; none may be missing."""
    assert set(COMPATIBLE) == set(get_args(Setting))
