"""GIF, MP4 and PNG writers; the only module that talks to ffmpeg.

Frames come in two forms, as ``generator.render`` makes them: ``(T, H, W)`` uint8 palette
indices with a ``(256, 3)`` uint8 palette, or ``(T, H, W, 3)`` uint8 RGB (palette None).

* GIF: index frames are written as they are, the colormap as the palette (no quantisation,
  exact colours); RGB frames are quantised once to one adaptive palette for the whole
  sequence so colours do not flicker. Loops forever.
* MP4: H.264 (libx264) in yuv420p at a constant frame rate through imageio-ffmpeg's bundled
  ffmpeg, ``+faststart`` (the ``moov`` atom before ``mdat``, so a browser starts playing at
  once); sizes are padded to multiples of 16, never rescaled.

Every file is written under a temporary name in its folder and moved into place with
``os.replace``, so a killed build never leaves a half file under the final name. Failures
(ffmpeg missing or failing, disk full) raise a one-line ``EncodeError`` naming the file.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from generator.atomic import atomic_path
from generator.errors import EncodeError
from generator.render.colormaps import BACKGROUND_INDEX, rgb_of
from generator.render.frames import pad_frames

log = logging.getLogger(__name__)

MACRO_BLOCK = 16
QUANTISE_SAMPLE_FRAMES, QUANTISE_SAMPLE_PIXELS = 8, 1 << 21


# -- shared plumbing ---------------------------------------------------------------------
@contextmanager
def _atomic(path: Path | str) -> Iterator[Path]:
    """A temp path beside ``path`` that replaces it on success; ``OSError`` -> ``EncodeError``."""
    try:
        with atomic_path(path) as tmp:
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


def to_rgb(frames: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB ``(..., 3)`` uint8: ``palette[frames]`` for index frames, else ``frames``."""
    if palette is None:
        return frames
    return np.asarray(palette, dtype=np.uint8)[frames]


def quantise(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``(T, H, W, 3)`` -> ``(T, H, W)`` indices and one ``(256, 3)`` adaptive palette.

    The palette is built once (Pillow's fast octree: quicker than median cut and with a
    lower worst-case error on kernel patches) from a sample of the frames (up to 8 frames,
    about 2 M pixels), then every frame is mapped to its nearest colours without
    dithering, so a colour keeps its index over the whole sequence.
    """
    pick = np.unique(np.linspace(0, len(frames) - 1, QUANTISE_SAMPLE_FRAMES).astype(int))
    pixels = frames[pick].reshape(-1, 3)
    pixels = pixels[:: max(1, len(pixels) // QUANTISE_SAMPLE_PIXELS)]
    reference = Image.fromarray(np.ascontiguousarray(pixels[None])).quantize(
        256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    indices = np.stack(
        [
            np.asarray(Image.fromarray(f).quantize(palette=reference, dither=Image.Dither.NONE))
            for f in frames
        ]
    )
    colours = np.zeros((256, 3), dtype=np.uint8)
    found = np.asarray(reference.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    colours[: len(found)] = found
    return indices, colours


# -- GIF ---------------------------------------------------------------------------------
def write_gif(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    duration_ms: int | Sequence[int] = 200,
    loop: int = 0,
) -> Path:
    """Write an animated GIF that loops forever (``loop=0``); returns ``path``.

    ``duration_ms`` is one value or one per frame. Index frames keep their indices and
    palette exactly (one global colour table, no per-frame tables, no palette
    "optimisation" that would renumber colours); RGB frames are ``quantise``d first.
    Pillow merges identical consecutive frames into one longer frame (same timing,
    fewer frames in the file).
    """
    frames = _check(frames, palette)
    if palette is None:
        frames, palette = quantise(frames)
    flat = np.ascontiguousarray(palette, dtype=np.uint8).tobytes()
    images = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame), mode="P")
        image.putpalette(flat)
        images.append(image)
    durations = int(duration_ms) if np.ndim(duration_ms) == 0 else [int(d) for d in duration_ms]
    if isinstance(durations, list) and len(durations) != len(frames):
        raise ValueError(f"{len(durations)} durations for {len(frames)} frames")
    with _atomic(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=loop,
            optimize=False,
            palette=flat,
        )
    return Path(path)


# -- MP4 ---------------------------------------------------------------------------------
def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg (or ``IMAGEIO_FFMPEG_EXE``)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise EncodeError(f"ffmpeg not found ({exc}); install imageio-ffmpeg") from exc


def _ffmpeg_command(
    out: Path, width: int, height: int, fps: float, crf: int, preset: str
) -> list[str]:
    """ffmpeg reading raw RGB frames on stdin, writing H.264 yuv420p MP4 with faststart."""
    rate = str(Fraction(fps).limit_denominator(1001))
    return [
        ffmpeg_exe(),
        "-y",
        "-nostats",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-r",
        rate,
        "-i",
        "-",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-r",
        rate,
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out),
    ]


def _run_ffmpeg(cmd: list[str], frames: Iterator[np.ndarray], path: Path) -> None:
    """Feed ``frames`` to ffmpeg's stdin; a non-zero exit raises ``EncodeError``."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors
        )
        try:
            for frame in frames:
                proc.stdin.write(memoryview(np.ascontiguousarray(frame)))
        except BrokenPipeError:
            pass  # ffmpeg quit early; its exit code says why
        except BaseException:
            proc.kill()  # interrupted: never leave ffmpeg waiting on stdin
            proc.wait()
            raise
        finally:
            with suppress(BrokenPipeError):
                proc.stdin.close()
        rc = proc.wait()
        errors.seek(0)
        lines = errors.read().decode("utf-8", "replace").strip().splitlines()
    if rc != 0:
        why = lines[-1] if lines else f"exit status {rc}"
        raise EncodeError(f"{path}: ffmpeg failed ({why})")


def write_mp4(
    path: Path | str,
    frames: np.ndarray,
    palette: np.ndarray | None = None,
    *,
    fps: float = 5.0,
    crf: int = 20,
    preset: str = "veryfast",
    pad: int | tuple[int, int, int] | None = None,
) -> Path:
    """Write an H.264 MP4 (yuv420p, constant ``fps``, faststart); returns ``path``.

    Index frames are converted per frame with ``palette[indices]``. Sizes that are not
    multiples of 16 are padded right/bottom, never rescaled, with ``pad``: a palette index
    for index frames, an RGB triple for RGB ones; by default the renderer's background
    colour (``BACKGROUND_INDEX``, or its colour in the seed palette), so the padding reads
    as margin, not as zero activations.
    """
    frames = _check(frames, palette)
    if pad is None:
        pad = BACKGROUND_INDEX if palette is not None else rgb_of(BACKGROUND_INDEX)
    height, width = frames.shape[1:3]
    height += -height % MACRO_BLOCK
    width += -width % MACRO_BLOCK

    def rgb_frames() -> Iterator[np.ndarray]:
        for frame in frames:  # one frame at a time: memory stays one frame
            yield to_rgb(pad_frames(frame[None], MACRO_BLOCK, pad)[0], palette)

    with _atomic(path) as tmp:
        _run_ffmpeg(_ffmpeg_command(tmp, width, height, fps, crf, preset), rgb_frames(), Path(path))
    return Path(path)


# -- stills ------------------------------------------------------------------------------
def write_png(path: Path | str, image: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write one image as PNG: ``(H, W)`` indices as a palette PNG, or ``(H, W, 3)`` RGB."""
    image = _check(image, palette, ndim=2)
    still = Image.fromarray(np.ascontiguousarray(image), mode="P" if palette is not None else "RGB")
    if palette is not None:
        still.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    with _atomic(path) as tmp:
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
