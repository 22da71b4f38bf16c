"""Pictures to show from stored images of any channel count: grey, RGB or a mapping.

The store keeps images as the model saw them (C channels); the gallery shows RGB. Grey
(C = 1) repeats its one channel, RGB (C = 3) is itself, and any other C shows the mapping
the recorder stored (``probes/display``) or, without one, its first three channels (a
two-channel image gets a black blue channel). Pure numpy: no zarr, no rendering.
"""

from __future__ import annotations

import numpy as np


def first_three(images: np.ndarray, *, axis: int) -> np.ndarray:
    """The default display of C channels along ``axis`` as 3: grey repeated, three as they
    are, the first three of more, two padded with a zero channel."""
    channels = images.shape[axis]
    if channels == 1:
        return np.repeat(images, 3, axis=axis)
    if channels >= 3:
        return np.take(images, [0, 1, 2], axis=axis)
    pad = [(0, 0)] * images.ndim
    pad[axis] = (0, 3 - channels)
    return np.pad(images, pad)


def pictures_hwc(images: np.ndarray, display: np.ndarray | None) -> np.ndarray:
    """(P, C, H, W) uint8 stored probes (and their stored RGB ``display``, if any) ->
    (P, H, W, 3) uint8 pictures to show, contiguous."""
    shown = display if display is not None else first_three(images, axis=1)
    return np.ascontiguousarray(np.moveaxis(shown, 1, -1))
