"""A layer's media for one probe, made from one read: the channel grid, the per-channel
animations (read in groups of channels sized to ``READ_BUDGET``) and the contact sheet.
Grids are rendered one epoch at a time, so memory does not grow with the epochs."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from generator import encode
from generator.build.animation import Job, RenderOptions, write_animation
from generator.render.colormaps import Scales, compute_scales
from generator.render.contact import choose_epochs, contact_sheet
from generator.render.frames import Frames, channel_frames, layer_frames_by_epoch
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import RunReader

READ_BUDGET = 48 * 2**20  # bytes of activations one job holds for per-channel animations


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


def layer_job(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    scales = layer_scales(run, job.required_layer, job.options.scale)
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


def caption(run: RunReader, layer: str, probe: int, epoch: int, extra: str = "") -> str:
    label = int(run.probe_labels[probe])
    name = run.attrs.class_names[label] if 0 <= label < len(run.attrs.class_names) else "unlabelled"
    return f"{layer}{extra} · epoch {epoch} · probe {probe + 1} ({name})"


def _grid(
    run: RunReader, artefact: ArtefactRecord, scales: Scales, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """The channel grid of one layer and probe, rendered one epoch at a time."""
    layer, probe = artefact.required_layer, artefact.required_probe

    def render(max_side: int) -> Frames:
        return layer_frames_by_epoch(
            lambda epoch: run.layer_at(layer, epoch, probe),
            scales.neg[:, probe],
            scales.pos[:, probe],
            captions=[caption(run, layer, probe, epoch) for epoch in range(run.epochs)],
            colormap=options.colormap,
            max_side=max_side,
        )

    return write_animation(artefact, render, options, site)


def _channels(
    run: RunReader,
    artefacts: list[ArtefactRecord],
    scales: Scales,
    options: RenderOptions,
    site: Path,
) -> list[ArtefactRecord]:
    """Per-channel animations, reading channels in groups that fit ``READ_BUDGET``."""
    layer, probe = artefacts[0].required_layer, artefacts[0].required_probe
    spec = run.layer(layer)
    per_channel = run.epochs * int(np.prod(spec.shape[1:])) * 2
    group = max(1, READ_BUDGET // max(per_channel, 1))
    made = []
    for batch in _channel_batches(sorted(artefacts, key=lambda a: a.required_channel), group):
        first, last = batch[0].required_channel, batch[-1].required_channel
        values = run.channel_range(layer, probe, first, last + 1)
        for artefact in batch:
            c = artefact.required_channel
            render = partial(
                _render_channel,
                values[:, c - first],
                scales.neg[:, probe, c],
                scales.pos[:, probe, c],
                options.colormap,
                [caption(run, layer, probe, e, f" ch {c + 1}") for e in range(run.epochs)],
            )
            made.append(
                write_animation(artefact, render, options, site, max_side=options.channel_side)
            )
    return made


def _channel_batches(artefacts: list[ArtefactRecord], span: int) -> list[list[ArtefactRecord]]:
    """Split channel-sorted artefacts into batches whose channel range is at most ``span``."""
    batches: list[list[ArtefactRecord]] = []
    for artefact in artefacts:
        if batches and artefact.required_channel - batches[-1][0].required_channel < span:
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
    layer, probe = artefact.required_layer, artefact.required_probe
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
