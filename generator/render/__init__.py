"""The renderer: recorded arrays in, frames (palette indices or RGB) out; no I/O of its own.

It takes plain numpy arrays (the build stage reads the store and passes them in, or a
function that reads one epoch, as ``frames.layer_frames_by_epoch`` takes) and never
writes files (``generator.encode`` does). Modules: ``colormaps`` (values -> palette
indices, scale modes), ``frames`` (grids of channels over epochs), ``layout`` (tile
sizes, tiling, padding, caption strips), ``captions`` (text strips), ``kernels``,
``probs`` (probe image + class bars) and ``contact`` (contact sheets).
"""

from generator.render.colormaps import (
    COLORMAPS,
    SCALE_MODES,
    Mapped,
    Scales,
    compute_scales,
    map_values,
    palette,
)
from generator.render.contact import ContactSheet, choose_epochs, contact_sheet
from generator.render.frames import Frames, channel_frames, grid_frames, layer_frames
from generator.render.kernels import kernel_frames
from generator.render.layout import pad_frames
from generator.render.probs import probe_frames

__all__ = [
    "COLORMAPS",
    "SCALE_MODES",
    "ContactSheet",
    "Frames",
    "Mapped",
    "Scales",
    "channel_frames",
    "choose_epochs",
    "compute_scales",
    "contact_sheet",
    "grid_frames",
    "kernel_frames",
    "layer_frames",
    "map_values",
    "pad_frames",
    "palette",
    "probe_frames",
]
