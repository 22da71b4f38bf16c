"""GIF, MP4, WebM and PNG writers; the only package that talks to an encoder.

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

The modules: ``gif``, ``video`` (with ``yuv``, the colour conversion), ``png``; ``palette``
(quantising RGB for a GIF), ``output`` (atomic files, one-line errors, frame checks) and
``priority`` (keeps SVT-AV1 from raising this process's threads to real-time priority).
This face re-exports the writers and codecs; tune a module's constants on the module.
"""

from __future__ import annotations

from generator.encode.gif import write_gif
from generator.encode.palette import quantise, to_rgb
from generator.encode.png import palette_png_bytes, png_bytes, write_png, write_poster
from generator.encode.video import (
    AV1,
    H264,
    VIDEO_CODECS,
    VideoCodec,
    encoder_threads,
    write_mp4,
    write_video,
    write_videos,
    write_webm,
)
from generator.encode.yuv import PaletteYuv, yuv420_frame, yuv420_planes

__all__ = [
    "AV1",
    "H264",
    "VIDEO_CODECS",
    "PaletteYuv",
    "VideoCodec",
    "encoder_threads",
    "palette_png_bytes",
    "png_bytes",
    "quantise",
    "to_rgb",
    "write_gif",
    "write_mp4",
    "write_png",
    "write_poster",
    "write_video",
    "write_videos",
    "write_webm",
    "yuv420_frame",
    "yuv420_planes",
]
