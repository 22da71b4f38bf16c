"""Which layers a build animates: a deep net's default focus (block outputs, first and last
conv, output), found from the stored layer specs alone; --layers patterns; --all-layers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from generator.build.plan import plan_run
from generator.config import BuildConfig
from generator.errors import OptionError
from generator.site.manifest import ArtefactKind
from generator.store import LayerSpec, open_run
from tests.conftest import TINY_LAYERS, deep_layers, make_store


def test_a_deep_nets_focus_is_its_blocks_first_and_last_conv_and_output() -> None:
    from generator.build.selection import focus_layers

    layers = deep_layers()  # 110 layers: stem, 3 stages x 12 blocks of 2 convs, logits
    blocks = [f"stages.{s}.{b}" for s in range(3) for b in range(12)]
    assert focus_layers(layers) == ["stem", *blocks[:-1], "stages.2.11.conv2", blocks[-1], "logits"]
    # a small net (the demo's 10 layers) keeps every layer, as before
    assert focus_layers(TINY_LAYERS) == [layer.name for layer in TINY_LAYERS]
    # a block inside a recorded block (a squeeze-excitation) is not an output of its own
    inner = LayerSpec("stages.0.0.se", "block", (4, 1, 1), None, 8, module="stages.0.0.se")
    nested = [*layers[:3], inner, *layers[3:]]
    assert "stages.0.0.se" not in focus_layers(nested)
    # names never matter: the same net with other names has the same focus, renamed
    renamed = [
        LayerSpec(f"x{i}", s.kind, s.shape, s.kernel_shape, module=f"m{i}", parent="")
        for i, s in enumerate(layers)
    ]
    flat = focus_layers(renamed)  # no module nests another: every block is outermost
    assert flat == [
        f"x{i}" for i, s in enumerate(layers) if s.kind == "block" or i in (0, 107, 109)
    ]


def test_a_deep_net_without_blocks_shows_its_stage_outputs() -> None:
    from generator.build.selection import focus_layers

    convs = [
        LayerSpec(f"features.{i}", "conv", (4, 4, 4), (4, 4, 3, 3), parent=f"stage{i // 10}")
        for i in range(40)
    ]
    chosen = focus_layers(convs)
    assert chosen == ["features.0", "features.9", "features.19", "features.29", "features.39"]


def test_spread_order_keeps_the_ends_then_thins_evenly() -> None:
    from generator.build.selection import spread_order

    for n in (0, 1, 2, 5, 17, 64):
        assert sorted(spread_order(n)) == list(range(n))
    order = spread_order(17)
    assert order[:3] == [0, 16, 8]
    assert set(order[:5]) == {0, 4, 8, 12, 16}


def test_layers_patterns_and_all_layers() -> None:
    from generator.build.selection import selected_layers

    run = SimpleNamespace(layers=deep_layers(2, 6), path=Path("deep.zarr"))
    chosen = selected_layers(run, ("stages.1.*", "stem"), all_layers=False)
    assert chosen[0] == "stem" and len(chosen) == 1 + 6 * 3
    assert selected_layers(run, None, all_layers=True) == [s.name for s in run.layers]
    with pytest.raises(OptionError) as refused:
        selected_layers(run, ("stage9.*",), all_layers=False)
    assert "--layers 'stage9.*' matches no layer of deep.zarr" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_default_plan_of_a_deep_store_names_what_it_left_out(tmp_path: Path) -> None:
    store = tmp_path / "deep.zarr"
    make_store(store, epochs=2, layers=deep_layers(2, 6))  # 38 layers
    run = open_run(store)
    plan = plan_run(run, BuildConfig(stores=(store,)))
    animated = {a.layer for a in plan.artefacts if a.layer is not None}
    blocks = {s.name for s in run.layers if s.kind == "block"}
    assert animated == {*blocks, "stem", "stages.1.5.conv2", "logits"}
    assert {a.kind for a in plan.artefacts} >= {ArtefactKind.GRID, ArtefactKind.PROBE}
    thin, left = plan.left_out
    assert set(left.layers) == {s.name for s in run.layers} - animated
    assert "--all-layers" in left.option and "--layers" in left.option
    # the block outputs show the first probe; the ends show every probe
    assert set(thin.layers) == blocks and "probes 2-2" in thin.what
    assert {a.probe for a in plan.artefacts if a.layer in blocks} == {0}
    assert {a.probe for a in plan.artefacts if a.layer == "stem"} == {0, 1, None}
    every = plan_run(run, BuildConfig(stores=(store,), all_layers=True))
    assert every.left_out == ()
    assert len(every.artefacts) == len(plan.artefacts) + left.artefacts + thin.artefacts
    some = plan_run(run, BuildConfig(stores=(store,), layers=("stages.0.0.*",)))
    assert {a.layer for a in some.artefacts} - {None} == {"stages.0.0.conv1", "stages.0.0.conv2"}
    assert some.left_out == ()  # the others are carried over from an earlier build
