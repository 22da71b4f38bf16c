"""Write-then-rename: the one way netlapse puts a file in place.

A file is first written to a hidden temp path beside its target (``.NAME.PID-RAND.tmp``)
and renamed over the target only when complete, so a kill or a full disk leaves either
the old file or the new one, never half of one. Every stage that writes files (encoders,
checkpoints, video ingest, the site) uses ``atomic_path``; callers turn the ``OSError``
into their own one-line error.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TEMP_NAME = re.compile(r"\..+\.[0-9]+-[0-9a-f]{6}\.tmp")


def temp_path(target: Path) -> Path:
    """The hidden temp name for ``target``: same folder (so the rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one ``temp_path`` makes: what a killed writer leaves behind."""
    return TEMP_NAME.fullmatch(name) is not None


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``target``, on failure it goes.

    The parent folder is created first. Errors propagate unchanged (``OSError`` included)
    after the temp file is removed.
    """
    target = Path(target)
    temp = temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield temp
        os.replace(temp, target)
    finally:
        with suppress(OSError):  # NotADirectoryError too: never hide the real error
            temp.unlink()
