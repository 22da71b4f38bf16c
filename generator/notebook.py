"""A run in a notebook: one layer's (or one channel's) animation shown inline, no site built.

``animation(run, "block1")`` renders the layer's channel grid for one probe over every
committed epoch with the gallery's own renderer (``generator.render``: the same colormap,
colour scales from the stored statistics, captions) and encodes it as a GIF with the
gallery's encoder (``generator.encode``). The result shows itself in Jupyter: an ``<img>``
holding the GIF as a ``data:`` URI (``_repr_html_``), so the notebook file carries it and
needs no server or file beside it; where HTML is not shown, the last epoch as a PNG
(``_repr_png_``).

It sits above ``build`` in the import order: it reuses the build's colour scales and
captions (``build.layer_media``) so a notebook shows exactly what the gallery's layer page
does, and the store, the renderer and the encoder stay unaware of notebooks.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from generator import defaults, encode
from generator.build.layer_media import caption, layer_scales
from generator.errors import OptionError, StoreError
from generator.render.frames import Frames, channel_frames, layer_frames_by_epoch
from generator.store import RunReader, StoreLocation, open_run

__all__ = ["Animation", "animation"]


@dataclass(frozen=True, repr=False)
class Animation:
    """Rendered frames that a notebook shows inline as a looping GIF.

    ``frames`` are the renderer's ``Frames`` (palette indices or RGB), one per epoch;
    ``title`` says what they show (the ``alt`` text of the image). ``gif`` is the encoded
    file, made once; ``save(path)`` writes it.
    """

    frames: Frames
    fps: float
    title: str

    @cached_property
    def gif(self) -> bytes:
        """The GIF file, encoded by ``encode.write_gif`` as the gallery's are."""
        duration = round(1000 / self.fps)
        frames, palette = self.frames.frames, self.frames.palette
        return _written(lambda path: encode.write_gif(path, frames, palette, duration_ms=duration))

    def __repr__(self) -> str:
        """One line (the frames' array would print pages of pixel indices)."""
        count, height, width = self.frames.frames.shape[:3]
        return f"<Animation {self.title}: {count} frames, {width}x{height} px>"

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the GIF inline, so the saved notebook keeps it."""
        data = base64.b64encode(self.gif).decode("ascii")
        height, width = self.frames.frames.shape[1:3]
        alt = html.escape(self.title, quote=True)
        return (
            f'<img src="data:image/gif;base64,{data}" width="{width}" height="{height}" '
            f'alt="{alt}" title="{alt}">'
        )

    def _repr_png_(self) -> bytes:
        """The last epoch as a still, for front ends that show no HTML."""
        frames, palette = self.frames.frames, self.frames.palette
        return _written(lambda path: encode.write_poster(path, frames, palette))

    def save(self, path: Path | str) -> Path:
        """Write the GIF to ``path`` (e.g. ``"block1.gif"``) and return it."""
        target = Path(path)
        target.write_bytes(self.gif)
        return target


def animation(
    run: RunReader | StoreLocation | str,
    layer: str,
    *,
    probe: int = 0,
    channel: int | None = None,
    colormap: str = defaults.COLORMAP,
    scale: str = defaults.SCALE,
    fps: float = defaults.FPS,
    max_side: int | None = None,
) -> Animation:
    """One layer's activations for one probe over every committed epoch, ready to show.

    ``run`` is an open run (``generator.open_run``) or its path or URL. Without
    ``channel``, the layer's channel grid (at most ``defaults.NOTEBOOK_SIDE`` px); with
    it, that one channel (``defaults.CHANNEL_SIDE`` px), both as on the gallery's pages.
    ``scale`` is the gallery's colour-scale mode (``build --scale``). A layer, probe or
    channel the run does not have is a one-line ``StoreError`` or ``OptionError``.

    Example, in a notebook cell::

        import generator
        run = generator.open_run("runs/demo.zarr")
        generator.animation(run, "block1", channel=3)  # shows inline
    """
    if not isinstance(run, RunReader):
        run = open_run(run)
    spec = run.layer(layer)
    if not run.epochs:
        raise StoreError(f"{run.path}: no epoch is committed yet; nothing to show")
    _check_index(run, "probe", probe, run.n_probes)
    scales = layer_scales(run, layer, scale)
    neg, pos = scales.neg[:, probe], scales.pos[:, probe]
    if channel is None:
        side = max_side or defaults.NOTEBOOK_SIDE
        frames = layer_frames_by_epoch(
            lambda epoch: run.layer_at(layer, epoch, probe),
            neg,
            pos,
            captions=[caption(run, layer, probe, epoch) for epoch in range(run.epochs)],
            colormap=colormap,
            max_side=side,
        )
        return Animation(frames, fps, f"{layer}, probe {probe}")
    _check_index(run, f"channel of layer {layer!r}", channel, spec.channels)
    side = max_side or defaults.CHANNEL_SIDE
    frames = channel_frames(
        run.channel(layer, channel, probe),
        neg[:, channel],
        pos[:, channel],
        colormap=colormap,
        min_side=min(side, defaults.CHANNEL_SIDE),
        max_side=side,
        captions=[caption(run, layer, probe, e, f" ch {channel + 1}") for e in range(run.epochs)],
    )
    return Animation(frames, fps, f"{layer}, channel {channel}, probe {probe}")


def _written(write: Callable[[Path], object]) -> bytes:
    """The bytes of the file ``write(path)`` makes: the encoders write files (atomically,
    beside their target), so they write into a temporary folder that is removed after."""
    with tempfile.TemporaryDirectory(prefix="netlapse-") as folder:
        target = Path(folder) / "file"
        write(target)
        return target.read_bytes()


def _check_index(run: RunReader, what: str, value: int, count: int) -> None:
    """``value`` is one of ``count`` (0-based); else one line naming the run and the range."""
    if not 0 <= value < count:
        raise OptionError(f"{run.path}: {what}={value} is not one of 0..{count - 1}")
