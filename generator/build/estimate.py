"""What a build will cost before it starts: bytes and seconds per artefact and per page.

Each planned artefact is described by the size of its frames (``frame_pixels``, from the
layer's shape and the same layout rules the renderer uses, nothing rendered) and how many
there are; bytes per file format and seconds per job are linear in those, with
coefficients per artefact kind fitted on measured builds of a demo run, a densenet121 and
a convnext_tiny (``bench/calibrate.py`` prints them; bench/README.md has the figures).
The budget (``--budget-mb``) is kept with these estimates, and the build prints them
before a long build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from generator.build.kernel_media import KERNEL_TILE, shown_kernels
from generator.config import PublishedOptions
from generator.render.layout import captioned_tile_size, grid_shape, tile_size
from generator.site.manifest import ArtefactKind, ArtefactRecord
from generator.store import LayerSpec, RunReader

GRID_MIN_TILE = 48  # as the layer grids are drawn (render.frames.layer_frames)
CAPTION = "epoch 10"

# Bytes of one frame per file format, (per frame pixel, per frame), by kind; a poster and
# a PNG are one frame. Fitted by bench/calibrate.py (see the module docstring).
VIDEO = {
    "webm": (0.022, 100.0),
    "mp4": (0.045, 200.0),
    "gif": (0.25, 200.0),
    "poster": (0.1, 0.0),
}
BYTES: dict[ArtefactKind, dict[str, tuple[float, float]]] = {
    ArtefactKind.GRID: VIDEO,
    ArtefactKind.CHANNEL: {"webm": (0.017, 0.0), "mp4": (0.031, 0.0), "poster": (0.042, 0.0)},
    ArtefactKind.CONTACT: {"png": (0.6, 4000.0)},  # per map value shown (CONTACT_EPOCHS)
    ArtefactKind.PATCHES: {"webm": (0.0, 6400.0), "mp4": (0.0, 9000.0), "poster": (0.0, 35e3)},
    ArtefactKind.PATCH_SHEET: {"png": (0.0, 100e3)},
    ArtefactKind.FEATVIZ: {"webm": (0.0, 1700.0), "mp4": (0.0, 2300.0), "poster": (0.0, 8500.0)},
    ArtefactKind.FEATVIZ_SHEET: {
        "webm": (0.0, 45e3),
        "mp4": (0.0, 60e3),
        "gif": (0.0, 40e3),
        "poster": (0.0, 250e3),
    },
    ArtefactKind.PROBE: {
        "webm": (0.01, 0.0),
        "mp4": (0.015, 0.0),
        "gif": (0.01, 0.0),
        "poster": (0.2, 0.0),
    },
}
# Bytes of every file of a format, whatever it holds (headers, the palette, an index).
FILE_BYTES = {"webm": 700.0, "mp4": 1500.0, "gif": 800.0, "poster": 800.0, "png": 500.0}
DEFAULT_BYTES: dict[str, tuple[float, float]] = {
    "webm": (0.045, 1000.0),
    "mp4": (0.07, 3000.0),
    "gif": (0.03, 2500.0),
    "png": (0.3, 2000.0),
    "poster": (0.04, 2500.0),
}
CONTACT_EPOCHS = 8  # at most as many epochs as a contact sheet shows, per channel
# Seconds of one worker per artefact: (per frame pixel, per frame, per artefact), by kind.
SECONDS: dict[ArtefactKind, tuple[float, float, float]] = {
    ArtefactKind.GRID: (0.0, 0.016, 0.0015),
    ArtefactKind.CHANNEL: (5.3e-8, 0.0, 0.0),
    ArtefactKind.CONTACT: (0.0, 0.0088, 0.0008),
    ArtefactKind.PATCHES: (0.0, 0.0088, 0.0008),
    ArtefactKind.KERNEL_CHANGE: (3.4e-8, 0.006, 0.0006),
    ArtefactKind.PROBE: (2.8e-7, 0.0, 0.0),
    ArtefactKind.FEATVIZ: (2.2e-7, 0.0, 0.0),
}
DEFAULT_SECONDS = (3.5e-7, 0.0, 0.0)
# Pages (one process): bytes of one page (and per epoch shown) and seconds per page; per
# layer, the run and overview pages' rows and thumbnail strips; per pair of layers, the
# similarity data, whose CKA costs seconds per pair of layers and epoch (a densenet121:
# about a minute of CPU at 3 epochs, most of its build).
PAGE_BYTES = (12e3, 1.6e3)
PAGE_SECONDS = 0.018
RUN_BYTES_PER_LAYER = 7e3  # the run and overview pages' rows, a thumbnail strip
SIMILARITY_BYTES = 24.0  # per pair of layers
LAYER_SECONDS = 0.02
SIMILARITY_SECONDS = 4e-4
START_SECONDS = 2.0  # reading the stores, starting the workers


@dataclass(frozen=True)
class Cost:
    """Estimated bytes written and seconds of one worker."""

    bytes: float = 0.0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.bytes + other.bytes, self.seconds + other.seconds)


def frame_pixels(spec: LayerSpec | None, kind: ArtefactKind, options: PublishedOptions) -> int:
    """The pixels of one frame of an artefact, as the renderer will lay it out."""
    if kind is ArtefactKind.CHANNEL and spec is not None:
        h, w = spec.shape[1:] if len(spec.shape) == 3 else (1, 1)
        th, tw = tile_size(
            h,
            w,
            1,
            1,
            min_tile=options.channel_side,
            max_w=options.channel_side * 4,
            max_h=options.channel_side * 4,
        )
        return th * tw
    if kind in (ArtefactKind.KERNELS, ArtefactKind.KERNEL_CHANGE) and spec and spec.kernel_shape:
        out, into = shown_kernels(spec.kernel_shape, options.max_side)
        tiles = (out.stop - out.start) * (into.stop - into.start)
        return min(options.max_side**2, tiles * KERNEL_TILE**2)
    if spec is None or kind is ArtefactKind.PROBE:
        return 160 * 400
    c, h, w = spec.shape if len(spec.shape) == 3 else (spec.shape[0], 1, 1)
    if kind in (ArtefactKind.FEATVIZ, ArtefactKind.PATCHES):
        c = 1 if kind is ArtefactKind.FEATVIZ else 9
    rows, cols = grid_shape(c)
    th, tw = captioned_tile_size(
        h,
        w,
        rows,
        cols,
        min_tile=GRID_MIN_TILE,
        max_side=options.max_side,
        captions=CAPTION,
        sep=1,
    )
    return min(options.max_side**2, (rows * (th + 1)) * (cols * (tw + 1)))


def artefact_cost(run: RunReader, artefact: ArtefactRecord, options: PublishedOptions) -> Cost:
    """The bytes of an artefact's files and a worker's seconds to make it."""
    spec = run.layer(artefact.layer) if artefact.layer is not None else None
    pixels = frame_pixels(spec, artefact.kind, options)
    frames = run.epochs if artefact.kind.is_animation else 1
    if artefact.kind is ArtefactKind.CHANNEL:
        pixels = min(pixels, options.channel_side**2)
    if artefact.kind is ArtefactKind.CONTACT and spec is not None:
        pixels = math.prod(spec.shape) * min(run.epochs, CONTACT_EPOCHS)  # lossless values
    per_format = BYTES.get(artefact.kind, DEFAULT_BYTES)
    size = 0.0
    for fmt in artefact.files:
        per_pixel, per_frame = per_format.get(fmt, DEFAULT_BYTES.get(fmt, (0.5, 0.0)))
        side = pixels
        if fmt == "gif" and options.auto_formats:
            side = min(pixels, options.gif_max_side**2)
        count = 1 if fmt in ("poster", "png") else frames
        size += count * (per_pixel * side + per_frame) + FILE_BYTES.get(fmt, 0.0)
    per_pixel, per_frame, per_artefact = SECONDS.get(artefact.kind, DEFAULT_SECONDS)
    seconds = frames * (per_pixel * pixels + per_frame) + per_artefact
    return Cost(size, seconds)


def pages_cost(run: RunReader, options: PublishedOptions, *, paged: set[str]) -> Cost:
    """Every page of a run: its run page and data, a page per layer and per paged channel
    of the ``paged`` layers (those a deep net's default build animates)."""
    layers = len(run.layers)
    channels = sum(
        min(layer.channels, options.channel_pages)
        for layer in run.layers
        if layer.is_conv and layer.name in paged
    )
    pages = 1 + layers + channels
    per_page = PAGE_BYTES[0] + PAGE_BYTES[1] * run.epochs
    size = pages * per_page + layers * RUN_BYTES_PER_LAYER
    size += SIMILARITY_BYTES * layers**2
    seconds = pages * PAGE_SECONDS + layers * LAYER_SECONDS
    return Cost(size, seconds + SIMILARITY_SECONDS * layers**2 * run.epochs)


def wall_seconds(work: float, pages: float, workers: int) -> float:
    """A build's wall time from the workers' seconds and the pages' (one process)."""
    return START_SECONDS + work / max(1, workers) + pages


def rounded_mb(size: float) -> int:
    """A size in MB rounded up to two significant figures, as an option value to print."""
    mb = size / 1e6
    if mb <= 1:
        return 1
    scale = 10 ** max(0, math.floor(math.log10(mb)) - 1)
    return math.ceil(mb / scale) * scale


def human_duration(seconds: float) -> str:
    """``95`` -> ``"1 min 35 s"``, ``8.2`` -> ``"8 s"``."""
    whole = max(1, round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
