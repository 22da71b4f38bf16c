"""What every build job shares: its options, the record of which options each kind of
artefact is drawn from (so a fingerprint changes with them and nothing else), and encoding
rendered frames to each requested format plus a poster."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from generator import encode
from generator.render.frames import Frames
from generator.site.manifest import ArtefactKind, ArtefactRecord

log = logging.getLogger(__name__)

# Bump when a change to rendering or encoding changes the files: every artefact is re-made.
RENDER_VERSION = 4  # 2: in-process PyAV encoding, BT.709-tagged video, WebM (AV1)
# 3: one x264 thread for small frames and two for large ones, chroma from packed lookups
# 4: captions set from cached pieces, measured with one-bit glyphs' advances; H.264
# without B-frames, diamond search, one sub-pixel pass; SVT-AV1 without temporal filtering


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

    @property
    def required_layer(self) -> str:
        """The layer of a layer's job (all but a probe's)."""
        return self.artefacts[0].required_layer


def write_animation(
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
