"""RGB frames to palette indices, and back: a GIF needs one palette for the whole
sequence (``quantise``), so colours do not flicker from frame to frame."""

from __future__ import annotations

import numpy as np
from PIL import Image

from generator.render.colormaps import indices_of, nearest_index_table

QUANTISE_SAMPLE_FRAMES, QUANTISE_SAMPLE_PIXELS = 8, 1 << 21


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
