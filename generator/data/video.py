"""Video ingestion: a gameplay clip becomes a class folder of square PNG frames.

Frames are decoded by the ffmpeg that imageio-ffmpeg bundles (any container ffmpeg reads,
whatever the file extension), every N-th is kept, centre-cropped at its own pixel scale and
dropped if it is nearly black (loading screens, fades). File names come from the video's
content hash and the frame number, so re-running the same clip adds nothing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image
from tqdm import tqdm

from generator.atomic import atomic_path
from generator.data.images import fit_square
from generator.errors import DataError

log = logging.getLogger(__name__)

MIN_SIZE = 16
LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 weights: brightness as people see it


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did: frames read, kept, dropped as dark, already on disk; and where."""

    kept: int
    dropped_dark: int
    existing: int
    read: int
    out_dir: Path


def ingest_video(
    video: Path,
    label: str,
    out: Path,
    *,
    size: int = 512,
    every: int = 1,
    dark_threshold: float = 16.0,
) -> IngestReport:
    """Write every ``every``-th non-dark frame of ``video`` as a ``size`` px PNG in out/label."""
    video, out_dir = Path(video), Path(out) / label
    check_ingest_options(video, label, size, every)
    check_out_folder(Path(out), out_dir)
    prefix = f"{safe_stem(video)}-{file_digest(video)[:8]}"
    tally: Counter[str] = Counter()
    with (
        read_frames(video) as (frames, total),
        tqdm(total=total, desc=label, unit="frame", disable=None) as progress,
    ):
        for index, frame in enumerate(frames):
            progress.update()
            tally["read"] += 1
            if index % every == 0:
                target = out_dir / f"{prefix}-f{index:06d}.png"
                tally[save_frame(frame, target, size, dark_threshold)] += 1
    if tally["read"] == 0:
        raise DataError(f"{video} has no video frames; pass a video file with a picture track")
    if tally["existing"]:
        log.info(
            "%s: %d frames were already in %s (delete them to ingest with other settings)",
            video,
            tally["existing"],
            out_dir,
        )
    return IngestReport(
        kept=tally["kept"],
        dropped_dark=tally["dark"],
        existing=tally["existing"],
        read=tally["read"],
        out_dir=out_dir,
    )


def check_ingest_options(video: Path, label: str, size: int, every: int) -> None:
    """Reject what cannot work before decoding anything, naming the file or option."""
    if not video.exists():
        raise DataError(f"video {video} does not exist; pass an existing video file")
    if not video.is_file():
        raise DataError(f"{video} is not a file; pass a video file")
    if video.stat().st_size == 0:
        raise DataError(f"video {video} is empty (0 bytes); pass a complete video file")
    check_label(label)
    if every < 1:
        raise DataError(f"--every {every}: must be 1 or more (1 keeps every frame)")
    if size < MIN_SIZE:
        raise DataError(f"--size {size}: too small; use at least {MIN_SIZE} pixels")


def check_out_folder(out: Path, out_dir: Path) -> None:
    """``--out`` (or the class folder in it) must be a folder or not exist yet; a file in
    the way is named before any frame is decoded."""
    for path in (out_dir, *out_dir.parents):
        if path.is_dir():
            return
        if path.exists() or path.is_symlink():
            what = f"--out {out}" if path == out else f"{path} (in --out {out})"
            raise DataError(f"{what} is a file, not a folder; pass a folder for the frames")


def check_label(label: str) -> None:
    """A label is one visible folder name: no separators, not hidden, not '.' or '..'."""
    if (
        not label.strip()
        or label.startswith(".")
        or label != label.strip()
        or any(bad in label for bad in ("/", "\\", "\0"))
    ):
        raise DataError(
            f"--label {label!r} is not a usable class folder name; use a plain "
            "name such as 'floodzone' (no slashes, not starting with '.')"
        )


def safe_stem(video: Path) -> str:
    """The video's name reduced to characters safe in any file system, never hidden."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", video.stem).strip("._") or "video"


def file_digest(path: Path) -> str:
    """SHA-1 of the file bytes: the same clip gets the same names even if renamed/touched."""
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def read_frames(video: Path) -> Iterator[tuple[Iterator[np.ndarray], int | None]]:
    """Decoded ``(H, W, 3)`` uint8 frames and an estimated count; ffmpeg is always stopped."""
    reader = imageio_ffmpeg.read_frames(str(video))
    try:
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration) as exc:
            raise DataError(
                f"cannot read {video} as a video ({_last_line(exc)}); pass a video "
                "file ffmpeg can decode"
            ) from exc
        width, height = meta["size"]
        yield _frames(reader, width, height, video), _estimate_count(meta)
    finally:
        reader.close()


def _frames(reader: Iterator[bytes], width: int, height: int, video: Path) -> Iterator[np.ndarray]:
    """Frames until the stream ends; a damaged tail (cut-off download) ends it with a warning."""
    try:
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("%s: stopped reading at a damaged part (%s)", video, _last_line(exc))


def _estimate_count(meta: dict) -> int | None:
    """Frames expected from duration x fps, for the progress bar only."""
    duration, fps = meta.get("duration"), meta.get("fps")
    if duration and fps and np.isfinite(duration * fps):
        return round(duration * fps)
    return None


def _last_line(exc: BaseException) -> str:
    """ffmpeg's errors carry its whole log; the last non-empty line says what went wrong."""
    if "does not contain any stream" in str(exc):
        return "it has no video stream"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def save_frame(frame: np.ndarray, target: Path, size: int, dark_threshold: float) -> str:
    """Crop and write one frame unless it exists or its crop is dark; say which happened."""
    if target.exists():
        return "existing"
    crop = fit_square(Image.fromarray(frame, "RGB"), size, native_scale=True)
    if mean_luminance(np.asarray(crop)) < dark_threshold:
        return "dark"
    write_png(crop, target)
    return "kept"


def mean_luminance(rgb: np.ndarray) -> float:
    """Mean perceived brightness (0-255) of an ``(H, W, 3)`` uint8 image."""
    return float(rgb.reshape(-1, 3).mean(axis=0) @ LUMA)


def write_png(image: Image.Image, target: Path) -> None:
    """Write via a hidden temp file and rename, so a killed run leaves no half PNG behind.

    The class folder is made here, at the first kept frame: an unreadable or all-dark video
    must not leave an empty class folder that would make the dataset unloadable."""
    try:
        with atomic_path(target) as partial:
            image.save(partial, format="PNG")
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        advice = "free some space or pick another --out" if full else "pick another --out"
        raise DataError(f"cannot write {target} ({exc.strerror or exc}); {advice}") from exc
