"""The background writer: one store, written on one thread, one epoch at a time.

``Recorder.epoch()`` returns once the model has been captured into numpy copies; the
write (compression and a few hundred small files for a resnet) runs here and overlaps the
next epoch's training instead of holding it up. The commit protocol is the store's,
unchanged (``epochs_committed`` last), so a crash mid-write loses only that epoch. The
next call that needs the store waits for the write in flight and raises its error (a
one-line ``StoreError``), so a failed write is reported once, at the next call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from generator.store import EpochRecord, StoreWriter

log = logging.getLogger(__name__)

WRITE_THREAD = "netlapse-write"


class BackgroundWriter:
    """Writes and commits epochs of ``store`` on its own thread; holds the store's lock
    until ``close()``, ``release()`` or ``abandon()``.

    ``on_commit`` (set by the Recorder once a live site runs) is called on the write thread
    after each commit. A job holds the store and that callback, never the Recorder, so a
    Recorder dropped without ``close()`` is never finalised on the write thread.
    """

    def __init__(self, store: StoreWriter) -> None:
        self.store = store
        self.on_commit: Callable[[], None] | None = None
        self._writing: Future[None] | None = None  # the epoch being written, if any
        self.write_seconds = 0.0  # all writes so far (the overhead budget charges them)
        self.wait_seconds = 0.0  # all waits for a write (not the user's training)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITE_THREAD)

    def write(self, epoch: int, record: EpochRecord) -> None:
        """Write and commit ``epoch`` in the background (the previous write must be done:
        ``wait()`` first, which also makes ``epoch`` the next one)."""
        store, on_commit = self.store, self.on_commit

        def job() -> None:
            start = time.perf_counter()
            try:
                store.write_epoch(epoch, record)
            finally:
                self.write_seconds += time.perf_counter() - start
            if on_commit is not None:
                on_commit()

        self._writing = self._thread.submit(job)

    def wait(self) -> None:
        """Wait for the epoch being written; its error (a ``StoreError``) is raised here.
        The write is forgotten only once it is done: a wait cut short (Ctrl-C) leaves it
        for the next wait, so its error is still seen and no epoch number runs ahead."""
        writing = self._writing
        if writing is None:
            return
        start = time.perf_counter()
        try:
            writing.result()
        finally:
            self.wait_seconds += time.perf_counter() - start
            if writing.done():
                self._writing = None

    @property
    def epochs_committed(self) -> int:
        """The store's committed epochs once the write in flight is done."""
        self.wait()
        return self.store.epochs_committed

    def close(self) -> None:
        """The normal end: wait for the write in flight, shrink the arrays to the committed
        epochs, release the lock (also when the write or the trim failed)."""
        try:
            self.wait()
            self.store.trim()
        finally:
            self.abandon()

    def release(self) -> None:
        """Leaving on an error: the epoch in flight is kept, not cut short, and its own
        error only logged, so the error that stopped the loop is the one reported."""
        try:
            self.wait()
        except Exception as exc:  # noqa: BLE001 - the loop's own error is the one to raise
            log.warning("%s", exc)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """End the thread once the write in flight has finished, and release the lock."""
        self._stop()
        self.store.close()

    def _stop(self) -> None:
        """End the write thread (never from the write thread itself: it cannot wait for
        itself)."""
        if not threading.current_thread().name.startswith(WRITE_THREAD):
            self._thread.shutdown(wait=True)
