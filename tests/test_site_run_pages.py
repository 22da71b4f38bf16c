"""The run page's architecture table: layers in model order, grouped by their block, for
any model (no layer name is assumed: only module paths and kinds)."""

from __future__ import annotations

from generator.site.run_pages import group_layers, groups_text, kernel_text, pair_text
from generator.store import LayerSpec


def conv(name: str, parent: str, kernel: tuple[int, ...], *, groups: int = 1) -> LayerSpec:
    return LayerSpec(
        name,
        "conv",
        (kernel[0], 4, 4),
        kernel,
        module=name,
        module_type="Conv2d",
        parent=parent,
        groups=groups,
        stride=(1, 1),
    )


def block(name: str, parent: str, module_type: str) -> LayerSpec:
    return LayerSpec(name, "block", (8, 4, 4), module=name, module_type=module_type, parent=parent)


def names(groups: list) -> list[tuple[str, list[str]]]:
    return [(name, [layer.name for layer in layers]) for name, _, layers in groups]


def test_a_residual_block_holds_its_convs_its_shortcut_and_its_output() -> None:
    layers = [
        conv("conv1", "", (8, 3, 7, 7)),
        conv("layer1.0.conv1", "layer1.0", (8, 8, 3, 3)),
        conv("layer1.0.conv2", "layer1.0", (8, 8, 3, 3)),
        conv("layer1.0.downsample.0", "layer1.0.downsample", (8, 8, 1, 1)),
        block("layer1.0", "layer1", "BasicBlock"),
        conv("layer1.1.conv1", "layer1.1", (8, 8, 3, 3)),
        block("layer1.1", "layer1", "BasicBlock"),
        LayerSpec("fc", "linear", (3,), module="fc", module_type="Linear", parent=""),
    ]
    groups = group_layers(layers)
    assert names(groups) == [
        ("top level", ["conv1"]),
        ("layer1.0", ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.downsample.0", "layer1.0"]),
        ("layer1.1", ["layer1.1.conv1", "layer1.1"]),
        ("top level", ["fc"]),
    ]
    assert groups[1][1] == "BasicBlock"


def test_nested_blocks_group_under_the_outermost_one() -> None:
    # MobileNetV3: an inverted-residual block holding a squeeze-excitation block
    layers = [
        conv("features.1.block.0.0", "features.1.block.0", (16, 1, 3, 3), groups=16),
        conv("features.1.block.1.fc1", "features.1.block.1", (8, 16, 1, 1)),
        block("features.1.block.1", "features.1.block", "SqueezeExcitation"),
        block("features.1", "features", "InvertedResidual"),
        conv("features.10.block.0.0", "features.10.block.0", (16, 16, 1, 1)),
        LayerSpec("classifier.3", "linear", (3,), module="classifier.3", parent="classifier"),
    ]
    assert names(group_layers(layers)) == [
        (
            "features.1",
            [
                "features.1.block.0.0",
                "features.1.block.1.fc1",
                "features.1.block.1",
                "features.1",
            ],
        ),
        ("features.10.block.0", ["features.10.block.0.0"]),  # not inside features.1
        ("classifier", ["classifier.3"]),
    ]


def test_the_table_names_depthwise_convs_and_kernels() -> None:
    depthwise = conv("dw", "", (16, 1, 5, 5), groups=16)
    assert groups_text(depthwise) == "16 (depthwise)" and kernel_text(depthwise) == "5 × 5"
    assert groups_text(conv("g", "", (16, 4, 3, 3), groups=4)) == "4"
    output = block("layer1.0", "layer1", "BasicBlock")
    assert kernel_text(output) == groups_text(output) == pair_text(output.stride) == "—"
    assert pair_text((2, 2)) == "2" and pair_text((2, 1)) == "2 × 1"
