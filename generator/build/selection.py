"""Which layers a build animates: the default focus of a deep net, and ``--layers`` patterns.

A net of up to ``defaults.ALL_LAYERS_UP_TO`` recorded layers gets every layer animated, as
always. A deeper one (a densenet121 records 179 layers, most of them convs inside blocks)
gets its animations where people look: the output of every outermost block, the first and
the last conv and the model's output. Blocks are found from the stored layer specs alone
(the recorder's ``block`` kind: a module with its own forward around convs, and module
paths for nesting), never from a model's or layer's name. Every layer keeps its page; the
rest of the animations come with ``--layers PATTERNS`` or ``--all-layers``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from generator import defaults
from generator.errors import OptionError
from generator.store import LayerSpec, RunReader


def focus_layers(layers: Sequence[LayerSpec]) -> list[str]:
    """The layers a default build animates, in model order (see the module docstring)."""
    if len(layers) <= defaults.ALL_LAYERS_UP_TO:
        return [layer.name for layer in layers]
    convs = [layer.name for layer in layers if layer.is_conv]
    blocks = outermost_blocks(layers) or stage_outputs(layers)
    chosen = {*blocks, *convs[:1], *convs[-1:], layers[-1].name}
    return [layer.name for layer in layers if layer.name in chosen]


def first_probe_only(layers: Sequence[LayerSpec]) -> set[str]:
    """Of a deep net's default focus, the layers drawn for the first probe alone: its
    block outputs (dozens of them; every probe's grid of each is what made a convnext's
    site 60 MB), while the first and last conv and the output show every probe."""
    if len(layers) <= defaults.ALL_LAYERS_UP_TO:
        return set()
    convs = [layer.name for layer in layers if layer.is_conv]
    ends = {*convs[:1], *convs[-1:], layers[-1].name}
    return set(outermost_blocks(layers) or stage_outputs(layers)) - ends


def outermost_blocks(layers: Sequence[LayerSpec]) -> list[str]:
    """Recorded ``block`` layers that no other recorded block holds (a ResNet's
    ``layer1.0``, not the squeeze-excitation inside a MobileNet block)."""
    blocks = [layer for layer in layers if layer.kind == "block"]
    return [
        block.name
        for block in blocks
        if not any(other is not block and _inside(block, other) for other in blocks)
    ]


def stage_outputs(layers: Sequence[LayerSpec]) -> list[str]:
    """For a net without blocks: the last layer of each run of layers sharing a parent
    module (a VGG's stages end in its pools' inputs; a flat net has one run: its end)."""
    last: dict[str, str] = {}
    for layer in layers:
        last[layer.parent or ""] = layer.name
    return list(last.values())


def _inside(layer: LayerSpec, block: LayerSpec) -> bool:
    path, outer = layer.module or layer.name, block.module or block.name
    return path == outer or path.startswith(outer + ".")


def selected_layers(
    run: RunReader, patterns: tuple[str, ...] | None, *, all_layers: bool
) -> list[str]:
    """The layers this build animates: ``--layers`` patterns (names or ``fnmatch`` globs,
    a pattern that matches nothing is refused naming the layers there are), else every
    layer with ``--all-layers``, else the focus."""
    names = [layer.name for layer in run.layers]
    if patterns is None:
        return names if all_layers else focus_layers(run.layers)
    for pattern in patterns:
        if pattern not in names and not fnmatch.filter(names, pattern):
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise OptionError(
                f"--layers {pattern!r} matches no layer of {run.path} (its layers: {shown}; "
                "python -m generator info STORE lists them all)"
            )
    return [name for name in names if matches(name, patterns)]


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``--layers`` ``patterns`` select layer ``name``."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def spread_order(count: int) -> list[int]:
    """0..count-1 ordered so that every prefix is spread evenly: the ends first, then the
    middle, then the quarters... A budget that keeps a prefix of the blocks keeps blocks
    from every stage, not only the first ones."""
    if count <= 0:
        return []
    order = [0, count - 1] if count > 1 else [0]
    seen = set(order)
    step = 1 << (count - 1).bit_length()
    while step > 1:
        step //= 2
        for index in range(step, count, 2 * step):
            if index not in seen:
                seen.add(index)
                order.append(index)
    order += [i for i in range(count) if i not in seen]
    return order
