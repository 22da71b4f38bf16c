"""A run's layer pages (grids, statistics, kernels, channel thumbnails, contact sheets)
and a page per channel of every conv layer (its animations, statistics and kernel)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

import generator.analysis.statistics as analysis
import generator.site.figures as figures
from generator.encode import palette_png_bytes
from generator.render.colormaps import palette
from generator.render.kernels import DEPTHWISE, MATRIX, RGB, kernel_layout
from generator.render.strip import STRIP_COLORMAP, strip_indices
from generator.site.context import RunContext, first_eager
from generator.site.distributions import layer_distributions
from generator.site.manifest import ArtefactKind
from generator.site.pages import (
    ChannelPage,
    ChannelThumb,
    Chart,
    Image,
    LayerPage,
    Link,
    Media,
    Page,
)
from generator.site.paths import url
from generator.site.run_pages import layer_row
from generator.site.text import shown
from generator.store import LayerSpec, RootAttrs

STATS = ("min", "max", "mean", "abs_mean")


def layer_pages(ctx: RunContext) -> tuple[list[Page], dict[str, bytes]]:
    """Every layer's page, each followed by its channels' pages when it is a conv layer,
    and the files they show that the site draws (``channel_strips``) by site path."""
    pages: list[Page] = []
    files: dict[str, bytes] = {}
    layers = ctx.run.layers
    for i, layer in enumerate(layers):
        previous = layers[i - 1] if i else None
        following = layers[i + 1] if i + 1 < len(layers) else None
        stats = {s: ctx.run.channel_stats(layer.name, s) for s in STATS}  # read once
        page = layer_page(ctx, layer, stats=stats, previous=previous, following=following)
        strips, drawn = channel_strips(ctx, layer, stats, page.path)
        pages.append(replace(page, strips=strips))
        files.update(drawn)
        if layer.is_conv:
            pages += channel_pages(ctx, layer, stats)
    return pages, files


def layer_page(
    ctx: RunContext,
    layer: LayerSpec,
    *,
    stats: Mapping[str, np.ndarray],
    previous: LayerSpec | None,
    following: LayerSpec | None,
) -> LayerPage:
    """The layer's page; ``stats`` are its ``STATS`` by name, (E, P, C) each."""
    name, path = layer.name, ctx.paths.layer(layer.name)
    args = ctx.page_args(path, "layer.html", shown(name), Link(url(path, path), shown(name)))
    probes = range(ctx.n_probes)
    grids = [
        ctx.media(ArtefactKind.GRID, layer=name, probe=p, here=path, caption=ctx.probe_caption(p))
        for p in probes
    ]
    contacts = [
        ctx.media(
            ArtefactKind.CONTACT,
            layer=name,
            probe=p,
            here=path,
            caption=f"{ctx.probe_caption(p)} · channels × chosen epochs",
        )
        for p in probes
    ]
    return LayerPage(
        **args,
        layer=layer_row(ctx, name, path),
        grids=first_eager(grids),
        contacts=tuple(c for c in contacts if c),
        kernels=kernels_media(ctx, layer, path),
        kernel_change=kernel_change_media(ctx, layer, path),
        channels=channel_thumbs(ctx, layer, path),
        channels_note=channels_note(ctx, layer),
        charts=layer_charts(ctx, layer, stats),
        previous=layer_link(ctx, path, previous),
        next=layer_link(ctx, path, following),
        featviz=ctx.media(
            ArtefactKind.FEATVIZ_SHEET,
            layer=name,
            here=path,
            caption="each channel's feature visualization; the poster is the last epoch",
        ),
        featviz_note=recording_note(ctx.run.attrs, name),
        left_out=_left_out(ctx, name),
        distributions=layer_distributions(ctx.histograms, name),
        example_sheet=ctx.media(
            ArtefactKind.PATCH_SHEET,
            layer=name,
            here=path,
            caption="each channel's top pool image at the last epoch, cut to its receptive field",
        ),
    )


def kernels_media(ctx: RunContext, layer: LayerSpec, here: str) -> Media | None:
    caption = f"{shown(layer.name)} kernels over epochs"
    return ctx.media(ArtefactKind.KERNELS, layer=layer.name, here=here, caption=caption)


def kernel_change_media(ctx: RunContext, layer: LayerSpec, here: str) -> Media | None:
    caption = f"{shown(layer.name)} kernel change since initialisation (W_e − W_0)"
    return ctx.media(ArtefactKind.KERNEL_CHANGE, layer=layer.name, here=here, caption=caption)


def recording_note(attrs: RootAttrs, layer: str) -> str:
    """One line on what recording left out for ``layer``: its feature visualization
    skipped (and why), or the overhead budget's fewer steps and skipped examples."""
    skipped = (attrs.featviz_skipped or {}).get(layer)
    if skipped:
        return f"No feature visualization for this layer: {skipped}"
    budget = attrs.budget or {}
    if attrs.featviz is None or layer not in attrs.featviz.channels or not budget:
        return ""
    steps = [s for s in budget.get("featviz_steps", []) if s is not None]
    fewer = sum(1 for s in steps if s < attrs.featviz.steps)
    missed = sum(1 for s in steps if s == 0)
    examples = sum(1 for e in budget.get("examples", []) if e is False)
    if not (fewer or examples):
        return ""
    share = f"{float(budget.get('overhead') or 0):.0%}"
    return (
        f"To keep recording within {share} of training time, feature visualization took "
        f"fewer steps in {fewer} epochs (none in {missed}) and dataset examples were "
        f"carried over in {examples}; those epochs show the last images found."
    )


def channels_note(ctx: RunContext, layer: LayerSpec) -> str:
    """Says which channels have a page when ``--channel-pages`` left some out."""
    paged, left = ctx.paged_channels(layer), ctx.entry.left_out_of(layer.name)
    if not layer.is_conv or paged == layer.channels or (left and not left.channel_pages):
        return ""  # all paged, or the build left this layer's animations out and says so
    first = f"channels 1–{paged}" if paged else "no channel"
    return (
        f"Of its {layer.channels} channels, {first} have a page of their own "
        f"(build with --channel-pages {layer.channels} for all); every channel is in the "
        "channel grids above."
    )


def layer_link(ctx: RunContext, here: str, layer: LayerSpec | None) -> Link | None:
    return Link(url(here, ctx.paths.layer(layer.name)), shown(layer.name)) if layer else None


def channel_thumbs(ctx: RunContext, layer: LayerSpec, here: str) -> tuple[ChannelThumb, ...]:
    """A thumbnail per channel: the poster of its first per-channel animation, if any."""
    if not layer.is_conv:
        return ()
    thumbs = []
    for c in range(ctx.paged_channels(layer)):
        keys = ((ArtefactKind.CHANNEL, layer.name, p, c) for p in range(ctx.n_probes))
        record = next((ctx.index[k] for k in keys if k in ctx.index), None)
        poster = record.files.get("poster") if record else None
        href = url(here, ctx.paths.channel(layer.name, c))
        thumbs.append(ChannelThumb(c + 1, href, url(here, poster) if poster else None))
    return tuple(thumbs)


def layer_charts(
    ctx: RunContext, layer: LayerSpec, stats: Mapping[str, np.ndarray]
) -> tuple[Chart, Chart]:
    """The layer's dead-share and activation charts from its ``stats`` (see ``layer_page``)."""
    return figures.layer_charts(
        analysis.dead_share(stats["min"], stats["max"]),
        stats["abs_mean"],
        unit="channels" if layer.is_conv else "units",
        markers=ctx.markers,
    )


def channel_strips(
    ctx: RunContext, layer: LayerSpec, stats: Mapping[str, np.ndarray], here: str
) -> tuple[tuple[Image, ...], dict[str, bytes]]:
    """A layer without spatial maps (1×1 maps, a vector): each probe's channels over
    epochs as one strip (``render.strip``) for the page at ``here``, and the PNG files.
    Drawn from the stored per-channel means (a 1×1 map's mean is its value), so it costs
    no read and shows whether or not the build animated the layer."""
    if int(np.prod(layer.shape[1:])) != 1:
        return (), {}
    strips, files = [], {}
    for p in range(ctx.n_probes):
        image, note = strip_indices(stats["mean"][:, p, :])
        path = ctx.paths.strip(layer.name, p)
        files[path] = palette_png_bytes(image, palette(STRIP_COLORMAP))
        caption = f"{ctx.probe_caption(p)}: {note}; red below zero, blue above, one scale"
        alt = f"{shown(layer.name)}, {ctx.probe_caption(p)}: channels over epochs"
        strips.append(Image(url(here, path), alt, image.shape[1], image.shape[0], caption))
    return tuple(strips), files


def _left_out(ctx: RunContext, layer: str) -> str:
    """What the build left out of this layer's animations and the option that makes them
    (a deep net's default build, or ``--budget-mb``), as the layer page says it."""
    item = ctx.entry.left_out_of(layer)
    return f"This build left out {item.what}; to make them: {item.option}." if item else ""


def channel_pages(
    ctx: RunContext, layer: LayerSpec, stats: Mapping[str, np.ndarray]
) -> list[ChannelPage]:
    """The pages of a conv layer's paged channels; ``stats`` as for ``layer_page``."""
    change = analysis.kernel_change(ctx.run, layer.name)
    return [
        channel_page(ctx, layer, c, stats=stats, change=change[:, c])
        for c in range(ctx.paged_channels(layer))
    ]


def channel_page(
    ctx: RunContext,
    layer: LayerSpec,
    c: int,
    *,
    stats: Mapping[str, np.ndarray],
    change: np.ndarray,
) -> ChannelPage:
    """Channel ``c`` (counted from 0) of a conv layer; ``stats`` are (E, P, C)."""
    name = layer.name
    here, layer_path = ctx.paths.channel(name, c), ctx.paths.layer(name)
    args = ctx.page_args(
        here,
        "channel.html",
        f"{shown(name)} channel {c + 1}",
        Link(url(here, layer_path), shown(name)),
        Link(url(here, here), f"channel {c + 1}"),
    )

    def neighbour(k: int) -> Link | None:
        if 0 <= k < ctx.paged_channels(layer):
            return Link(url(here, ctx.paths.channel(name, k)), f"channel {k + 1}")
        return None

    return ChannelPage(
        **args,
        layer=shown(name),
        number=c + 1,
        layer_href=url(here, layer_path),
        animations=channel_animations(ctx, name, c, here),
        kernels=kernels_media(ctx, layer, here),
        kernel_change=kernel_change_media(ctx, layer, here),
        kernel_note=kernel_note(layer, c, kernels_shown(ctx, layer)),
        kernel_chart=figures.kernel_chart(change, c, markers=ctx.markers),
        stats=channel_stats_charts(ctx, stats, c),
        previous=neighbour(c - 1),
        next=neighbour(c + 1),
        featviz=ctx.media(
            ArtefactKind.FEATVIZ,
            layer=name,
            channel=c,
            here=here,
            caption="the image that drives this channel most, optimised at each epoch",
        ),
        examples=ctx.media(
            ArtefactKind.PATCHES,
            layer=name,
            channel=c,
            here=here,
            caption="the pool images that excite it most, best first, each epoch",
        ),
    )


def channel_animations(ctx: RunContext, layer: str, c: int, here: str) -> tuple[Media, ...]:
    """Channel ``c``'s animation for each probe that has one, the first two eager."""
    found = [
        ctx.media(
            ArtefactKind.CHANNEL,
            layer=layer,
            probe=p,
            channel=c,
            here=here,
            caption=ctx.probe_caption(p),
        )
        for p in range(ctx.n_probes)
    ]
    return first_eager(found)


def channel_stats_charts(
    ctx: RunContext, stats: Mapping[str, np.ndarray], c: int
) -> tuple[Chart, ...]:
    """One statistics chart per probe from the layer's (E, P, C) statistics."""
    return tuple(
        figures.channel_stats_chart({s: v[:, p, c] for s, v in stats.items()}, ctx.probe_caption(p))
        for p in range(ctx.n_probes)
    )


def kernels_shown(ctx: RunContext, layer: LayerSpec) -> int:
    """Output channels the layer's kernel animation draws (the build records it)."""
    record = ctx.record(ArtefactKind.KERNELS, layer=layer.name)
    shown_count = record.kernels_shown if record else None
    return int(shown_count or _kernel_shape(layer)[0])


def _kernel_shape(layer: LayerSpec) -> tuple[int, ...]:
    """A conv layer's weight shape (channel pages, which ask for it, are conv layers')."""
    if layer.kernel_shape is None:
        raise ValueError(f"{layer.name} has no kernels")
    return layer.kernel_shape


def kernel_note(layer: LayerSpec, c: int, shown_count: int) -> str:
    """Where this channel's kernel is in the layer's kernel animation, honestly."""
    out = _kernel_shape(layer)[0]
    if c >= shown_count:
        return (
            f"The layer's kernel animation draws the first {shown_count} of {out} "
            f"output channels, so channel {c + 1}'s kernel is not in it; the chart "
            "below shows how much it changed each epoch."
        )
    layout = kernel_layout(_kernel_shape(layer))
    if layout == RGB:
        where = (
            f"patch {c + 1} (counting left to right, top to bottom) and, in the change "
            f"animation, row {c + 1} (one column per colour)"
        )
    elif layout == DEPTHWISE:
        where = f"patch {c + 1} (counting left to right, top to bottom)"
    elif layout == MATRIX:
        where = f"row {c + 1} of the 1×1 heatmap (one column per input channel)"
    else:
        where = f"row {c + 1} (one column per input channel)"
    return f"This channel's kernel is {where} in the layer's kernel animations."
