"""A store's write lock: one writer per store, also across machines where it can be seen.

A local store is locked with ``flock`` on its folder: the kernel drops the lock when the
holder dies, so a killed run never leaves a stale lock behind. Object storage has no
``flock``; there the lock is an object beside the store created by a conditional put
(:class:`RemoteLock`), which a later run takes over when its holder, on this host, is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from generator.errors import StoreError, StoreNotFoundError
from generator.store._backends import (
    StoreLocation,
    StoreURL,
    get_bytes,
    object_store,
    remote_error,
)

try:  # advisory locks: POSIX only; elsewhere two writers are not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class RemoteLock:
    """The write lock of a store in object storage: the object ``<store>.lock`` beside it,
    created only if absent (a conditional put, ``If-None-Match: *`` on S3) and deleted on
    :meth:`release`.

    Unlike ``flock`` nothing removes it when the holder dies. A lock left by a process of
    this host that is gone is taken over; any other is reported with the object to delete.
    """

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self._parent = url.parent
        self._key = url.name + LOCK_SUFFIX
        self._held = False

    @property
    def location(self) -> str:
        return f"{self._parent}/{self._key}"

    def acquire(self) -> RemoteLock:
        if self._try_create():
            return self
        holder = self._holder()
        if holder is not None and _dead_here(holder):
            self._delete()
            if self._try_create():
                return self
            holder = self._holder()
        raise StoreError(
            f"{self.url}: another process is writing to this store ({_describe(holder)}); wait "
            f"for it to finish, or if it is no longer running delete the lock object "
            f"{self.location} and try again"
        )

    def release(self) -> None:
        """Delete the lock object. Best effort: a closing writer whose server has gone away
        only warns, naming the object that a later run will find (and how to clear it)."""
        if not self._held:
            return
        self._held = False
        try:
            self._delete()
        except StoreNotFoundError:
            return  # the bucket is gone, and the lock object with it
        except StoreError as exc:
            log.warning(
                "%s; the lock object %s stays: delete it if no run writes there", exc, self.location
            )

    def _try_create(self) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError

        body = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        try:
            obstore.put(
                object_store(self._parent), self._key, json.dumps(body).encode(), mode="create"
            )
        except AlreadyExistsError:
            return False
        except Exception as exc:
            raise remote_error(self.url, exc) from exc
        self._held = True
        return True

    def _holder(self) -> dict[str, Any] | None:
        try:
            raw = get_bytes(self._parent, self._key, limit=2**16)
            holder = json.loads(raw) if raw else None
        except (ValueError, StoreError):
            return None
        return holder if isinstance(holder, dict) else None

    def _delete(self) -> None:
        import obstore

        try:
            obstore.delete(object_store(self._parent), self._key)
        except Exception as exc:
            raise remote_error(self.url, exc) from exc


def _dead_here(holder: Mapping[str, Any]) -> bool:
    """The lock's process ran on this host and is gone (killed: its lock stayed)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _describe(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "its lock object is there"
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(holder.get("since", 0))))
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {since}"


WriteLock = int | RemoteLock | None  # a flock'ed descriptor, a lock object, or none (Windows)


def lock_store(path: StoreLocation) -> WriteLock:
    """An exclusive, non-blocking lock on the store: ``flock`` on the store folder, or in
    object storage the lock object of :class:`RemoteLock`."""
    if isinstance(path, StoreURL):
        return RemoteLock(path).acquire()
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"{path}: another process is writing to this store (a training "
            "run); wait for it to finish or stop it first"
        ) from None
    return fd


def release(lock: WriteLock) -> None:
    """Give a lock of :func:`lock_store` back (a process that ends releases a flock too)."""
    if isinstance(lock, RemoteLock):
        lock.release()
    elif lock is not None:
        os.close(lock)
