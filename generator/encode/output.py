"""What every writer shares: a file appears whole or not at all, an encoder failure is one
line naming the file, and frames are checked against the two forms ``generator.render``
makes (see the package doc)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from generator.atomic import atomic_path
from generator.errors import EncodeError


@contextmanager
def encoder_errors(path: Path | str, what: str) -> Iterator[None]:
    """An encoder failure in the block becomes one ``EncodeError`` line naming ``path``."""
    try:
        yield
    except av.FFmpegError as exc:
        why = " ".join(str(exc.strerror or exc).split())
        raise EncodeError(f"{path}: {what} encoding failed ({why})") from exc


@contextmanager
def atomic_output(path: Path | str, what: str) -> Iterator[Path]:
    """A temp path beside ``path`` that replaces it on success; an encoder or file-system
    failure becomes one ``EncodeError`` line naming ``path`` (the temp file is removed)."""
    try:
        with encoder_errors(path, what), atomic_path(path) as tmp:
            yield tmp
    except OSError as exc:
        raise EncodeError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def checked_frames(frames: np.ndarray, palette: np.ndarray | None, ndim: int = 3) -> np.ndarray:
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
