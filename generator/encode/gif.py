"""Animated GIFs: index frames keep their palette exactly (no quantisation), RGB frames
are ``quantise``d once for the whole sequence; FFmpeg's GIF encoder stores only the changed
rectangle of each frame. Large GIFs are encoded in runs of frames on parallel threads, into
the same bytes one encoder writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

from generator.encode.output import atomic_output, checked_frames
from generator.encode.palette import quantise
from generator.threads import helper_threads


def _gif_durations(duration_ms: int | Sequence[int], count: int) -> list[int]:
    """Per-frame durations in GIF units (1/100 s, at least 1), one per frame."""
    if np.ndim(duration_ms) == 0:
        durations = [int(np.asarray(duration_ms))] * count
    else:
        durations = [int(d) for d in np.asarray(duration_ms)]
        if len(durations) != count:
            raise ValueError(f"{len(durations)} durations for {count} frames")
    return [max(1, round(d / 10)) for d in durations]


def write_gif(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    duration_ms: int | Sequence[int] = 200,
    loop: int = 0,
) -> Path:
    """Write an animated GIF that loops forever (``loop=0``); returns ``path``.

    ``duration_ms`` is one value or one per frame (stored in 1/100 s). Index frames keep
    their palette exactly (every frame decodes to palette colours only); RGB frames are
    ``quantise``d first. Large GIFs are encoded in runs of frames on parallel threads
    (``_gif_runs``), into the same bytes one encoder writes.
    """
    frames = checked_frames(frames, palette)
    if palette is None:
        frames, palette = quantise(frames)
    centis = _gif_durations(duration_ms, len(frames))
    starts = np.concatenate([[0], np.cumsum(centis)[:-1]]).tolist()
    length = dict(zip(starts, centis, strict=True))  # the muxer reads each delay from its packet
    argb = np.empty((256, 4), dtype=np.uint8)
    argb[:, 0], argb[:, 1:] = 255, palette
    runs = _gif_runs(len(frames), frames[0].size)
    with (
        atomic_output(path, "GIF") as tmp,
        av.open(str(tmp), "w", format="gif", options={"loop": str(loop)}) as container,
    ):
        stream = container.add_stream("gif", rate=100)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt, stream.time_base = "pal8", GIF_TIME_BASE
        for packets in _in_parallel(partial(_gif_run, frames, argb, starts), runs):
            for packet in packets:
                packet.stream, packet.duration = stream, length[packet.pts]
                container.mux(packet)
    return Path(path)


def _in_parallel(
    work: Callable[[range], list[av.Packet]], runs: list[range]
) -> Iterator[list[av.Packet]]:
    """``work(run)`` for each run, in order: on one thread per run when there are several."""
    if len(runs) == 1:
        yield work(runs[0])
        return
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        for done in [pool.submit(work, run) for run in runs]:
            yield done.result()


# FFmpeg's GIF encoder has no threads of its own, and a large GIF (a 1-megapixel layer grid
# over 31 epochs: 23 MB) is mostly its LZW compression. PyAV lets go of the GIL while it
# encodes, so a GIF of at least ``GIF_RUN_PIXELS`` pixels a frame is cut into one run of
# frames per helper thread (generator/threads.py), each encoded on its own thread. Each
# frame is stored as its change from the frame before, so a run's encoder first sees the
# frame before the run (its packet dropped): every frame is stored exactly as one encoder
# stores it, and the file is the same, byte for byte, however many runs
# (tests/test_encode.py). With ``--formats auto`` the GIFs are small (``--gif-max-side``);
# this is for ``--formats gif`` and the like.
GIF_RUN_PIXELS = 1 << 18
GIF_TIME_BASE = Fraction(1, 100)


def _gif_runs(count: int, pixels: int) -> list[range]:
    """The runs of frame numbers that ``write_gif`` encodes in parallel."""
    runs = min(helper_threads() if pixels >= GIF_RUN_PIXELS else 1, count)
    bounds = [round(count * k / runs) for k in range(runs + 1)]
    return [range(first, stop) for first, stop in itertools.pairwise(bounds)]


def _gif_run(
    frames: np.ndarray, argb: np.ndarray, starts: list[int], run: range
) -> list[av.Packet]:
    """The GIF packets of ``frames[run]``, from a fresh encoder that first sees the frame
    before the run, so the run's first frame is stored as a change from it."""
    context = av.codec.CodecContext.create("gif", "w")
    context.height, context.width = frames.shape[1:3]
    context.pix_fmt, context.time_base = "pal8", GIF_TIME_BASE
    first = starts[run.start]
    packets = []
    for number in range(max(run.start - 1, 0), run.stop):
        # PyAV's stubs omit the (indices, palette) pair that pal8 takes
        indexed = (np.ascontiguousarray(frames[number]), argb)
        image = av.VideoFrame.from_ndarray(indexed, format="pal8")  # type: ignore[arg-type]
        image.pts, image.time_base = starts[number], GIF_TIME_BASE
        packets += context.encode(image)
    packets += context.encode(None)
    return [packet for packet in packets if packet.pts is not None and packet.pts >= first]
