"""The reference CNN: shapes at several input sizes, layer description, refusals."""

from __future__ import annotations

import pytest
import torch

from generator.errors import OptionError
from generator.model import NetlapseCNN, describe_layer, map_sizes, min_input_size


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


# -- describing the layers of any model ------------------------------------------------------
def test_a_depthwise_strided_conv_is_described_from_the_module() -> None:
    conv = torch.nn.Conv2d(8, 8, (3, 5), stride=2, dilation=(1, 2), padding=(1, 4), groups=8)
    spec = describe_layer("layer1.0.conv1", conv, output_shape=(8, 16, 16))
    assert (spec.name, spec.kind, spec.parent, spec.module_type) == (
        "layer1.0.conv1",
        "conv",
        "layer1.0",
        "Conv2d",
    )
    assert spec.kernel_shape == (8, 1, 3, 5)  # depthwise: I = 1
    assert (spec.groups, spec.stride, spec.dilation, spec.padding) == (8, (2, 2), (1, 2), (1, 4))
    assert spec.weights == "layer1.0.conv1" and spec.params == 8 * 15 + 8


def test_same_and_valid_padding_become_sizes() -> None:
    same = torch.nn.Conv2d(3, 4, 5, padding="same", dilation=2)
    valid = torch.nn.Conv2d(3, 4, 3, padding="valid")
    assert describe_layer("a", same, output_shape=(4, 9, 9)).padding == (4, 4)
    assert describe_layer("b", valid, output_shape=(4, 7, 7)).padding == (0, 0)


def test_a_linear_layer_has_no_kernel_and_no_geometry() -> None:
    spec = describe_layer("classifier", torch.nn.Linear(10, 3), output_shape=(3,))
    assert (spec.kind, spec.kernel_shape, spec.stride, spec.parent) == ("linear", None, None, "")
    assert spec.params == 33


@pytest.mark.parametrize(
    "module, shape, message",
    [
        (
            torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.Conv2d(3, 3, 3)),
            (3, 4, 4),
            "0, x.1",
        ),
        (torch.nn.ReLU(), (3, 4, 4), "holds none"),
        (torch.nn.Linear(4, 2), (2, 5), "has 1 dimensions"),
    ],
)
def test_layers_that_cannot_be_described_say_why(module, shape, message) -> None:
    with pytest.raises(OptionError, match=message):
        describe_layer("x", module, output_shape=shape)


def test_the_reference_layers_say_where_they_sit() -> None:
    model = NetlapseCNN(4, 64)
    specs = {spec.name: spec for spec in model.layer_specs()}
    assert (specs["block3"].module, specs["block3"].weights) == ("block3", "block3.conv")
    assert (specs["block3"].parent, specs["block3"].module_type) == ("", "ConvBlock")
    assert (specs["hidden"].module, specs["hidden"].parent) == ("head.hidden", "head")
    assert specs["block2"].stride == (1, 1) and specs["block2"].padding == (2, 2)
    modules = dict(model.named_modules())
    for spec in specs.values():
        assert model.recorded_modules()[spec.name] is modules[spec.module]
        assert model.weights()[spec.name] is modules[spec.weights].weight


# -- any classifier by name (build_model) ----------------------------------------------------
def test_build_model_builds_untrained_torchvision_classifiers():
    from torch import nn

    from generator.model import build_model

    model = build_model("resnet18", num_classes=5)
    assert isinstance(model, nn.Module) and model.fc.out_features == 5
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("resnet1800", "not a torchvision classifier; list the names with"),
        ("fasterrcnn_resnet50_fpn", "not a torchvision classifier"),  # a detector
        ("no_such_pkg.models:make", "cannot import no_such_pkg.models"),
        ("generator.model:no_such_factory", "has no function 'no_such_factory'"),
        ("generator.model:min_input_size", "must accept num_classes="),
        ("generator.model:map_sizes", "must accept num_classes="),
    ],
)
def test_build_model_bad_names_are_one_line(name, message):
    from generator.model import build_model

    with pytest.raises(OptionError, match=message) as error:
        build_model(name, num_classes=3)
    assert "\n" not in str(error.value)


def test_build_model_calls_a_user_factory(tmp_path, monkeypatch):
    from generator.model import build_model

    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def make(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "def not_a_model(num_classes):\n"
        "    return 'model'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_model("my_models:make", num_classes=4)[2].out_features == 4
    with pytest.raises(OptionError, match="returned str, not a torch.nn.Module"):
        build_model("my_models:not_a_model", num_classes=4)


def test_a_factory_that_raises_is_one_line(tmp_path, monkeypatch):
    from generator.model import build_model

    (tmp_path / "broken_models.py").write_text(
        "def make(num_classes):\n    raise KeyError('depth')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        OptionError,
        match=r"--model broken_models:make: make\(num_classes=4\) "
        "raised KeyError",
    ) as error:
        build_model("broken_models:make", num_classes=4)
    assert "\n" not in str(error.value)
    with pytest.raises(OptionError, match="--model :make: cannot import"):
        build_model(":make", num_classes=4)


def test_block1_starts_at_pytorchs_default_init() -> None:
    """Issue 11.1: the reference CNN used to start block 1 at 0.1x its default init, which
    changed the user's training (a 10x learning rate for block 1 under Adam)."""
    torch.manual_seed(0)
    model = NetlapseCNN(3, 64)
    torch.manual_seed(0)
    default = torch.nn.Conv2d(3, model.channels[0], model.kernel_size, padding=2)
    assert torch.equal(model.block1.conv.weight, default.weight)
    assert torch.equal(model.block1.conv.bias, default.bias)
