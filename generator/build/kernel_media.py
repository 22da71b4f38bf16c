"""A conv layer's kernels, and their change since epoch 0, over epochs: only the corner
the picture shows (``shown_kernels``) is read, epoch by epoch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from generator.build.animation import RenderOptions, write_animation
from generator.render.frames import Frames
from generator.render.kernels import (
    DEPTHWISE,
    MATRIX,
    change_layout,
    kernel_change_frames,
    kernel_frames,
    kernel_layout,
)
from generator.render.layout import readable_tiles
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import LayerSpec, RunReader

KERNELS_SHOWN = 32  # out (and in) channels a kernel animation draws; the gallery says so
KERNEL_TILE = 40  # px per kernel patch: 5x5 kernels are read as colour, not noise
READABLE_TILE = 32  # px: the smallest tile a grid of channels or kernels may draw


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


def _kernel_shape(spec: LayerSpec) -> tuple[int, ...]:
    """A conv layer's weight shape (every layer with a kernel artefact is a conv)."""
    if spec.kernel_shape is None:
        raise ValueError(f"{spec.name} has no kernels")
    return spec.kernel_shape


def kernel_note(spec: LayerSpec, weights: np.ndarray) -> str:
    """What the kernel picture leaves out and how a grouped conv's columns read."""
    o, i = _kernel_shape(spec)[:2]
    notes = []
    if weights.shape[1:3] != (o, i):
        notes.append(
            f"showing {weights.shape[1]} of {o} out x {weights.shape[2]} of {i} in channels"
        )
    if spec.groups > 1 and i > 1:
        notes.append(f"{spec.groups} groups: columns are the in-channels of each one's group")
    return "; ".join(notes)


def kernel_animation(
    run: RunReader, artefact: ArtefactRecord, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """Kernels (or their change since epoch 0) over epochs, in the layout their shape calls
    for; only the shown (out x in) corner is read, epoch by epoch."""
    layer, change = artefact.required_layer, artefact.kind is ArtefactKind.KERNEL_CHANGE
    spec = run.layer(layer)
    shown = shown_kernels(_kernel_shape(spec), options.max_side)
    weights = np.stack([run.kernels(layer, e)[shown] for e in range(run.epochs)])
    note = kernel_note(spec, weights)
    draw = kernel_change_frames if change else kernel_frames
    title = "kernel change since epoch 0" if change else "kernels"
    layout = (change_layout if change else kernel_layout)(_kernel_shape(spec))

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

    made = write_animation(artefact, render, options, site)
    return replace(made, kernels_shown=int(weights.shape[1]))
