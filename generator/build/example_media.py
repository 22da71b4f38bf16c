"""What drives a channel, over epochs: its feature visualization (a layer's sheet or one
channel's animation) and its top dataset-example patches, each kind from one read of the
layer's recorded images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from generator import encode
from generator.build.animation import Job, write_animation
from generator.render.featviz_sheet import channel_frames as featviz_channel_frames
from generator.render.featviz_sheet import sheet_frames as featviz_sheet_frames
from generator.render.frames import Frames
from generator.render.patches import channel_patches, patch_grid_frames, patch_sheet
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import RunReader


def featviz_job(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    """A layer's feature-visualization sheet or its channels' animations: one read."""
    images = run.featviz(job.required_layer)
    options, made = job.options, []
    for artefact in job.artefacts:
        if artefact.kind is ArtefactKind.FEATVIZ_SHEET:
            captions = [
                f"{job.required_layer} feature visualizations · epoch {e}"
                for e in range(run.epochs)
            ]
            render = partial(featviz_sheet_frames, images, captions=captions)
            made.append(write_animation(artefact, _at_side(render, "max_side"), options, site))
        else:
            c = artefact.required_channel
            captions = [f"{job.required_layer} ch {c + 1} · epoch {e}" for e in range(run.epochs)]
            render = partial(featviz_channel_frames, images[:, c], captions=captions)
            made.append(
                write_animation(
                    artefact,
                    _at_side(render, "side"),
                    options,
                    site,
                    max_side=options.channel_side,
                )
            )
    return made


def patches_job(run: RunReader, job: Job, site: Path) -> list[ArtefactRecord]:
    """A conv layer's dataset-example patches: per channel its top-k over epochs, or the
    sheet of every channel's best at the last epoch. One read of the layer's top-k."""
    spec, top = run.layer(job.required_layer), run.examples(job.required_layer)
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
            title = f"{job.required_layer} · epoch {last} · top image per channel"
            image = patch_sheet(patches, title=title, max_side=job.options.max_side)
            encode.write_png(site / artefact.files["png"], image)
            height, width = image.shape[:2]
            made.append(replace(artefact, width=width, height=height, epochs=(last,)))
            continue
        c = artefact.required_channel
        patches = cut(top.index[:, c], top.position[:, c])
        captions = [
            f"{job.required_layer} ch {c + 1} · epoch {e} · top {patches.shape[1]} · max "
            f"{top.value[e, c, 0]:.3g}"
            for e in range(run.epochs)
        ]
        render = partial(patch_grid_frames, patches, captions=captions)
        made.append(
            write_animation(
                artefact,
                _at_side(render, "max_side"),
                job.options,
                site,
                max_side=job.options.channel_side,
            )
        )
    return made


def _at_side(draw: Callable[..., Frames], keyword: str) -> Callable[[int], Frames]:
    """``draw`` with the side ``write_animation`` asks for passed as ``keyword``."""
    return lambda side: draw(**{keyword: side})
