"""One build at a time per ``--out``, and nothing a killed build leaves ever in the way.

``claim_site`` creates the folder, then holds ``flock`` on it for the whole build: a
second build into the same folder (a manual ``build`` beside ``train --site``, two
terminals) says once that it waits for the first, naming its pid, and goes on when the
first is done, so two builds never delete each other's files. The kernel drops the lock
when its holder dies, so the lock of a killed build is taken over at once.

While it holds the lock, the build keeps its pid in ``NOTE_NAME`` (what a waiting build
names) and, before anything else, clears what a killed build may have left: the temp
files of writes it did not finish (``generator.atomic``). A killed build's other files are
owned by the manifest it wrote before its first file (``generator.build.builder``), so the
next build re-makes or removes them like any others. A build that fails before it wrote
anything leaves no folder it created.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from generator.atomic import is_temp_name
from generator.errors import OptionError

try:  # advisory locks: POSIX only; elsewhere two builds are not kept apart
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

NOTE_NAME = ".netlapse-build"
OLD_PROBE_PREFIX = ".netlapse-write-test-"  # the write test of builds before the lock


@contextmanager
def claim_site(site: Path, *, option: str = "--out") -> Iterator[bool]:
    """Create ``site`` (resolved) and hold its lock until the block ends; yields whether
    this build had to wait for another one. ``option`` names the folder in errors."""
    new = _first_missing(site)
    fd, waited = _acquire(site, option)
    try:
        try:
            _write_note(site, option)
            _remove_leftovers(site)
            yield waited
        except BaseException:
            if new is not None:
                _remove_untouched(site, new)
            raise
    finally:
        with suppress(OSError):
            (site / NOTE_NAME).unlink()
        os.close(fd)


def _acquire(site: Path, option: str) -> tuple[int, bool]:
    """The folder, created if needed, opened and locked; and whether that took a wait. A
    folder removed while this build waited (the other build failed before it wrote
    anything) is created again."""
    waited = False
    while True:
        try:
            site.mkdir(parents=True, exist_ok=True)
            fd = os.open(site, os.O_RDONLY)
        except OSError as exc:
            raise _unwritable(site, option, exc) from exc
        waited = _lock(fd, site) or waited
        with suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(site)):
                return fd, waited
        os.close(fd)


def _unwritable(site: Path, option: str, exc: OSError) -> OptionError:
    return OptionError(
        f"{option} {site}: cannot write there ({exc.strerror or exc}); choose a writable folder"
    )


def _lock(fd: int, site: Path) -> bool:
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        log.warning("waiting for the build in %s (pid %s)", site, _holder(site))
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except OSError as exc:  # a file system without flock (some network mounts)
        log.warning(
            "%s: cannot lock this folder (%s); do not start a second build into it until "
            "this one is done",
            site,
            exc.strerror or exc,
        )
        return False


def _holder(site: Path) -> str:
    try:
        text = (site / NOTE_NAME).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return "unknown"
    return text if text.isdigit() else "unknown"


def _write_note(site: Path, option: str) -> None:
    """Keep this build's pid in the folder; also the test that the folder is writable."""
    try:
        (site / NOTE_NAME).write_text(f"{os.getpid()}\n", encoding="utf-8")
    except OSError as exc:
        raise _unwritable(site, option, exc) from exc


def _remove_leftovers(site: Path) -> None:
    """Delete the temp files of writes that a killed build never finished (only names
    that ``generator.atomic`` makes: the lock says no build is writing them now)."""
    for folder, _, names in os.walk(site):
        for name in names:
            if is_temp_name(name) or name.startswith(OLD_PROBE_PREFIX):
                with suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def _first_missing(site: Path) -> Path | None:
    """The highest folder of ``site`` (or ``site`` itself) that does not exist yet."""
    missing = None
    for folder in (site, *site.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing = folder
    return missing


def _remove_untouched(site: Path, new: Path) -> None:
    """A failed build removes the folders it created while they hold nothing: a build
    refused for a bad option leaves nothing behind."""
    with suppress(OSError):
        (site / NOTE_NAME).unlink()
    for folder in (site, *site.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == new:
            return
