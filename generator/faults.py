"""Fault injection: stop this process at an exact, named moment. For tests only.

This module exists only so the crash tests (``tests/test_crash.py``) can kill a real
training run at a precise point — mid-batch, after the k-th array of an epoch, between the
store commit and the checkpoint — and prove that nothing committed is lost. Production code
calls :func:`maybe_die` at a few phase boundaries; with the environment variable unset it
returns at once and does nothing.

``NETLAPSE_KILL_AT="point:epoch:index"`` sends SIGKILL to this process when
``maybe_die(point, epoch, index)`` is called with exactly those values; a fourth field
``stop`` sends SIGSTOP instead (the process freezes there until SIGCONT), so a test can look
at the store while a write is half done; ``pause`` holds only the calling thread until the
file named by ``NETLAPSE_RESUME_FILE`` exists, so the process's other threads (a live
gallery's builds) go on. The points, in the order an epoch reaches them:

    train.batch       after backward, before optimizer.step   (index = batch, from 0)
    store.create      store built in its staging folder, before it is moved into place
    store.array       after the index-th array of the epoch is written (from 1), uncommitted
    train.committed   the epoch is committed in the store, its checkpoint not yet written
    checkpoint.temp   checkpoint temp file written, not yet renamed into place
    train.epoch_end   the epoch and its checkpoint are done, the next epoch not started

A build reaches its points through :func:`tick`, with ``EPOCH`` 0 and ``INDEX`` the number
of times this process reached the point (from 1), in the order a build reaches them:

    build.claimed     lock held, the manifest owning every file to come written, no media
    encode.frame      the index-th video frame this process gave an encoder (mid-file)
    build.job         the index-th job's files are in the site
    site.page         the index-th page or site file is written
    build.stale       the pages are written and stale files removed, the manifest not yet
    build.manifest    the final manifest's temp file written, not yet renamed into place
"""

from __future__ import annotations

import enum
import os
import signal
import time
from pathlib import Path

ENV = "NETLAPSE_KILL_AT"
RESUME_ENV = "NETLAPSE_RESUME_FILE"
PAUSE = 0  # not a signal: ``pause`` waits for the resume file
PAUSE_LIMIT_S = 900.0
POINTS = (
    "train.batch",
    "store.create",
    "store.array",
    "train.committed",
    "checkpoint.temp",
    "train.epoch_end",
    "build.claimed",
    "encode.frame",
    "build.job",
    "site.page",
    "build.stale",
    "build.manifest",
)
ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "pause": PAUSE}


class _Unparsed(enum.Enum):
    """``_target`` before the environment variable is read (None: read, names nothing)."""

    TOKEN = 0


_UNPARSED = _Unparsed.TOKEN
# (point, epoch, index, signal) or None once parsed
_target: tuple[str, int, int, int] | None | _Unparsed = _UNPARSED
_ticks: dict[str, int] = {}  # how often this process reached each point of ``tick``


def maybe_die(point: str, epoch: int, index: int = 0) -> None:
    """Signal this process if ``NETLAPSE_KILL_AT`` names this exact moment; else nothing."""
    target = _load() if isinstance(_target, _Unparsed) else _target
    if target is not None and target[:3] == (point, epoch, index):
        if target[3] == PAUSE:
            _wait_for_resume_file()
        else:
            os.kill(os.getpid(), target[3])


def tick(point: str) -> None:
    """``maybe_die(point, 0, n)`` for the n-th time this process reaches ``point``."""
    _ticks[point] = _ticks.get(point, 0) + 1
    maybe_die(point, 0, _ticks[point])


def _wait_for_resume_file(limit_s: float = PAUSE_LIMIT_S) -> None:
    """Hold this thread until the test creates ``NETLAPSE_RESUME_FILE``, or at most
    ``limit_s`` (a test killed while it held a run must not leave it waiting for good)."""
    resume, deadline = Path(os.environ[RESUME_ENV]), time.monotonic() + limit_s
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _load() -> tuple[str, int, int, int] | None:
    """Parse the environment variable once; later calls reuse the result."""
    global _target
    _target = parse(os.environ.get(ENV, ""))
    return _target


def parse(text: str) -> tuple[str, int, int, int] | None:
    """``"store.array:2:5"`` -> ``("store.array", 2, 5, SIGKILL)``; empty -> None."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (3, 4) or parts[0] not in POINTS:
        raise ValueError(
            f"{ENV}={text!r}: expected POINT:EPOCH:INDEX[:stop|:pause] with POINT one "
            f"of {', '.join(POINTS)}"
        )
    action = parts[3] if len(parts) == 4 else "kill"
    if action not in ACTIONS:
        raise ValueError(f"{ENV}={text!r}: the action must be kill, stop or pause")
    if action == "pause" and not os.environ.get(RESUME_ENV):
        raise ValueError(f"{ENV}={text!r}: pause needs {RESUME_ENV}, the file that resumes")
    return parts[0], int(parts[1]), int(parts[2]), ACTIONS[action]
