"""How many threads one build process spreads one file's work over.

A large layer grid's epochs are rendered on several threads (``render.frames``), a large
GIF is encoded in runs of frames on several threads and a video's next frame is converted
to yuv on a thread while the current one is encoded (``encode``): numpy and FFmpeg let go
of the GIL, so one big file uses more than one core. None of this changes a file's bytes.

The live gallery's builds during training must stay light beside it (one process at
``nice 15``, ``generator.build.rebuilds``), so ``build --live`` runs ``single_threaded()``. The
encoders' own thread counts are not set here: x264's bytes depend on them, so they follow
the frame size alone (``encode.encoder_threads``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

HELPER_THREADS = 2  # two cores' worth: a build already runs one process per core (--jobs)
_single = False


def helper_threads() -> int:
    """Threads this process may use for one file's rendering or encoding (1 or more)."""
    return 1 if _single else HELPER_THREADS


@contextmanager
def single_threaded() -> Iterator[None]:
    """Within the block, each file's rendering and encoding run on one thread at a time
    (the encoders' own threads still follow ``encode.encoder_threads``)."""
    global _single
    previous, _single = _single, True
    try:
        yield
    finally:
        _single = previous
