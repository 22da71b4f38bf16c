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
  colours meant; the planes are computed in numpy (for index frames one lookup per plane
  in the palette's ``yuv_of`` table). Odd sizes are padded by one pixel (yuv420p needs
  even sides), never rescaled. ``mp4``: H.264 with ``+faststart`` (the ``moov`` atom first,
  so a browser starts at once), which every browser plays; ``webm``: AV1 (SVT-AV1), about
  a third of the MP4's bytes at the same quality, which the gallery offers first.

Every file is written under a temporary name in its folder and moved into place with
``os.replace``, so a killed build never leaves a half file under the final name. Failures
(encoder missing or failing, disk full) raise a one-line ``EncodeError`` naming the file.
"""

from __future__ import annotations

import ctypes
import io
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

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

log = logging.getLogger(__name__)

QUANTISE_SAMPLE_FRAMES, QUANTISE_SAMPLE_PIXELS = 8, 1 << 21
BT709 = 1  # the AVCOL_PRI / TRC / SPC value of BT.709 in FFmpeg's enums
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG: Y in 16..235, the range browsers assume


@dataclass(frozen=True)
class VideoCodec:
    """One browser video format: container, FFmpeg encoder and its settings."""

    container: str
    encoder: str
    options: Mapping[str, str]
    container_options: Mapping[str, str] = field(default_factory=dict)


# Settings chosen on frames of a 512 px bench store (bench/README.md, "Formats and sizes"):
# PSNR against the lossless frames within about 1 dB of the old CRF 20 MP4 (whose own
# loss is mostly yuv420p's half-resolution colour), at half (MP4) and a third (AV1) of
# its bytes. The MP4 is the fallback for browsers without AV1, so its preset stays fast.
# One encoder thread each: a build runs files in parallel (--jobs), where encoder threads
# only compete for the same cores, and a threaded x264 or SVT-AV1 writes different bytes
# on machines with different core counts; one thread writes the same file everywhere.
H264 = VideoCodec(
    "mp4",
    "libx264",
    {"crf": "24", "preset": "veryfast", "threads": "1"},
    {"movflags": "+faststart"},
)
# Matroska gives each file a random track UID (random bytes in the WebM) unless bitexact:
# the same frames must make the same file, on a cluster's worker or here, build after build.
AV1 = VideoCodec(
    "webm",
    "libsvtav1",
    {"crf": "32", "preset": "10", "svtav1-params": "lp=1"},
    {"fflags": "+bitexact"},
)
VIDEO_CODECS: Mapping[str, VideoCodec] = {"webm": AV1, "mp4": H264}


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
        if np.asarray(palette).shape != (256, 3) or frames.ndim != ndim:
            raise ValueError(f"index frames {frames.shape} need a (256, 3) palette")
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
    ``quantise``d first.
    """
    frames = _check(frames, palette)
    if palette is None:
        frames, palette = quantise(frames)
    centis = _gif_durations(duration_ms, len(frames))
    argb = np.empty((256, 4), dtype=np.uint8)
    argb[:, 0], argb[:, 1:] = 255, palette
    height, width = frames.shape[1:3]
    with (
        _atomic(path, "GIF") as tmp,
        av.open(str(tmp), "w", format="gif", options={"loop": str(loop)}) as container,
    ):
        stream = container.add_stream("gif", rate=100)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        stream.time_base = Fraction(1, 100)
        starts = np.concatenate([[0], np.cumsum(centis)[:-1]]).tolist()
        length = dict(
            zip(starts, centis, strict=True)
        )  # the muxer reads each delay from its packet

        def timed(packets: list[av.Packet]) -> list[av.Packet]:
            for packet in packets:
                packet.duration = length[packet.pts]
            return packets

        for frame, start in zip(frames, starts, strict=True):
            image = av.VideoFrame.from_ndarray((np.ascontiguousarray(frame), argb), format="pal8")
            image.pts, image.time_base = start, Fraction(1, 100)
            container.mux(timed(stream.encode(image)))
        container.mux(timed(stream.encode(None)))
    return Path(path)


# -- video -------------------------------------------------------------------------------
def yuv420_planes(frame: np.ndarray, table: np.ndarray | None) -> np.ndarray:
    """One even-sized frame as a ``(H * 3 // 2, W)`` uint8 yuv420p image (Y, then Cb and
    Cr at half resolution, each the mean of its 2x2 block), BT.709 limited range. For
    index frames ``table`` is the palette's ``yuv_of``: one lookup per pixel and plane, no
    matrix. Plane by plane, with the 2x2 means as four strided adds: a generic mean over
    reshaped axes was half of a whole build's time (bench/README.md)."""
    height, width = frame.shape[:2]
    planes = np.empty((height * 3 // 2, width), dtype=np.uint8)
    chroma_out = planes[height:].reshape(2, (height // 2) * (width // 2))
    if table is not None:
        planes[:height] = np.rint(table[:, 0]).astype(np.uint8)[frame]
        chroma = (table[:, 1][frame], table[:, 2][frame])
    else:
        yuv = yuv_of(frame)
        planes[:height] = np.rint(yuv[..., 0])
        chroma = (yuv[..., 1], yuv[..., 2])
    for out, plane in zip(chroma_out, chroma, strict=True):
        out[:] = np.rint(_block_means(plane)).ravel()
    return planes


def _block_means(plane: np.ndarray) -> np.ndarray:
    """The mean of each 2x2 block of an even-sized float plane, at half resolution."""
    total = plane[0::2, 0::2] + plane[1::2, 0::2]
    total += plane[0::2, 1::2]
    total += plane[1::2, 1::2]
    total *= 0.25
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
    table = yuv_of(palette) if palette is not None else None
    with _normal_priority(), ExitStack() as stack:
        outputs = [
            (path, codec, stack.enter_context(_video_output(path, codec, size, rate)))
            for path, codec in targets.items()
        ]
        for number, frame in enumerate(frames):  # one frame at a time: memory stays flat
            even = pad_frames(frame[None], 2, pad)[0]
            image = av.VideoFrame.from_ndarray(yuv420_planes(even, table), format="yuv420p")
            image.pts, image.time_base = number, 1 / rate
            for path, codec, (container, stream) in outputs:
                with _named(path, codec.encoder):
                    container.mux(stream.encode(image))
        for path, codec, (container, stream) in outputs:
            with _named(path, codec.encoder):
                container.mux(stream.encode(None))
    return [Path(path) for path in targets]


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
        stream.options = dict(codec.options)
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
