"""Stills: palette or RGB PNG files (contact sheets, posters) and PNG bytes for images the
site renders in memory before writing anything."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from generator.encode.output import atomic_output, checked_frames


def write_png(path: Path | str, image: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """Write one image as PNG: ``(H, W)`` indices as a palette PNG, or ``(H, W, 3)`` RGB."""
    image = checked_frames(image, palette, ndim=2)
    still = Image.fromarray(np.ascontiguousarray(image), mode="P" if palette is not None else "RGB")
    if palette is not None:
        still.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    with atomic_output(path, "PNG") as tmp:
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


def palette_png_bytes(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """``(H, W)`` uint8 palette indices with a ``(256, 3)`` palette as palette-PNG bytes:
    one byte a pixel and no ``optimize`` pass, so the many small figures the site draws
    in memory (a thumbnail per layer) cost a few hundred bytes and well under a
    millisecond each, where RGBA with ``optimize`` took a tenth of a second."""
    image = checked_frames(indices, palette, ndim=2)
    still = Image.fromarray(np.ascontiguousarray(image), mode="P")
    still.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    still.save(buffer, format="PNG")
    return buffer.getvalue()


def write_poster(
    path: Path | str, frames: np.ndarray, palette: np.ndarray | None = None, *, which: str = "last"
) -> Path:
    """Write the ``first`` or ``last`` frame of a sequence as a PNG (a video's poster)."""
    if which not in ("first", "last"):
        raise ValueError(f"poster frame must be 'first' or 'last', not {which!r}")
    return write_png(path, np.asarray(frames)[0 if which == "first" else -1], palette)
