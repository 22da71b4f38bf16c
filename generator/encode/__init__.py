"""GIF, MP4, WebM and PNG writers; the only module that talks to an encoder.

Encoding runs in this process through PyAV (FFmpeg's libraries, shipped in the ``av``
wheel): no ffmpeg process per file, which was most of a build's time for small files.

Frames come in two forms, as ``generator.render`` makes them: ``(T, H, W)`` uint8 palette
indices with a ``(256, 3)`` uint8 palette, or ``(T, H, W, 3)`` uint8 RGB (palette None).

* GIF: index frames are written as they are, the colormap as the palette (exact colours,
  no quantisation); RGB frames are mapped once, for the whole sequence, to one palette
  (``quantise``) so colours do not flicker. FFmpeg's GIF encoder stores only the changed
  rectangle of each frame. Loops forever.
* Video (``VIDEO_CODECS``): yuv420p, limited-range BT.709, tagged so browsers show the
  colours meant; the planes are computed in numpy (for index frames through the palette's
  ``PaletteYuv`` lookups, no colour matrix per pixel). Odd sizes are padded by one pixel
  (yuv420p needs even sides), never rescaled. ``mp4``: H.264 with ``+faststart`` (the
  ``moov`` atom first, so a browser starts at once), which every browser plays; ``webm``:
  AV1 (SVT-AV1), about a third of the MP4's bytes at the same quality, which the gallery
  offers first.

Every file is written under a temporary name in its folder and moved into place with
``os.replace``, so a killed build never leaves a half file under the final name. Failures
(encoder missing or failing, disk full) raise a one-line ``EncodeError`` naming the file.
"""

from __future__ import annotations

import ctypes
import io
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

# SVT-AV1 prints a banner and its settings to stderr for every file unless told otherwise
# (1 = errors only); read when the encoder starts, so set before any file is written.
os.environ.setdefault("SVT_LOG", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from generator.atomic import atomic_path  # noqa: E402
from generator.errors import EncodeError  # noqa: E402
from generator.render.colormaps import (  # noqa: E402
    BACKGROUND_INDEX,
    indices_of,
    nearest_index_table,
    rgb_of,
    yuv_of,
)
from generator.render.frames import pad_frames  # noqa: E402
from generator.threads import helper_threads  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")

QUANTISE_SAMPLE_FRAMES, QUANTISE_SAMPLE_PIXELS = 8, 1 << 21
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
# ``encoder_threads``.
H264 = VideoCodec(
    "mp4",
    "libx264",
    {"crf": "24", "preset": "veryfast", "x264-params": "bframes=0:me=dia:subme=1"},
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


# -- the encoders' threads ---------------------------------------------------------------
# SVT-AV1, run as root (euid 0, CAP_SYS_NICE), switches the thread that opens the first
# encoder of a process to real-time SCHED_FIFO priority 99 and never switches it back; every
# thread created later inherits it: its own encoder threads, a build's worker processes, the
# user's training. Two such processes on a 2-core machine starved everything else, and a
# spawned worker whose spin-waiting threads ran at FIFO 99 never finished (seen here). Its
# check runs once per process; it fails, and SVT-AV1 then uses normal threads for good,
# when the calling thread lacks CAP_SYS_NICE. So each encode runs with that capability out
# of the thread's effective set and the thread's scheduling restored afterwards.
CAP_SYS_NICE = 23
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _thread_capabilities(libc: ctypes.CDLL) -> tuple[_CapHeader, ctypes.Array] | None:
    """This thread's capability sets (Linux), or None where they cannot be read."""
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return None
    return header, data


@contextmanager
def _normal_priority() -> Iterator[None]:
    """Run the block with CAP_SYS_NICE out of this thread's effective set, then put the
    thread's scheduling policy and capabilities back as they were (Linux; elsewhere and
    for unprivileged users this changes nothing)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    libc = ctypes.CDLL(None, use_errno=True)
    caps = _thread_capabilities(libc)
    nice = 1 << CAP_SYS_NICE
    dropped = caps is not None and bool(caps[1][0].effective & nice)
    if dropped:
        caps[1][0].effective &= ~nice
        dropped = libc.capset(ctypes.byref(caps[0]), caps[1]) == 0
    try:
        yield
    finally:
        if dropped:
            caps[1][0].effective |= nice
            libc.capset(ctypes.byref(caps[0]), caps[1])
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


# -- shared plumbing ---------------------------------------------------------------------
@contextmanager
def _named(path: Path | str, what: str) -> Iterator[None]:
    """An encoder failure in the block becomes one ``EncodeError`` line naming ``path``."""
    try:
        yield
    except av.FFmpegError as exc:
        why = " ".join(str(exc.strerror or exc).split())
        raise EncodeError(f"{path}: {what} encoding failed ({why})") from exc


@contextmanager
def _atomic(path: Path | str, what: str) -> Iterator[Path]:
    """A temp path beside ``path`` that replaces it on success; an encoder or file-system
    failure becomes one ``EncodeError`` line naming ``path`` (the temp file is removed)."""
    try:
        with _named(path, what), atomic_path(path) as tmp:
            yield tmp
    except OSError as exc:
        raise EncodeError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _check(frames: np.ndarray, palette: np.ndarray | None, ndim: int = 3) -> np.ndarray:
    """``frames`` as uint8, checked against the two frame forms (see the module doc)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if palette is not None:
        palette = np.asarray(palette)
        if palette.shape != (256, 3) or palette.dtype != np.uint8 or frames.ndim != ndim:
            raise ValueError(f"index frames {frames.shape} need a (256, 3) uint8 palette")
    elif frames.ndim != ndim + 1 or frames.shape[-1] != 3:
        raise ValueError(f"RGB frames must end in 3 channels, got {frames.shape}")
    if ndim == 3 and len(frames) == 0:
        raise ValueError("no frames to write")
    return frames


def _encoder(path: Path | str, name: str) -> None:
    """Raise a one-line ``EncodeError`` when this PyAV build lacks encoder ``name``."""
    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError) as exc:
        raise EncodeError(
            f"{path}: this PyAV build has no {name} encoder; pip install -U 'av>=17'"
        ) from exc


def to_rgb(frames: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB ``(..., 3)`` uint8: ``palette[frames]`` for index frames, else ``frames``."""
    if palette is None:
        return frames
    return np.asarray(palette, dtype=np.uint8)[frames]


def quantise(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``(T, H, W, 3)`` -> ``(T, H, W)`` indices and one ``(256, 3)`` palette.

    The palette is built once (Pillow's fast octree) from a sample of the frames (up to 8
    frames, about 2 M pixels); then all frames are mapped in one gather through a table of
    each colour's nearest palette entry (``nearest_index_table``), so a colour keeps its
    index over the whole sequence and no frame goes through a quantiser.
    """
    pick = np.unique(np.linspace(0, len(frames) - 1, QUANTISE_SAMPLE_FRAMES).astype(int))
    pixels = frames[pick].reshape(-1, 3)
    pixels = pixels[:: max(1, len(pixels) // QUANTISE_SAMPLE_PIXELS)]
    reference = Image.fromarray(np.ascontiguousarray(pixels[None])).quantize(
        256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    colours = np.zeros((256, 3), dtype=np.uint8)
    found = np.asarray(reference.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    colours[: len(found)] = found
    table = nearest_index_table(colours[: max(len(found), 1)])
    return indices_of(frames, table), colours


# -- GIF ---------------------------------------------------------------------------------
def _gif_durations(duration_ms: int | Sequence[int], count: int) -> list[int]:
    """Per-frame durations in GIF units (1/100 s, at least 1), one per frame."""
    if np.ndim(duration_ms) == 0:
        durations = [int(duration_ms)] * count
    else:
        durations = [int(d) for d in duration_ms]
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
    frames = _check(frames, palette)
    if palette is None:
        frames, palette = quantise(frames)
    centis = _gif_durations(duration_ms, len(frames))
    starts = np.concatenate([[0], np.cumsum(centis)[:-1]]).tolist()
    length = dict(zip(starts, centis, strict=True))  # the muxer reads each delay from its packet
    argb = np.empty((256, 4), dtype=np.uint8)
    argb[:, 0], argb[:, 1:] = 255, palette
    runs = _gif_runs(len(frames), frames[0].size)
    with (
        _atomic(path, "GIF") as tmp,
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
        image = av.VideoFrame.from_ndarray(
            (np.ascontiguousarray(frames[number]), argb), format="pal8"
        )
        image.pts, image.time_base = starts[number], GIF_TIME_BASE
        packets += context.encode(image)
    packets += context.encode(None)
    return [packet for packet in packets if packet.pts >= first]


# -- video -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PaletteYuv:
    """A palette's yuv420p lookups, indexed by a *pair* of horizontally adjacent pixels
    (an index frame read as little-endian uint16, ``left | right << 8``), so each lookup
    converts two pixels: a third of the time of per-pixel lookups on a 1-megapixel grid,
    where the conversion was a third of writing its WebM (bench/README.md, stop 21).

    ``luma_pairs`` ``(65536,)`` little-endian uint16 holds both pixels' Y bytes in frame
    order. ``chroma_pairs`` ``(65536,)`` uint32 holds the sum of both pixels' Cb and Cr in
    1/64 steps, packed into its low and high 16 bits, so a 2x2 block's sums are two lookups
    and one add (four 1/64-step values of at most 255, plus 128 to round, sum to at most
    65 408: the halves never carry into each other)."""

    luma_pairs: np.ndarray
    chroma_pairs: np.ndarray

    @classmethod
    def of(cls, palette: np.ndarray) -> PaletteYuv:
        """The lookups of a ``(256, 3)`` palette's colours (``yuv_of``); the same palette
        (a build has a handful) is computed once per process."""
        palette = np.ascontiguousarray(palette, dtype=np.uint8)
        return _palette_yuv(palette.tobytes())


@lru_cache(maxsize=16)
def _palette_yuv(palette: bytes) -> PaletteYuv:
    """``PaletteYuv.of`` for a palette's bytes (hashable, so the tables are made once)."""
    table = yuv_of(np.frombuffer(palette, dtype=np.uint8).reshape(256, 3))
    luma = np.rint(table[:, 0]).astype(PAIR)
    cb, cr = (np.rint(table[:, k] * CHROMA_STEPS).astype(np.uint32) for k in (1, 2))
    chroma = cb | (cr << 16)
    # Row: the right pixel (high byte), column: the left pixel (low byte).
    luma_pairs = (luma[None, :] | (luma[:, None] << 8)).astype(PAIR).ravel()
    chroma_pairs = (chroma[None, :] + chroma[:, None]).ravel()
    for pairs in (luma_pairs, chroma_pairs):
        pairs.flags.writeable = False  # shared by every caller of this palette
    return PaletteYuv(luma_pairs, chroma_pairs)


CHROMA_STEPS = 64  # fixed-point steps per chroma level in ``PaletteYuv.chroma_pairs``
PAIR = np.dtype("<u2")  # two uint8 pixels, the left one in the low byte on any machine


def yuv420_planes(frame: np.ndarray, lookup: PaletteYuv | None) -> np.ndarray:
    """One even-sized frame as a ``(H * 3 // 2, W)`` uint8 yuv420p image (Y, then Cb and
    Cr at half resolution, each the mean of its 2x2 block), BT.709 limited range: see
    ``_fill_yuv420``. The encoders get ``yuv420_frame``; this array form is what tests and
    benches compare against."""
    height, width = frame.shape[:2]
    planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    _fill_yuv420(frame, lookup, planes[:height], chroma[0], chroma[1])
    return planes


def yuv420_frame(frame: np.ndarray, lookup: PaletteYuv | None) -> av.VideoFrame:
    """One even-sized frame as a yuv420p ``av.VideoFrame`` (the planes of
    ``yuv420_planes``), computed straight into the frame's own planes: PyAV's
    ``from_ndarray`` copies an array twice, which cost as much as computing a 1-megapixel
    frame's planes (bench/README.md, stop 21)."""
    height, width = frame.shape[:2]
    image = av.VideoFrame(width, height, "yuv420p")
    _fill_yuv420(frame, lookup, *(_plane_array(plane) for plane in image.planes))
    return image


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable ``(height, width)`` view of one plane of a frame, without the padding
    FFmpeg adds to each row."""
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _fill_yuv420(
    frame: np.ndarray, lookup: PaletteYuv | None, y: np.ndarray, cb: np.ndarray, cr: np.ndarray
) -> None:
    """Write an even-sized frame's Y plane into ``y`` and the 2x2 means of its Cb and Cr
    into ``cb`` and ``cr`` (BT.709 limited range); callers pad odd sides (``pad_frames``).
    Index frames go through their palette's ``lookup``, two pixels per lookup (no colour
    matrix per pixel); RGB frames through ``yuv_of``. Plane by plane, with the 2x2 means
    as strided adds: a generic mean over reshaped axes was half of a whole build's time
    (bench/README.md)."""
    if lookup is None:
        yuv = yuv_of(frame)
        y[:] = np.rint(yuv[..., 0])
        cb[:] = np.rint(_block_sums(yuv[..., 1]) * 0.25)
        cr[:] = np.rint(_block_sums(yuv[..., 2]) * 0.25)
        return
    pairs = np.ascontiguousarray(frame).view(PAIR)  # (H, W / 2)
    y.view(PAIR)[:] = np.take(lookup.luma_pairs, pairs)
    sums = np.take(lookup.chroma_pairs, pairs[0::2])  # both planes, 4 * CHROMA_STEPS
    sums += np.take(lookup.chroma_pairs, pairs[1::2])  # per level
    sums += (2 * CHROMA_STEPS) * (1 | 1 << 16)  # round half up in both halves
    shift = (4 * CHROMA_STEPS).bit_length() - 1
    np.bitwise_and(sums >> shift, 0xFF, out=cb, casting="unsafe")
    np.right_shift(sums, 16 + shift, out=cr, casting="unsafe")


def _block_sums(plane: np.ndarray) -> np.ndarray:
    """The sum of each 2x2 block of an even-sized plane, at half resolution."""
    total = plane[0::2, 0::2] + plane[1::2, 0::2]
    total += plane[0::2, 1::2]
    total += plane[1::2, 1::2]
    return total


def write_video(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    codec: VideoCodec,
    fps: float = 4.0,
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
    targets: Mapping[Path | str, VideoCodec],
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = 4.0,
    pad: int | tuple[int, int, int] | None = None,
) -> list[Path]:
    """Write the same ``frames`` to every ``path: codec`` of ``targets`` in one pass (see
    ``write_video``): each frame's yuv planes are computed once and go to every encoder,
    which halves the colour conversion of a WebM + MP4 pair. Returns the paths."""
    frames = _check(frames, palette)
    for path, codec in targets.items():
        _encoder(path, codec.encoder)
    if pad is None:
        pad = BACKGROUND_INDEX if palette is not None else rgb_of(BACKGROUND_INDEX)
    size = tuple(side + side % 2 for side in frames.shape[1:3])
    rate = Fraction(fps).limit_denominator(1001)
    lookup = PaletteYuv.of(palette) if palette is not None else None
    with _normal_priority(), ExitStack() as stack:
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
                with _named(path, codec.encoder):
                    container.mux(stream.encode(image))
        for path, codec, (container, stream) in outputs:
            with _named(path, codec.encoder):
                container.mux(stream.encode(None))
    return [Path(path) for path in targets]


# Frames of fewer pixels are converted on the encoding thread: a 256 px frame converts in
# 0.2 ms, less than handing it to a helper thread and back, and the helper's start and
# stop per file made small files 10 % slower to write (bench/README.md, stop 20).
AHEAD_PIXELS = 1 << 18


def _one_ahead(convert: Callable[[np.ndarray], T], frames: np.ndarray) -> Iterator[T]:
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
        _atomic(path, codec.encoder) as tmp,
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
    fps: float = 4.0,
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write an H.264 MP4 (yuv420p, constant ``fps``, faststart); see ``write_video``."""
    return write_video(path, frames, palette, codec=H264, fps=fps, pad=pad)


def write_webm(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = 4.0,
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write an AV1 WebM (yuv420p, constant ``fps``); see ``write_video``."""
    return write_video(path, frames, palette, codec=AV1, fps=fps, pad=pad)


# -- stills ------------------------------------------------------------------------------
def write_png(path: Path | str, image: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write one image as PNG: ``(H, W)`` indices as a palette PNG, or ``(H, W, 3)`` RGB."""
    image = _check(image, palette, ndim=2)
    still = Image.fromarray(np.ascontiguousarray(image), mode="P" if palette is not None else "RGB")
    if palette is not None:
        still.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    with _atomic(path, "PNG") as tmp:
        still.save(tmp, format="PNG")
    return Path(path)


def png_bytes(image: np.ndarray) -> bytes:
    """One ``(H, W, 4)`` uint8 RGBA image as PNG bytes, for files the site renders in
    memory before writing anything (e.g. the confusion matrix of many classes)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) RGBA image, got shape {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_poster(
    path: Path | str, frames: np.ndarray, palette: np.ndarray | None = None, *, which: str = "last"
) -> Path:
    """Write the ``first`` or ``last`` frame of a sequence as a PNG (a video's poster)."""
    if which not in ("first", "last"):
        raise ValueError(f"poster frame must be 'first' or 'last', not {which!r}")
    return write_png(path, np.asarray(frames)[0 if which == "first" else -1], palette)
