"""A run's card on the home page and its overview page (metrics, curves, confusion,
probes, the table of layers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import generator.site.figures as figures
from generator.site.context import RunContext
from generator.site.distributions import gradient_flow
from generator.site.manifest import ArtefactKind, RunEntry
from generator.site.pages import (
    Chart,
    LayerGroup,
    LayerRow,
    Media,
    Metric,
    ProbeView,
    RunCard,
    RunPage,
)
from generator.site.paths import HOME, url
from generator.site.similarity import similarity_section
from generator.site.svg import format_number
from generator.site.text import format_percent, public_name, shown
from generator.site.tree import TreeNode, chart_groups
from generator.store import LayerSpec, RunReader

CARD_CLASSES = 24  # class names listed on a home card; the rest are counted
TRAINING_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def run_card(ctx: RunContext, *, eager: bool) -> RunCard:
    """The home card. Its thumbnail is probe 1's class-probability animation: its frame
    size does not grow with the input size, so the home page stays light with many
    runs; the first grid is the fallback when no probe animation was built."""
    accuracy = ctx.run.scalar_metric("val_accuracy")
    return RunCard(
        name=ctx.name,
        href=url(HOME, ctx.paths.run),
        classes=ctx.class_names[:CARD_CLASSES],
        class_count=len(ctx.class_names),
        epochs_trained=ctx.run.epochs - 1,
        final_val_accuracy=format_percent(float(accuracy[-1])),
        thumbnail=card_thumbnail(ctx, eager=eager),
    )


def card_thumbnail(ctx: RunContext, *, eager: bool) -> Media | None:
    caption = ctx.probe_caption(0)
    thumb = ctx.media(ArtefactKind.PROBE, probe=0, here=HOME, caption=caption, eager=eager)
    if thumb is None and ctx.run.attrs.conv_layers:
        first = ctx.run.attrs.conv_layers[0].name
        thumb = ctx.media(
            ArtefactKind.GRID,
            layer=first,
            probe=0,
            here=HOME,
            caption=f"{shown(first)}, {caption}",
            eager=eager,
        )
    return thumb


def waiting_card(entry: RunEntry, run: RunReader) -> RunCard:
    """The card of a run with no committed epoch (just started, or killed in epoch 0):
    it has no pages yet, and says so instead of breaking the build of every run."""
    names = tuple(shown(n) for n in run.attrs.class_names)
    return RunCard(
        name=shown(entry.name),
        href=None,
        classes=names[:CARD_CLASSES],
        class_count=len(names),
        epochs_trained=0,
        final_val_accuracy="—",
        thumbnail=None,
        waiting="no epochs yet: this run has not committed its first epoch; "
        "build again once it has",
    )


def run_page(ctx: RunContext) -> tuple[RunPage, dict[str, bytes]]:
    """The run's overview page and the files its figures need."""
    run = ctx.run
    args = ctx.page_args(ctx.paths.run, "run.html", ctx.name)
    here = args["path"]
    confusion, files = figures.confusion(
        run.confusion(), ctx.class_names, image_path=ctx.paths.confusion_image, here=here
    )
    similarity, data = similarity_section(ctx, here)
    page = RunPage(
        **args,
        name=ctx.name,
        classes=ctx.class_names,
        metrics=run_metrics(ctx),
        layer_groups=tuple(
            LayerGroup(name, kind, tuple(layer_row(ctx, layer.name, here) for layer in group))
            for name, kind, group in group_layers(run.layers)
        ),
        curves=figures.curves({m: run.scalar_metric(m) for m in TRAINING_METRICS}),
        change=run_change_chart(ctx),
        confusion=confusion,
        probes=tuple(probe_view(ctx, p, here) for p in range(ctx.n_probes)),
        similarity=similarity,
        network=url(here, ctx.paths.overview),
        gradient_flow=gradient_flow(run.gradients()),
    )
    return page, {**files, **data}


def change_groups(ctx: RunContext, node: TreeNode) -> list[tuple[str, list[np.ndarray]]]:
    """``tree.chart_groups`` of ``node`` as the weight-change series of their layers
    (layers without weights, and groups of only such layers, left out)."""
    change = ctx.weight_change
    groups = [
        (label, [change[layer.name] for layer in group if layer.name in change])
        for label, group in chart_groups(node)
    ]
    return [(label, values) for label, values in groups if values]


def run_change_chart(ctx: RunContext) -> Chart:
    """Weight change per layer, or per stage (the mean of its layers) for a deep network,
    so the chart never has more than ``tree.MAX_SERIES`` lines; the overview page has
    each stage's layers."""
    groups = change_groups(ctx, ctx.tree)
    grouped = any(len(values) > 1 for _, values in groups)
    return figures.change_chart(
        groups, title="Weight change per stage" if grouped else "Weight change per layer"
    )


def run_metrics(ctx: RunContext) -> tuple[Metric, ...]:
    run = ctx.run
    last = {name: float(run.scalar_metric(name)[-1]) for name in TRAINING_METRICS[1:]}
    return (
        Metric("epochs trained", str(run.epochs - 1)),
        Metric("final validation accuracy", format_percent(last["val_accuracy"])),
        Metric("final training accuracy", format_percent(last["train_accuracy"])),
        Metric("final validation loss", format_number(last["val_loss"])),
        Metric("classes", str(len(ctx.class_names))),
        Metric("probes", str(ctx.n_probes)),
    )


def layer_row(ctx: RunContext, name: str, here: str) -> LayerRow:
    layer = ctx.run.layer(name)
    rf = f"{layer.receptive_field} px" if layer.receptive_field else "—"
    return LayerRow(
        shown(layer.name),
        shown(layer.kind),
        " × ".join(map(str, layer.shape)),
        kernel_text(layer),
        groups_text(layer),
        pair_text(layer.stride),
        f"{layer.params:,}",
        rf,
        url(here, ctx.paths.layer(layer.name)),
    )


def kernel_text(layer: LayerSpec) -> str:
    """'3 × 3' for a conv's kernel, '—' for a layer without one (a block's output)."""
    return " × ".join(map(str, layer.kernel_shape[2:])) if layer.kernel_shape else "—"


def groups_text(layer: LayerSpec) -> str:
    """A conv's groups, naming the depthwise case (one input channel per kernel)."""
    if not layer.kernel_shape:
        return "—"
    if layer.groups > 1 and layer.kernel_shape[1] == 1:
        return f"{layer.groups} (depthwise)"
    return str(layer.groups)


def pair_text(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "—"
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]} × {pair[1]}"


def group_layers(layers: Sequence[LayerSpec]) -> list[tuple[str, str, list[LayerSpec]]]:
    """Layers in model order, cut into runs that share a block: (block name, its module
    type, layers). A layer's block is the outermost recorded ``block`` layer whose module
    path contains it (``layer1.0`` holds ``layer1.0.conv1`` and itself), else its parent
    module (``""``, the model's top level, is shown as "top level"). Works from module
    paths alone: no layer name is assumed."""
    blocks = [layer for layer in layers if layer.kind == "block"]
    groups: list[tuple[str, str, list[LayerSpec]]] = []
    for layer in layers:
        holding = [b for b in blocks if _inside(layer, b)]
        block = min(holding, key=lambda b: len(b.module or b.name)) if holding else None
        if block is not None:
            key, kind = block.name, block.module_type or "block"
        else:
            key, kind = layer.parent or "", ""
        if groups and groups[-1][0] == key:
            groups[-1][2].append(layer)
        else:
            groups.append((key, kind, [layer]))
    return [(shown(key) if key else "top level", shown(kind), group) for key, kind, group in groups]


def _inside(layer: LayerSpec, block: LayerSpec) -> bool:
    """Whether ``layer``'s module lies in ``block``'s module (or is it)."""
    path, outer = layer.module or layer.name, block.module or block.name
    return path == outer or path.startswith(outer + ".")


def probe_view(ctx: RunContext, probe: int, here: str) -> ProbeView:
    sources = ctx.run.attrs.probe_sources
    animation = ctx.media(
        ArtefactKind.PROBE, probe=probe, here=here, caption="class probabilities over epochs"
    )
    chart = figures.probe_chart(
        ctx.probe_probs[:, probe],
        int(ctx.run.probe_labels[probe]),
        ctx.class_names,
        probe + 1,
    )
    return ProbeView(
        probe + 1,
        ctx.probe_label(probe),
        public_name(sources[probe]) if probe < len(sources) else "",
        animation,
        chart,
    )
