"""A build started by another process dies with it.

``train --site`` runs its gallery builds as child processes, and a build runs its jobs in
child processes too. When the parent is killed (``kill -9``, an out-of-memory kill) nothing
tells its children: before this, a live build went on writing into the site as an orphan,
beside the build the resumed run started. So a child is told whom it belongs to
(``PARENT_ENV``, or ``watch_parent`` called with the pid) and a daemon thread looks every
``POLL_S`` seconds whether that process is still its parent. When it is not, the child
interrupts itself as Ctrl-C would (the build leaves a manifest owning what it wrote) and,
if that has not ended it within ``GRACE_S``, exits. Whatever a killed build leaves, the next
build takes over (``generator.build.lock``).
"""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_ENV = "NETLAPSE_PARENT_PID"
POLL_S = 0.1
GRACE_S = 5.0


def watch_parent_from_environment() -> None:
    """``watch_parent`` for the pid in ``PARENT_ENV``, when it names one. The variable is
    taken out of this environment: it names this process's parent, no one else's."""
    text = os.environ.pop(PARENT_ENV, "")
    if text.isdigit():
        watch_parent(int(text))


def watch_parent(pid: int) -> None:
    """End this process soon after ``pid`` stops being its parent (also at once, when it
    already is not: the parent died before the child got here)."""
    thread = threading.Thread(target=_watch, args=(pid,), name="netlapse-parent-watch", daemon=True)
    thread.start()


def _watch(pid: int) -> None:
    while os.getppid() == pid:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(GRACE_S)
    os._exit(1)
