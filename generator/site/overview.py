"""The network overview page: the module tree of a run, a small view of every layer at the
scrubbed epoch, its settle epoch and a sparkline of its weight change, each linking to its
layer page; the weight change of each stage's blocks on demand.

A deep network (DenseNet-121 has 179 recorded layers) cannot show every layer's animation
on one page, and a build may leave most of them out. So each layer's view is a thumbnail
sprite the site draws itself from probe 1's maps (``render.strip.thumbnail_sprite``): one
small PNG per layer with a square per shown epoch, moved by the page's scrubber through
CSS, which exists whatever the build's plan animated. The page's own dataclasses live here
(``pages`` holds those shared by several pages).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from markupsafe import Markup

import generator.site.figures as figures
from generator.encode import palette_png_bytes
from generator.render.colormaps import palette
from generator.render.strip import STRIP_COLORMAP, thumbnail_sprite
from generator.site.context import RunContext
from generator.site.linechart import sparkline
from generator.site.manifest import ArtefactKind
from generator.site.pages import Chart, Link, Page
from generator.site.paths import url
from generator.site.run_pages import change_groups
from generator.site.similarity import NOT_SETTLED, shown_epochs
from generator.site.text import shown
from generator.site.tree import TreeNode
from generator.store import LayerSpec

THUMB_SIDE = 48  # px of a layer's view at one epoch
OPEN_DEPTH = 1  # stages are open; blocks (depth 2) and below start folded


@dataclass(frozen=True)
class LayerView:
    """One layer as the tree shows it. ``thumb`` holds ``frames`` squares of ``side`` px
    stacked top to bottom (the epochs of ``similarity.shown_epochs``)."""

    name: str
    kind: str
    shape: str
    href: str
    thumb: str
    side: int
    frames: int
    settle: str
    spark: Markup
    note: str  # what the build left out for this layer, and how to get it


@dataclass(frozen=True)
class TreeItem:
    """A module of the tree: its own layer's view (a block's output), if recorded, and
    the modules inside it. ``open``: unfolded when the page loads."""

    label: str
    path: str
    count: int  # recorded layers at or below it
    open: bool
    view: LayerView | None
    children: tuple[TreeItem, ...]


@dataclass(frozen=True, kw_only=True)
class OverviewPage(Page):
    name: str
    count: int
    threshold: str
    stages: tuple[TreeItem, ...]
    charts: tuple[Chart, ...]  # each stage's weight change, shown on demand


def overview_page(ctx: RunContext) -> tuple[OverviewPage, dict[str, bytes]]:
    """The overview page and its thumbnail files by site path."""
    here = ctx.paths.overview
    args = ctx.page_args(here, "overview.html", f"{ctx.name}: network", Link(here, "network"))
    args["crumbs"] = ctx.crumbs(here, Link(url(here, here), "network"))
    files: dict[str, bytes] = {}
    views = {}
    for layer in ctx.run.layers:
        views[layer.name], files[ctx.paths.thumbnail(layer.name)] = layer_view(ctx, layer, here)
    page = OverviewPage(
        **args,
        name=ctx.name,
        count=len(ctx.run.layers),
        threshold=f"{ctx.similarity.threshold:g}",
        stages=tuple(tree_item(child, views, 1) for child in ctx.tree.children),
        charts=stage_charts(ctx),
    )
    return page, files


def tree_item(node: TreeNode, views: dict[str, LayerView], depth: int) -> TreeItem:
    return TreeItem(
        shown(node.label),
        shown(node.path),
        len(node.layers()),
        depth <= OPEN_DEPTH,
        views[node.layer.name] if node.layer is not None else None,
        tuple(tree_item(child, views, depth + 1) for child in node.children),
    )


def layer_view(ctx: RunContext, layer: LayerSpec, here: str) -> tuple[LayerView, bytes]:
    """The layer's row and its thumbnail sprite (PNG bytes)."""
    epochs = shown_epochs(ctx.run.epochs)
    png = thumbnail_png(ctx, layer, epochs)
    settle = dict(zip(ctx.similarity.layers, ctx.similarity.settle, strict=True))
    epoch = settle.get(layer.name)
    change = ctx.weight_change.get(layer.name)
    spark_label = f"{shown(layer.name)}: relative weight change per epoch"
    return LayerView(
        shown(layer.name),
        shown(layer.kind),
        " × ".join(map(str, layer.shape)),
        url(here, ctx.paths.layer(layer.name)),
        url(here, ctx.paths.thumbnail(layer.name)),
        THUMB_SIDE,
        len(epochs),
        NOT_SETTLED if epoch is None else f"epoch {epoch}",
        sparkline(change, label=spark_label) if change is not None else Markup(""),
        left_out_note(ctx, layer),
    ), png


def thumbnail_png(ctx: RunContext, layer: LayerSpec, epochs: np.ndarray) -> bytes:
    """Probe 1's maps of ``layer`` at ``epochs`` as one RGBA sprite; a layer of 1×1 maps
    or a vector is drawn as channel stripes on the diverging colormap."""
    maps = np.stack([ctx.run.layer_at(layer.name, int(e), 0) for e in epochs])
    flat = maps.ndim == 2 or maps.shape[2] * maps.shape[3] == 1
    colours = palette(STRIP_COLORMAP if flat else ctx.manifest.options.colormap)
    return palette_png_bytes(thumbnail_sprite(maps, side=THUMB_SIDE), colours)


def left_out_note(ctx: RunContext, layer: LayerSpec) -> str:
    """Says how to get a layer's animations when the build made none: ``--layers`` with
    its name, or the option the build named when that is another (``--budget-mb``)."""
    keys = ((ArtefactKind.GRID, layer.name, p, None) for p in range(ctx.n_probes))
    if any(key in ctx.index for key in keys):
        return ""
    item = ctx.entry.left_out_of(layer.name)
    if item and "--layers" not in item.option:  # left out for another reason (the budget)
        return f"not animated in this build; to animate it: {shown(item.option)}"
    return f"not animated in this build; to animate it: --layers '{shown(layer.name)}'"


def stage_charts(ctx: RunContext) -> tuple[Chart, ...]:
    """Each stage's weight change, one series per layer or block (at most a dozen)."""
    charts = []
    for stage in ctx.tree.children:
        groups = change_groups(ctx, stage)
        if len(groups) > 1:
            charts.append(
                figures.change_chart(groups, title=f"Weight change in {shown(stage.path)}")
            )
    return tuple(charts)
