"""The one place the site puts a file on disk: inside the site folder, atomically."""

from __future__ import annotations

from pathlib import Path

from generator.atomic import atomic_path
from generator.errors import NetlapseError


def inside(site: Path, relative: str | Path) -> Path:
    """``site / relative`` resolved, refusing any path that would leave ``site``."""
    base = Path(site).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise NetlapseError(f"refusing to write {relative}: it lies outside the site folder {base}")
    return target


def write_bytes_atomic(site: Path, relative: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``site/relative`` through a temp file + rename, refusing any path
    outside ``site``. A file that already holds ``data`` is left untouched, so a rebuild
    that changes nothing changes no file (and no modification time)."""
    target = inside(site, relative)
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return target
    with atomic_path(target) as temp:
        temp.write_bytes(data)
    return target
