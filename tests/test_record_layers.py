"""Layer discovery for any nn.Module: which layers by default, layers=, and their specs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from generator.model import NetlapseCNN
from generator.record.layers import (
    LayerChoiceError,
    chosen_layers,
    default_layers,
    describe,
    trace,
)
from generator.store._schema import check_layers

EXAMPLE = torch.zeros(1, 3, 32, 32)


def specs_of(model: nn.Module, paths: list[str]):
    found = trace(model, EXAMPLE)
    return {path: describe(model, path, found) for path in paths}


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, list[str]]:
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    return model, default_layers(model, trace(model, EXAMPLE))


@pytest.fixture(scope="module")
def mobilenet() -> tuple[nn.Module, list[str]]:
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=3)
    return model, default_layers(model, trace(model, EXAMPLE))


def test_resnet_records_every_conv_every_residual_block_and_the_logits(resnet):
    model, paths = resnet
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    blocks = [
        n for n, m in model.named_modules() if isinstance(m, torchvision.models.resnet.BasicBlock)
    ]
    assert len(convs) == 20 and len(blocks) == 8
    assert set(paths) == {*convs, *blocks, "fc"}
    # model order: a block comes after its own convs, the logits last
    assert paths.index("layer1.0") > paths.index("layer1.0.conv2")
    assert paths[0] == "conv1" and paths[-1] == "fc"


def test_resnet_layer_descriptions(resnet):
    model, paths = resnet
    found = trace(model, EXAMPLE)
    specs = {path: describe(model, path, found) for path in paths}
    check_layers("test", list(specs.values()))  # the store would accept them
    assert specs["conv1"].kind == "conv" and specs["conv1"].stride == (2, 2)
    assert specs["conv1"].receptive_field == 7  # 7x7 conv
    assert specs["layer1.0.conv1"].receptive_field == 7 + 2 * 2 + 2 * 4  # + maxpool + 3x3
    assert specs["layer2.0.downsample.0"].kernel_shape == (128, 64, 1, 1)
    block = specs["layer2.0"]
    assert (block.kind, block.shape, block.kernel_shape) == ("block", (128, 4, 4), None)
    assert block.parent == "layer2" and block.module_type == "BasicBlock"
    assert specs["fc"].kind == "linear" and specs["fc"].shape == (3,)


def test_mobilenet_depthwise_and_squeeze_excitation(mobilenet):
    model, paths = mobilenet
    found = trace(model, EXAMPLE)
    specs = [describe(model, path, found) for path in paths]
    check_layers("test", specs)
    depthwise = [s for s in specs if s.kind == "conv" and s.groups > 1]
    assert depthwise and all(s.groups == s.channels and s.kernel_shape[1] == 1 for s in depthwise)
    assert any(s.module_type == "SqueezeExcitation" for s in specs)
    assert any(s.module_type == "InvertedResidual" for s in specs)
    assert specs[-1].name == "classifier.3"  # the logits, not the Sequential holding them
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert set(convs) <= set(paths)


def test_a_model_without_blocks_records_every_conv_and_linear():
    model = NetlapseCNN(3, 32, channels=(4, 8), hidden=8)
    paths = default_layers(model, trace(model, EXAMPLE))
    assert paths == ["block1.conv", "block2.conv", "head.hidden.0", "head.logits"]


def test_a_conv_block_holding_one_conv_is_described_as_that_conv():
    model = NetlapseCNN(3, 32, channels=(4, 8), kernel_size=3, hidden=8)
    spec = specs_of(model, ["block2"])["block2"]
    assert spec.kind == "conv" and spec.kernel_shape == (8, 4, 3, 3)
    assert spec.weights == "block2.conv" and spec.receptive_field == 3 + 1 + 2 * 2


def test_layers_by_name_glob_and_type(resnet):
    model, _ = resnet
    found = trace(model, EXAMPLE)
    assert chosen_layers(model, found, ["layer1.0", "fc"]) == ["layer1.0", "fc"]
    assert chosen_layers(model, found, ["layer4.*.conv?"]) == [
        "layer4.0.conv1",
        "layer4.0.conv2",
        "layer4.1.conv1",
        "layer4.1.conv2",
    ]
    blocks = chosen_layers(model, found, [torchvision.models.resnet.BasicBlock])
    assert len(blocks) == 8


def test_a_pattern_that_matches_nothing_is_one_line(resnet):
    model, _ = resnet
    with pytest.raises(LayerChoiceError, match=r"layers='block\*' matches no module") as error:
        chosen_layers(model, trace(model, EXAMPLE), ["block*"])
    assert "\n" not in str(error.value) and "layer1.0.conv1" in str(error.value)


def test_strided_dilated_and_1x1_convs_without_batchnorm():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, 3, dilation=2, padding=2),
        nn.Conv2d(4, 6, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )
    found = trace(model, EXAMPLE)
    paths = default_layers(model, found)
    assert paths == ["0", "2", "3", "6"]
    specs = {p: describe(model, p, found) for p in paths}
    assert specs["2"].dilation == (2, 2) and specs["2"].padding == (2, 2)
    assert [specs[p].receptive_field for p in ("0", "2", "3")] == [3, 3 + 2 * 2 * 2, 11]
    assert specs["3"].kernel_shape == (6, 4, 1, 1)


def test_trace_changes_no_mode():
    model = NetlapseCNN(3, 32, channels=(4, 8), hidden=8).train()
    trace(model, EXAMPLE)
    assert all(module.training for module in model.modules())
