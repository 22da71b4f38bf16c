"""The reference CNN: shapes at several input sizes, layer description, refusals."""

from __future__ import annotations

import pytest
import torch

from generator.errors import OptionError
from generator.model import NetlapseCNN, map_sizes, min_input_size


def test_reference_architecture_at_512() -> None:
    model = NetlapseCNN(6, 512)
    specs = {spec.name: spec for spec in model.layer_specs()}
    assert [s.name for s in model.layer_specs()] == [
        *(f"block{i}" for i in range(1, 9)),
        "hidden",
        "logits",
    ]
    assert specs["block1"].shape == (16, 512, 512)
    assert specs["block8"].shape == (256, 4, 4)
    assert specs["block2"].kernel_shape == (32, 16, 5, 5)
    assert model.head.hidden[0].in_features == 256 * 2 * 2  # the reference flatten size
    assert specs["block1"].receptive_field == 5
    assert specs["block2"].receptive_field == 5 + 1 + 4 * 2
    assert specs["logits"].shape == (6,)


@pytest.mark.parametrize("size", [64, 100, 128, 256])
def test_other_input_sizes_run(size: int) -> None:
    model = NetlapseCNN(4, size).eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, size, size))
    assert logits.shape == (2, 4)
    assert model.layer_specs()[7].shape[1] == map_sizes(size, 8)[-1]


def test_shallower_networks_and_other_kernels() -> None:
    model = NetlapseCNN(3, 32, channels=(8, 16, 32), kernel_size=3).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    assert [s.name for s in model.layer_specs()] == [
        "block1",
        "block2",
        "block3",
        "hidden",
        "logits",
    ]


def test_declared_shapes_match_a_forward_pass() -> None:
    model = NetlapseCNN(5, 96).eval()
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: outputs.__setitem__(n, o.shape))
        for n, m in model.recorded_modules().items()
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, 96, 96))
    for hook in hooks:
        hook.remove()
    for spec in model.layer_specs():
        assert tuple(outputs[spec.name][1:]) == spec.shape
        module = model.recorded_modules()[spec.name]
        assert spec.params == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_classes": 1}, "at least 2 classes"),
        ({"input_size": 32}, "too small for 8 blocks"),
        ({"kernel_size": 4}, "odd positive"),
        ({"channels": ()}, "positive integers"),
    ],
)
def test_impossible_architectures_are_refused(kwargs, message) -> None:
    settings = {"n_classes": 3, "input_size": 128, **kwargs}
    with pytest.raises(OptionError, match=message):
        NetlapseCNN(**settings)


def test_min_input_size_grows_with_depth() -> None:
    assert min_input_size(8) == 64
    assert min_input_size(10) == 256
