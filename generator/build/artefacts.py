"""What one build job makes: read the store, render frames, encode files. Runs in workers.

A job covers everything that shares one read: all artefacts of one layer for one probe
(the channel grid, that probe's per-channel animations, the contact sheet), the kernels of
one conv layer, or one probe's class-probability animation. Memory stays independent of
the number of epochs: grids are rendered one epoch at a time, per-channel animations read
their channels in groups sized to ``READ_BUDGET``, kernels are read epoch by epoch.

This module picks a job's maker: ``layer_media`` (grids, channels, contact sheets),
``kernel_media``, ``example_media`` (feature visualizations, dataset examples) or the
probe's class probabilities here; ``animation`` holds what they share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generator.build.animation import (
    OPTIONS_USED,
    RENDER_VERSION,
    Job,
    RenderOptions,
    options_used,
    write_animation,
)
from generator.build.example_media import featviz_job, patches_job
from generator.build.kernel_media import kernel_animation, shown_kernels
from generator.build.layer_media import READ_BUDGET, layer_job, layer_scales
from generator.render.probs import probe_frames
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import RunReader, open_run

__all__ = [
    "OPTIONS_USED",
    "READ_BUDGET",
    "RENDER_VERSION",
    "Job",
    "RenderOptions",
    "layer_scales",
    "options_used",
    "run_job",
    "shown_kernels",
]

FEATVIZ_KINDS = (ArtefactKind.FEATVIZ, ArtefactKind.FEATVIZ_SHEET)

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
        run = open_run(store, epochs=epochs)
        _READERS.clear()
        _READERS[key] = run
    return run


def run_job(job: Job, site: Path) -> list[ArtefactRecord]:
    """Make every artefact of ``job`` under ``site``; returns their completed records."""
    run = _reader(job.store, job.epochs)
    kind = job.artefacts[0].kind
    if kind in (ArtefactKind.KERNELS, ArtefactKind.KERNEL_CHANGE):
        return [kernel_animation(run, job.artefacts[0], job.options, site)]
    if kind is ArtefactKind.PROBE:
        return [_probe(run, job.artefacts[0], job.options, site)]
    if kind in FEATVIZ_KINDS:
        return featviz_job(run, job, site)
    if kind in (ArtefactKind.PATCHES, ArtefactKind.PATCH_SHEET):
        return patches_job(run, job, site)
    return layer_job(run, job, site)


def _probe(
    run: RunReader, artefact: ArtefactRecord, options: RenderOptions, site: Path
) -> ArtefactRecord:
    """One probe image with its class probabilities over epochs (frames of a fixed size)."""
    probe = artefact.probe
    frames = probe_frames(
        np.moveaxis(run.probe_pictures[probe], -1, 0),  # as shown: grey/mapped to RGB
        run.probe_probs()[:, probe],
        run.attrs.class_names,
        int(run.probe_labels[probe]),
    )
    return write_animation(artefact, lambda _side: frames, options, site)
