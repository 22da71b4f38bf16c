"""Browser videos (``VIDEO_CODECS``): yuv420p, limited-range BT.709, tagged so browsers
show the colours meant. Odd sizes are padded by one pixel (yuv420p needs even sides), never
rescaled. ``mp4``: H.264 with ``+faststart`` (the ``moov`` atom first, so a browser starts
at once), which every browser plays; ``webm``: AV1 (SVT-AV1), about a third of the MP4's
bytes at the same quality, which the gallery offers first. Several files of the same
frames are written in one pass (``write_videos``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from generator import defaults
from generator.encode.output import atomic_output, checked_frames, encoder_errors
from generator.encode.priority import normal_priority
from generator.encode.yuv import PaletteYuv, yuv420_frame
from generator.errors import EncodeError
from generator.faults import tick
from generator.render.colormaps import BACKGROUND_INDEX, rgb_of
from generator.render.layout import pad_frames
from generator.threads import helper_threads

# SVT-AV1 prints a banner and its settings to stderr for every file unless told otherwise
# (1 = errors only); read when the encoder starts, so set before any file is written.
os.environ.setdefault("SVT_LOG", "1")

T = TypeVar("T")
P = TypeVar("P", bound=Path | str)  # a target path, as the caller gives it
BT709 = 1  # the AVCOL_PRI / TRC / SPC value of BT.709 in FFmpeg's enums
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: Y in 16..235, the range browsers assume


@dataclass(frozen=True)
class VideoCodec:
    """One browser video format: container, FFmpeg encoder and its settings."""

    container: str
    encoder: str
    options: Mapping[str, str]
    threads_option: tuple[str, str]  # the option and its value, "{}" for the thread count
    container_options: Mapping[str, str] = field(default_factory=dict)

    def options_for(self, threads: int) -> dict[str, str]:
        """The encoder's options with its thread count set to ``threads``. A
        ``threads_option`` that ``options`` also holds must be a ``key=value:key=value``
        list (``svtav1-params``): the count is appended to it, never replaces it."""
        name, value = self.threads_option
        listed = [self.options[name]] if name in self.options else []
        return {**self.options, name: ":".join([*listed, value.format(threads)])}


# Settings chosen on frames of a 512 px bench store (bench/README.md, "Formats and sizes"):
# PSNR against the lossless frames within about 1 dB of the old CRF 20 MP4 (whose own
# loss is mostly yuv420p's half-resolution colour), at half (MP4) and a third (AV1) of
# its bytes. The MP4 is the fallback for browsers without AV1, so its preset stays fast.
# x264 without B-frames, with the diamond motion search and one sub-pixel refinement pass
# (superfast's search inside veryfast): together a quarter to a third less of its time on
# the grids and the per-channel animations. On the 1-MP grids 10 % more bytes and 0.5 dB
# more PSNR, on smaller grids 12 % fewer bytes at the same PSNR, on 256 px channel files
# 5 % more bytes. SVT-AV1 without temporal filtering (a denoiser of the frames it predicts
# from, made for camera noise): 5-20 % faster at the same PSNR, and up to a sixth fewer
# bytes on the grids. Measured in bench/README.md, stop 20. Threads: see
# ``encoder_threads``. Without x264's macroblock-tree rate control (``mbtree=0``): it read
# memory whose contents depended on the process's earlier work, so the same frames made a
# different file now and then (issue 24); CRF 27 without it gives the PSNR that CRF 24
# gave with it, at 5 % more bytes (bench/README.md, "Reproducible MP4s").
H264 = VideoCodec(
    "mp4",
    "libx264",
    {"crf": "27", "preset": "veryfast", "x264-params": "bframes=0:me=dia:subme=1:mbtree=0"},
    ("threads", "{}"),
    {"movflags": "+faststart"},
)
# Matroska gives each file a random track UID (random bytes in the WebM) unless bitexact:
# the same frames must make the same file, on a cluster's worker or here, build after build.
AV1 = VideoCodec(
    "webm",
    "libsvtav1",
    {"crf": "32", "preset": "10", "svtav1-params": "enable-tf=0"},
    ("svtav1-params", "lp={}"),
    {"fflags": "+bitexact"},
)
VIDEO_CODECS: Mapping[str, VideoCodec] = {"webm": AV1, "mp4": H264}

# Frames of at least ``THREADED_PIXELS`` (about 724 x 724: the layer grids of a 512 px run,
# large kernel sheets) get ``LARGE_FRAME_THREADS`` encoder threads, smaller ones one: a
# build already runs one file per core (--jobs), but those few large files are its longest
# and often its last ones, and two threads encode a 1-megapixel grid 1.8x faster
# (bench/README.md). The demo's grids (about 560 px) stay on one thread, so the live
# gallery's builds beside training stay light. x264's bytes depend on its thread
# count (SVT-AV1's do not), so the count depends on the frame size alone, never on the
# machine's cores: the same frames make the same file on a laptop, a cluster's worker or here.
THREADED_PIXELS, LARGE_FRAME_THREADS = 1 << 19, 2


def encoder_threads(size: tuple[int, int]) -> int:
    """Encoder threads for frames of ``(height, width)``, the padded (even) size the
    encoder is given."""
    return LARGE_FRAME_THREADS if size[0] * size[1] >= THREADED_PIXELS else 1


def _encoder(path: Path | str, name: str) -> None:
    """Raise a one-line ``EncodeError`` when this PyAV build lacks encoder ``name``."""
    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError) as exc:
        raise EncodeError(
            f"{path}: this PyAV build has no {name} encoder; pip install -U 'av>=17'"
        ) from exc


def write_video(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    codec: VideoCodec,
    fps: float = defaults.FPS,
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write ``frames`` as a browser video in ``codec`` at a constant ``fps``; returns
    ``path``. Odd sizes get one row/column of ``pad`` right/bottom (a palette index for
    index frames, an RGB triple for RGB ones; by default the renderer's background, so it
    reads as margin, not as zero activations).
    """
    write_videos({path: codec}, frames, palette, fps=fps, pad=pad)
    return Path(path)


def write_videos(
    targets: Mapping[P, VideoCodec],
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = defaults.FPS,
    pad: int | tuple[int, int, int] | None = None,
) -> list[Path]:
    """Write the same ``frames`` to every ``path: codec`` of ``targets`` in one pass (see
    ``write_video``): each frame's yuv planes are computed once and go to every encoder,
    which halves the colour conversion of a WebM + MP4 pair. Returns the paths."""
    frames = checked_frames(frames, palette)
    for path, codec in targets.items():
        _encoder(path, codec.encoder)
    if pad is None:
        pad = BACKGROUND_INDEX if palette is not None else rgb_of(BACKGROUND_INDEX)
    size = tuple(side + side % 2 for side in frames.shape[1:3])
    rate = Fraction(fps).limit_denominator(1001)
    lookup = PaletteYuv.of(palette) if palette is not None else None
    with normal_priority(), ExitStack() as stack:
        outputs = [
            (path, codec, stack.enter_context(_video_output(path, codec, size, rate)))
            for path, codec in targets.items()
        ]

        def convert(frame: np.ndarray) -> av.VideoFrame:
            return yuv420_frame(pad_frames(frame[None], 2, pad)[0], lookup)

        converted = stack.enter_context(closing(_one_ahead(convert, frames)))
        for number, image in enumerate(converted):
            image.pts, image.time_base = number, 1 / rate
            for path, codec, (container, stream) in outputs:
                with encoder_errors(path, codec.encoder):
                    container.mux(stream.encode(image))
            tick("encode.frame")  # the crash tests' mid-encode moment; else nothing
        for path, codec, (container, stream) in outputs:
            with encoder_errors(path, codec.encoder):
                container.mux(stream.encode(None))
    return [Path(path) for path in targets]


# Frames of fewer pixels are converted on the encoding thread: a 256 px frame converts in
# 0.2 ms, less than handing it to a helper thread and back, and the helper's start and
# stop per file made small files 10 % slower to write (bench/README.md, stop 20).
AHEAD_PIXELS = 1 << 18


def _one_ahead(convert: Callable[[np.ndarray], T], frames: np.ndarray) -> Generator[T, None, None]:
    """``convert(frame)`` for each frame, the next one computed on a helper thread while
    the caller encodes the current one (numpy and the encoders let go of the GIL): the
    colour conversion overlaps the encoding, and memory holds two converted frames, not
    all. On one thread (generator/threads.py), and for frames under ``AHEAD_PIXELS``, each
    frame is converted when it is needed."""
    if helper_threads() == 1 or frames.shape[1] * frames.shape[2] < AHEAD_PIXELS:
        yield from (convert(frame) for frame in frames)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(convert, frames[0])
        for number in range(len(frames)):
            current = ahead.result()
            if number + 1 < len(frames):
                ahead = pool.submit(convert, frames[number + 1])
            yield current


@contextmanager
def _video_output(
    path: Path | str, codec: VideoCodec, size: tuple[int, int], rate: Fraction
) -> Iterator[tuple[av.container.OutputContainer, av.video.stream.VideoStream]]:
    """An open container and its yuv420p BT.709 video stream, written to a temp file
    that replaces ``path`` when the block ends without an error."""
    with (
        atomic_output(path, codec.encoder) as tmp,
        av.open(
            str(tmp), "w", format=codec.container, options=dict(codec.container_options)
        ) as container,
    ):
        stream = container.add_stream(codec.encoder, rate=rate)
        (stream.height, stream.width), stream.pix_fmt = size, "yuv420p"
        stream.options = codec.options_for(encoder_threads(size))
        context = stream.codec_context
        context.color_primaries = context.color_trc = context.colorspace = BT709
        context.color_range = LIMITED_RANGE
        yield container, stream


def write_mp4(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = defaults.FPS,
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write an H.264 MP4 (yuv420p, constant ``fps``, faststart); see ``write_video``."""
    return write_video(path, frames, palette, codec=H264, fps=fps, pad=pad)


def write_webm(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = defaults.FPS,
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write an AV1 WebM (yuv420p, constant ``fps``); see ``write_video``."""
    return write_video(path, frames, palette, codec=AV1, fps=fps, pad=pad)
