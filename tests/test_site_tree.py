"""The module tree of a deep network (site/tree.py), its chart groups, and the charts that
stay readable at 100+ layers (site/figures.py, site/similarity.py)."""

from __future__ import annotations

import re

import numpy as np

from generator.analysis.cka import RunSimilarity
from generator.site.figures import change_chart
from generator.site.similarity import stage_similarity
from generator.site.tree import MAX_SERIES, chart_groups, module_tree
from generator.store import LayerSpec


def conv(path: str, side: int = 4, channels: int = 4, kernel: int = 1) -> LayerSpec:
    parent = path.rpartition(".")[0]
    return LayerSpec(
        path,
        "conv",
        (channels, side, side),
        (channels, 4, kernel, kernel),
        16 * kernel * kernel,
        module=path,
        module_type="Conv2d",
        parent=parent,
    )


def block(path: str, side: int = 4, channels: int = 4) -> LayerSpec:
    return LayerSpec(
        path,
        "block",
        (channels, side, side),
        None,
        48,
        module=path,
        module_type="Bottleneck",
        parent=path.rpartition(".")[0],
    )


def deep_layers(stages: int = 4, blocks: int = 8) -> list[LayerSpec]:
    """A DenseNet-shaped net under a ``features`` wrapper: a stem, ``stages`` dense stages
    of ``blocks`` blocks (two convs and the block's output each, the maps halving per
    stage down to 1×1), a transition conv between stages, a pooled 1×1 map and a linear
    classifier; 2 + stages * (3 * blocks + 1) layers (102 by default)."""
    layers = [conv("features.conv0", 8, kernel=3)]
    for s in range(1, stages + 1):
        side = max(1, 8 >> s)
        for b in range(1, blocks + 1):
            base = f"features.denseblock{s}.denselayer{b}"
            layers += [conv(f"{base}.conv1", side), conv(f"{base}.conv2", side, kernel=3)]
            layers.append(block(base, side))
        if s < stages:
            layers.append(conv(f"features.transition{s}.conv", side))
    pool = LayerSpec("pool", "block", (4, 1, 1), None, 0, module="pool", parent="")
    head = LayerSpec("classifier", "linear", (3,), None, 15, module="classifier", parent="")
    return [*layers, pool, head]


def test_a_wrapper_holding_the_net_is_opened_into_stages_and_blocks() -> None:
    layers = deep_layers()
    tree = module_tree(layers)
    assert [n.label for n in tree.children] == [
        "conv0",
        "denseblock1",
        "transition1.conv",  # a record-less single-child chain, merged
        "denseblock2",
        "transition2.conv",
        "denseblock3",
        "transition3.conv",
        "denseblock4",
        "pool",
        "classifier",
    ]
    stage = tree.children[1]
    assert stage.path == "features.denseblock1" and stage.layer is None
    first_block = stage.children[0]
    assert first_block.label == "denselayer1" and first_block.layer is not None
    assert [c.label for c in first_block.children] == ["conv1", "conv2"]
    # every layer once, in model order (a block's output after its convs)
    assert [la.name for la in tree.layers()] == [la.name for la in layers]
    assert max(depth for depth, _ in tree.walk()) == 3  # model -> stage -> block -> layer


def test_a_flat_net_keeps_its_top_level_and_names_without_module_paths() -> None:
    resnet = [
        conv("conv1", 8, kernel=7),
        conv("layer1.0.conv1"),
        conv("layer1.0.downsample.0"),
        block("layer1.0"),
        conv("layer1.1.conv1"),
        block("layer1.1"),
        conv("layer2.0.conv1"),
        block("layer2.0"),
        LayerSpec("fc", "linear", (3,), None, 15, module="fc"),
    ]
    tree = module_tree(resnet)
    # no wrapper holds most of it: the top level stays; a stage of one block is merged
    assert [n.label for n in tree.children] == ["conv1", "layer1", "layer2.0", "fc"]
    assert [c.label for c in tree.children[1].children[0].children] == ["conv1", "downsample.0"]
    legacy = [LayerSpec("block1", "conv", (4, 8, 8), (4, 3, 3, 3), 120), *resnet[-1:]]
    assert [n.path for n in module_tree(legacy).children] == ["block1", "fc"]


def test_chart_groups_never_exceed_a_dozen_and_cover_every_layer_in_order() -> None:
    for stages, blocks in ((4, 8), (13, 2), (30, 1), (1, 40)):
        layers = deep_layers(stages, blocks)
        groups = chart_groups(module_tree(layers))
        assert 1 < len(groups) <= MAX_SERIES, (stages, blocks, len(groups))
        assert [la.name for _, group in groups for la in group] == [la.name for la in layers]
    few = deep_layers(1, 2)[:MAX_SERIES]
    assert [label for label, _ in chart_groups(module_tree(few))] == [la.name for la in few]
    joined = chart_groups(module_tree(deep_layers(13, 2)))
    assert any(" … " in label for label, _ in joined)  # neighbouring stages joined


def test_the_change_chart_of_174_layers_draws_at_most_a_dozen_lines() -> None:
    layers = deep_layers(4, 14)
    assert len(layers) > 170
    change = {
        la.name: np.r_[np.nan, np.linspace(0.1, 0.01, 3) * (i + 1)] for i, la in enumerate(layers)
    }
    groups = [
        (label, [change[la.name] for la in group])
        for label, group in chart_groups(module_tree(layers))
    ]
    chart = change_chart(groups, title="Weight change per stage")
    lines = len(re.findall(r"<polyline", str(chart.svg)))
    assert 1 < lines <= MAX_SERIES
    assert "denseblock1 (mean of 42)" in str(chart.svg)  # 14 blocks x 3 layers
    stage = chart_groups(module_tree(layers).children[1])  # a stage: labels below it
    labels = [label for label, _ in stage]
    assert labels[:2] == ["denselayer1 … denselayer2", "denselayer3 … denselayer4"]
    assert "the mean of its layers" in chart.caption


def test_stage_similarity_draws_one_row_per_stage() -> None:
    layers = deep_layers()
    n, epochs = len(layers), 4
    to_final = np.tile([0.5, 0.95, 0.97, 1.0], (n, 1))
    to_final[0] = np.nan  # a layer without a number does not sink its stage's mean
    numbers = RunSimilarity(
        layers=tuple(la.name for la in layers),
        to_final=to_final,
        between=np.eye(n),
        settle=(1,) * n,
        samples=tuple(range(10, 10 + n)),
        between_samples=64,
        grid=4,
        threshold=0.9,
    )
    groups = chart_groups(module_tree(layers))
    drawn = stage_similarity(numbers, groups)
    assert (
        drawn.to_final.shape == (len(groups), epochs) and drawn.between.shape == (len(groups),) * 2
    )
    assert np.allclose(drawn.to_final[1], to_final[1]) and np.isnan(drawn.to_final[0]).all()
    assert drawn.settle[1] == 1 and drawn.samples[1] == 11
    sizes = [len(group) for _, group in groups]
    assert np.isclose(drawn.between[1, 1], 1 / sizes[1])  # the mean of an identity block
