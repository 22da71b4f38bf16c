"""What one build job makes: read the store, render frames, encode files. Runs in workers.

A job covers everything that shares one read: all artefacts of one layer for one probe
(the channel grid, that probe's per-channel animations, the contact sheet), the kernels of
one conv layer, or one probe's class-probability animation. Memory stays independent of
the number of epochs: grids are rendered one epoch at a time, per-channel animations read
their channels in groups sized to ``READ_BUDGET``, kernels are read epoch by epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from generator import encode
from generator.render.colormaps import Scales, compute_scales
from generator.render.contact import choose_epochs, contact_sheet
from generator.render.featviz_sheet import channel_frames as featviz_channel_frames
from generator.render.featviz_sheet import sheet_frames as featviz_sheet_frames
from generator.render.frames import (
    Frames,
    channel_frames,
    layer_frames_by_epoch,
    readable_tiles,
)
from generator.render.kernels import (
    DEPTHWISE,
    MATRIX,
    change_layout,
    kernel_change_frames,
    kernel_frames,
    kernel_layout,
)
from generator.render.patches import channel_patches, patch_grid_frames, patch_sheet
from generator.render.probs import probe_frames
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import LayerSpec, RunReader, open_run

log = logging.getLogger(__name__)

# Bump when a change to rendering or encoding changes the files: every artefact is re-made.
RENDER_VERSION = 4  # 2: in-process PyAV encoding, BT.709-tagged video, WebM (AV1)
# 3: one x264 thread for small frames and two for large ones, chroma from packed lookups
# 4: captions set from cached pieces, measured with one-bit glyphs' advances; H.264
# without B-frames, diamond search, one sub-pixel pass; SVT-AV1 without temporal filtering
READ_BUDGET = 48 * 2**20  # bytes of activations one job holds for per-channel animations
KERNELS_SHOWN = 32  # out (and in) channels a kernel animation draws; the gallery says so
KERNEL_TILE = 40  # px per kernel patch: 5x5 kernels are read as colour, not noise
READABLE_TILE = 32  # px: the smallest tile a grid of channels or kernels may draw


@dataclass(frozen=True)
class RenderOptions:
    """The build options that change pixels (their defaults live in ``BuildConfig``).
    ``gif_max_side`` is set only with "auto" formats: GIFs are rendered at most this big."""

    colormap: str
    scale: str
    fps: float
    max_side: int
    channel_side: int
    gif_max_side: int | None
    contact_columns: int = 8  # not an option: the contact sheet's fixed epoch count


# Exactly the options each kind's renderer reads (see the functions below), so that an
# artefact's fingerprint changes with them and with nothing else: ``--fps`` re-makes no
# contact sheet, ``--max-side`` no probe animation (its frames have a fixed size).
OPTIONS_USED: Mapping[ArtefactKind, tuple[str, ...]] = {
    ArtefactKind.GRID: ("colormap", "scale", "max_side", "fps", "gif_max_side"),
    ArtefactKind.CHANNEL: ("colormap", "scale", "channel_side", "fps", "gif_max_side"),
    ArtefactKind.CONTACT: ("colormap", "scale", "max_side", "contact_columns"),
    ArtefactKind.KERNELS: ("max_side", "fps", "gif_max_side"),
    ArtefactKind.KERNEL_CHANGE: ("max_side", "fps", "gif_max_side"),
    ArtefactKind.PROBE: ("fps",),
    ArtefactKind.FEATVIZ: ("channel_side", "fps", "gif_max_side"),
    ArtefactKind.FEATVIZ_SHEET: ("max_side", "fps", "gif_max_side"),
    ArtefactKind.PATCHES: ("channel_side", "fps", "gif_max_side"),
    ArtefactKind.PATCH_SHEET: ("max_side",),
}
FEATVIZ_KINDS = (ArtefactKind.FEATVIZ, ArtefactKind.FEATVIZ_SHEET)


def options_used(
    kind: ArtefactKind, options: RenderOptions, formats: Mapping[str, str]
) -> dict[str, Any]:
    """The option values an artefact of ``kind`` with these files is rendered from."""
    names = OPTIONS_USED[kind]
    if "gif" not in formats:  # the GIF size only matters to a GIF
        names = tuple(n for n in names if n != "gif_max_side")
    return {name: getattr(options, name) for name in names}


@dataclass(frozen=True)
class Job:
    """A unit of work for one worker; ``artefacts`` are only those that must be (re)made,
    all of one kind group: one layer and probe, one conv layer's kernels, or one probe."""

    store: str
    epochs: int  # committed when the build was planned: a job renders exactly these
    layer: str | None
    probe: int | None
    artefacts: tuple[ArtefactRecord, ...]
    options: RenderOptions


_READERS: dict[tuple[str, int], RunReader] = {}


def _reader(store: str, epochs: int) -> RunReader:
    """A reader of the first ``epochs`` epochs, opened once per worker process.

    Clipped to the epochs the build planned with, so a store that a training run keeps
    appending to renders exactly what the fingerprints say; a later build (a new key)
    opens it again and sees the new epochs.
    """
    key = (store, epochs)
    run = _READERS.get(key)
    if run is None:  # returned from the local name: a dask worker's other thread may clear
        run = open_run(store)
        run.epochs = min(run.epochs, epochs)
        _READERS.clear()
        _READERS[key] = run
    return run


def run_job(job: Job, site: Path) -> list[ArtefactRecord]:
    """Make every artefact of ``job`` under ``site``; returns their completed records."""
    run = _reader(job.store, job.epochs)
    kind = job.artefacts[0].kind
    if kind in (ArtefactKind.KERNELS, ArtefactKind.KERNEL_CHANGE):
        return [_kernels(run, job.artefacts[0], job.options, site)]
    if kind is ArtefactKind.PROBE:
        return [_probe(run, job.artefacts[0], job.options, site)]
    if kind in FEATVIZ_KINDS:
        return _featviz(run, job, site)
    if kind in (ArtefactKind.PATCHES, ArtefactKind.PATCH_SHEET):
        return _patches_job(run, job, site)
    return _layer_job(run, job, site)


def layer_scales(run: RunReader, layer: str, mode: str) -> Scales:
    """(E, P, C) colour scales of a layer from its stored statistics (no data pass).
    Maps (conv and block outputs) get one scale per channel; the units of a vector share
    one, as a unit's min is its max."""
    return compute_scales(
        run.channel_stats(layer, "min"),
        run.channel_stats(layer, "max"),
        mode,
        share_channels=len(run.layer(layer).shape) == 1,
    )


def _layer_job(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    scales = layer_scales(run, job.layer, job.options.scale)
    by_kind: dict[ArtefactKind, list[ArtefactRecord]] = {}
    for artefact in job.artefacts:
        by_kind.setdefault(artefact.kind, []).append(artefact)
    made = []
    for artefact in by_kind.get(ArtefactKind.GRID, []):
        made.append(_grid(run, artefact, scales, job.options, site))
    for artefact in by_kind.get(ArtefactKind.CONTACT, []):
        made.append(_contact(run, artefact, scales, job.options, site))
    if by_kind.get(ArtefactKind.CHANNEL):
        made.extend(_channels(run, by_kind[ArtefactKind.CHANNEL], scales, job.options, site))
    return made


def _caption(run: RunReader, layer: str, probe: int, epoch: int, extra: str = "") -> str:
    label = int(run.probe_labels[probe])
    name = run.class_names[label] if 0 <= label < len(run.class_names) else "unlabelled"
    return f"{layer}{extra} · epoch {epoch} · probe {probe + 1} ({name})"


def _grid(
    run: RunReader, artefact: ArtefactRecord, scales: Scales, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """The channel grid of one layer and probe, rendered one epoch at a time."""
    layer, probe = artefact.layer, artefact.probe

    def render(max_side: int) -> Frames:
        return layer_frames_by_epoch(
            lambda epoch: run.layer_at(layer, epoch, probe),
            scales.neg[:, probe],
            scales.pos[:, probe],
            captions=[_caption(run, layer, probe, epoch) for epoch in range(run.epochs)],
            colormap=options.colormap,
            max_side=max_side,
        )

    return _write_animation(artefact, render, options, site)


def _channels(
    run: RunReader,
    artefacts: list[ArtefactRecord],
    scales: Scales,
    options: RenderOptions,
    site: Path,
) -> list[ArtefactRecord]:
    """Per-channel animations, reading channels in groups that fit ``READ_BUDGET``."""
    layer, probe = artefacts[0].layer, artefacts[0].probe
    spec = run.layer(layer)
    per_channel = run.epochs * int(np.prod(spec.shape[1:])) * 2
    group = max(1, READ_BUDGET // max(per_channel, 1))
    made = []
    for batch in _channel_batches(sorted(artefacts, key=lambda a: a.channel), group):
        first, last = batch[0].channel, batch[-1].channel
        values = run.channel_range(layer, probe, first, last + 1)
        for artefact in batch:
            c = artefact.channel
            render = partial(
                _render_channel,
                values[:, c - first],
                scales.neg[:, probe, c],
                scales.pos[:, probe, c],
                options.colormap,
                [_caption(run, layer, probe, e, f" ch {c + 1}") for e in range(run.epochs)],
            )
            made.append(
                _write_animation(artefact, render, options, site, max_side=options.channel_side)
            )
    return made


def _channel_batches(artefacts: list[ArtefactRecord], span: int) -> list[list[ArtefactRecord]]:
    """Split channel-sorted artefacts into batches whose channel range is at most ``span``."""
    batches: list[list[ArtefactRecord]] = []
    for artefact in artefacts:
        if batches and artefact.channel - batches[-1][0].channel < span:
            batches[-1].append(artefact)
        else:
            batches.append([artefact])
    return batches


def _render_channel(
    values: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    colormap: str,
    captions: list[str],
    max_side: int,
) -> Frames:
    return channel_frames(
        values,
        neg,
        pos,
        colormap=colormap,
        min_side=min(max_side, 256),
        max_side=max_side,
        captions=captions,
    )


def _contact(
    run: RunReader, artefact: ArtefactRecord, scales: Scales, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """The still of channels x chosen epochs; reads only the epochs it shows."""
    layer, probe = artefact.layer, artefact.probe
    epochs = choose_epochs(run.epochs, options.contact_columns)
    values = np.stack([run.layer_at(layer, e, probe) for e in epochs])
    sheet = contact_sheet(
        values,
        scales.neg[epochs, probe],
        scales.pos[epochs, probe],
        colormap=options.colormap,
        epoch_numbers=epochs,
        max_width=options.max_side,
        title=f"{layer} · probe {probe + 1} · epochs {', '.join(map(str, epochs))}",
    )
    encode.write_png(site / artefact.files["png"], sheet.image, sheet.palette)
    height, width = sheet.image.shape
    return replace(
        artefact,
        frames=1,
        width=width,
        height=height,
        nonfinite=sheet.nonfinite,
        epochs=tuple(sheet.epochs),
    )


def shown_kernels(kernel_shape: tuple[int, ...], max_side: int) -> tuple[slice, slice]:
    """The (out, in) corner of a conv weight its kernel animation draws (the gallery says
    so): a 1x1 layer's whole O x I heatmap; every depthwise kernel that fits as a readable
    tile; for other layers the first ``KERNELS_SHOWN`` out x in kernels (all 3 inputs of
    an image-reading layer)."""
    o, i = kernel_shape[:2]
    layout = kernel_layout(kernel_shape)
    if layout == MATRIX:
        return slice(0, o), slice(0, i)
    if layout == DEPTHWISE:
        return slice(0, min(o, readable_tiles(max_side, min_tile=READABLE_TILE))), slice(0, 1)
    return slice(0, min(o, KERNELS_SHOWN)), slice(0, i if i == 3 else min(i, KERNELS_SHOWN))


def _kernel_note(spec: LayerSpec, weights: np.ndarray) -> str:
    """What the kernel picture leaves out and how a grouped conv's columns read."""
    o, i = spec.kernel_shape[:2]
    notes = []
    if weights.shape[1:3] != (o, i):
        notes.append(
            f"showing {weights.shape[1]} of {o} out x {weights.shape[2]} of {i} in channels"
        )
    if spec.groups > 1 and i > 1:
        notes.append(f"{spec.groups} groups: columns are the in-channels of each one's group")
    return "; ".join(notes)


def _kernels(
    run: RunReader, artefact: ArtefactRecord, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """Kernels (or their change since epoch 0) over epochs, in the layout their shape calls
    for; only the shown (out x in) corner is read, epoch by epoch."""
    layer, change = artefact.layer, artefact.kind is ArtefactKind.KERNEL_CHANGE
    spec = run.layer(layer)
    shown = shown_kernels(spec.kernel_shape, options.max_side)
    weights = np.stack([run.kernels(layer, e)[shown] for e in range(run.epochs)])
    note = _kernel_note(spec, weights)
    draw = kernel_change_frames if change else kernel_frames
    title = "kernel change since epoch 0" if change else "kernels"
    layout = (change_layout if change else kernel_layout)(spec.kernel_shape)

    def render(max_side: int) -> Frames:
        frames = draw(
            weights,
            layout=layout,
            max_out=weights.shape[1],
            max_in=weights.shape[2],
            max_side=max_side,
            min_tile=KERNEL_TILE,
            captions=[f"{layer} {title} · epoch {e}" for e in range(run.epochs)],
        )
        extra = note if note and note not in frames.note else ""
        said = "; ".join(n for n in (frames.note, extra) if n)
        return Frames(frames.frames, frames.palette, frames.nonfinite, said)

    made = _write_animation(artefact, render, options, site)
    return replace(made, kernels_shown=int(weights.shape[1]))


def _featviz(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    """A layer's feature-visualization sheet or its channels' animations: one read."""
    images = run.featviz(job.layer)
    options, made = job.options, []
    for artefact in job.artefacts:
        if artefact.kind is ArtefactKind.FEATVIZ_SHEET:
            captions = [
                f"{job.layer} feature visualizations · epoch {e}" for e in range(run.epochs)
            ]
            render = partial(featviz_sheet_frames, images, captions=captions)
            made.append(
                _write_animation(artefact, lambda side, r=render: r(max_side=side), options, site)
            )
        else:
            c = artefact.channel
            captions = [f"{job.layer} ch {c + 1} · epoch {e}" for e in range(run.epochs)]
            render = partial(featviz_channel_frames, images[:, c], captions=captions)
            made.append(
                _write_animation(
                    artefact,
                    lambda side, r=render: r(side=side),
                    options,
                    site,
                    max_side=options.channel_side,
                )
            )
    return made


def _probe(
    run: RunReader, artefact: ArtefactRecord, options: RenderOptions, site: Path
) -> ArtefactRecord:
    probe = artefact.probe
    frames = probe_frames(
        run.probe_images[probe],
        run.probe_probs()[:, probe],
        run.class_names,
        int(run.probe_labels[probe]),
    )
    return _write_animation(artefact, lambda _side: frames, options, site)


def _patches_job(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    """A conv layer's dataset-example patches: per channel its top-k over epochs, or the
    sheet of every channel's best at the last epoch. One read of the layer's top-k."""
    spec, top = run.layer(job.layer), run.examples(job.layer)
    cut = partial(
        channel_patches,
        run.example_images,
        map_size=spec.shape,
        receptive_field=spec.receptive_field,
    )
    made = []
    for artefact in job.artefacts:
        if artefact.kind is ArtefactKind.PATCH_SHEET:
            patches = cut(top.index[-1, :, 0], top.position[-1, :, 0])
            last = run.epochs - 1
            title = f"{job.layer} · epoch {last} · top image per channel"
            image = patch_sheet(patches, title=title, max_side=job.options.max_side)
            encode.write_png(site / artefact.files["png"], image)
            height, width = image.shape[:2]
            made.append(replace(artefact, width=width, height=height, epochs=(last,)))
            continue
        c = artefact.channel
        patches = cut(top.index[:, c], top.position[:, c])
        captions = [
            f"{job.layer} ch {c + 1} · epoch {e} · top {patches.shape[1]} · max "
            f"{top.value[e, c, 0]:.3g}"
            for e in range(run.epochs)
        ]
        render = partial(patch_grid_frames, patches, captions=captions)
        made.append(
            _write_animation(
                artefact,
                lambda side, render=render: render(max_side=side),
                job.options,
                site,
                max_side=job.options.channel_side,
            )
        )
    return made


def _write_animation(
    artefact: ArtefactRecord,
    render: Callable[[int], Frames],
    options: RenderOptions,
    site: Path,
    max_side: int | None = None,
) -> ArtefactRecord:
    """Encode ``render(max_side)`` to each requested format plus a poster (the last epoch).

    With ``gif_max_side`` set ("auto" formats) a frame larger than it gets its GIF from a
    second, smaller rendering: GIFs of large noisy grids are ~20x larger than the MP4.
    """
    frames = render(max_side or options.max_side)
    if frames.nonfinite:
        log.warning("%s: %d NaN/inf values drawn in the NaN colour", artefact.id, frames.nonfinite)
    height, width = frames.frames.shape[1:3]
    videos = {
        site / relative: encode.VIDEO_CODECS[fmt]
        for fmt, relative in artefact.files.items()
        if fmt in encode.VIDEO_CODECS
    }
    if videos:  # every video format in one pass over the frames
        encode.write_videos(videos, frames.frames, frames.palette, fps=options.fps)
    for fmt, relative in artefact.files.items():
        target = site / relative
        if fmt == "gif":
            small = options.gif_max_side
            gif = render(small) if small and max(height, width) > small else frames
            encode.write_gif(target, gif.frames, gif.palette, duration_ms=round(1000 / options.fps))
        elif fmt == "poster":
            encode.write_poster(target, frames.frames, frames.palette)
    return replace(
        artefact,
        frames=len(frames.frames),
        width=width,
        height=height,
        nonfinite=frames.nonfinite,
        note=frames.note,
    )
