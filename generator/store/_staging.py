"""How a new store comes to be, so that a run killed while creating it leaves none behind.

A local store is built in a hidden staging folder beside its path and renamed into place
when complete. Object storage has no rename: there the store is made in place under the
write lock, its root marked ``CREATING`` (readers treat it as not there yet) until the full
root attributes are written last, in one PUT. Both take a ``fill`` that writes the arrays.
Reopening a local store for ``--resume`` removes the ``*.partial`` temp files of zarr
writes a kill interrupted (:func:`remove_partial_files`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import zarr

from generator.errors import StoreError, one_line
from generator.faults import maybe_die
from generator.store._backends import (
    StoreURL,
    delete_prefix,
    remote_error,
    remote_errors,
    zarr_store,
)
from generator.store._files import CREATING, remote_state
from generator.store._locks import RemoteLock
from generator.store._schema import RootAttrs

REASON_WIDTH = 200  # characters of a storage error's own words in a message

log = logging.getLogger(__name__)

Fill = Callable[[zarr.Group], None]  # writes every array of a new store's group


def create_local(path: Path, attrs: RootAttrs, fill: Fill) -> None:
    """Build the store in ``.<name>.creating-<pid>`` beside ``path``, then rename it into
    place; a one-line ``StoreError`` if the disk refuses or ``path`` appeared meanwhile."""
    staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
    _remove_stale_staging(path)
    try:
        group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
        fill(group)
        group.attrs.update(attrs.to_json())
        maybe_die("store.create", 0)
        _publish(staging, path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the store ({reason(exc)})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published


def create_remote(url: StoreURL, attrs: RootAttrs, fill: Fill) -> tuple[zarr.Group, RemoteLock]:
    """Take the lock, clear what a killed creation left, write the root marked
    ``CREATING``, fill it, then replace the root attributes in one PUT — the commit.
    Returns the group and the lock the new writer holds."""
    lock = RemoteLock(url).acquire()
    try:
        _clear_interrupted(url)
        group = zarr.open_group(
            zarr_store(url, read_only=False),
            mode="w-",
            zarr_format=3,
            attributes={CREATING: attrs.run_id},
        )
        fill(group)
        maybe_die("store.create", 0)
        group.attrs.put(attrs.to_json())
        return group, lock
    except BaseException as exc:
        lock.release()
        if isinstance(exc, remote_errors()):
            raise remote_error(url, exc) from exc
        raise


def _clear_interrupted(url: StoreURL) -> None:
    """Refuse an existing store; delete one whose creation was interrupted (we hold the
    lock, so its creator is gone)."""
    state = remote_state(url)
    if state != "absent" and state != CREATING:
        raise StoreError(
            f"{url}: already exists ({state}); pass --resume to continue a run there "
            "or choose another --out (a run is never overwritten)"
        )
    if state == CREATING:
        log.info("%s: removing a store whose creation was interrupted", url)
        delete_prefix(url)


def remove_partial_files(path: Path) -> int:
    """Delete the ``*.partial`` temp files a killed zarr write leaves; returns how many."""
    removed = 0
    for leftover in Path(path).rglob("*.partial"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _remove_stale_staging(path: Path) -> None:
    """Staging folders of earlier attempts to create ``path`` that were killed."""
    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _publish(staging: Path, path: Path) -> None:
    """Move the finished staging folder to ``path``; refuse if something appeared there."""
    if path.exists():
        raise StoreError(f"{path}: already exists; choose another --out")
    os.rename(staging, path)


def reason(exc: BaseException) -> str:
    """An OSError as its plain words, e.g. "No space left on device"; an object store's
    error as its first line without the server's XML, shortened at a word (never cut
    mid-word)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    first = re.split(r"<\?xml|<Error>", str(exc), maxsplit=1)[0]
    return one_line(Exception(first), REASON_WIDTH)


def discard_created(location: Path | StoreURL) -> None:
    """Delete a store its creator has just made and failed to fill (epoch 0 never
    committed): a local folder, or every object under a URL. Only for a store that did not
    exist before, so a failed ``Recorder()`` leaves nothing behind anywhere. A failure to
    delete is logged, not raised: the caller is already raising the error that matters."""
    if isinstance(location, StoreURL):
        try:
            delete_prefix(location)
        except remote_errors() as exc:
            log.warning("%s: could not remove the unfinished store (%s)", location, reason(exc))
        return
    shutil.rmtree(location, ignore_errors=True)
