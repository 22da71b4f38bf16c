"""A build that ``train --site`` started dies with it (issue 24, point 3): a ``kill -9``
of the training process leaves no live build writing on as an orphan, and the final build
of the resumed run (``LiveSite.finish``, what ``train --resume --site`` ends with) then
makes the finished site."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.build import LiveSite
from generator.build.parent import GRACE_S
from generator.faults import ENV, RESUME_ENV
from tests.test_build_lock import NOTE_NAME, wait_until

pytestmark = pytest.mark.slow

# Stands in for `train --site`: a LiveSite whose first build is under way, then nothing.
PARENT = """
import sys, time
from generator.build import LiveSite
live = LiveSite(sys.argv[1], sys.argv[2])
live.committed()
while live._process is None:
    time.sleep(0.01)
print(live._process.pid, flush=True)
time.sleep(600)
"""
# the child looks for its parent every 0.1 s (the build it holds is paused), interrupts its
# build and exits after GRACE_S at most; the rest is process exit on a loaded CI machine
GONE_S = GRACE_S + 5.0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_training_ends_its_live_build_and_the_resumed_run_finishes_the_site(
    tmp_path: Path, tiny_store: Path
) -> None:
    site = tmp_path / "site"
    env = {**os.environ, ENV: "build.claimed:0:1:pause", RESUME_ENV: str(tmp_path / "never")}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tiny_store), str(site)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    note = site / NOTE_NAME
    wait_until(
        lambda: (
            (note.is_file() and note.read_text().strip() == str(child)) or (site / "runs").is_dir()
        ),
        "the live build to start writing",
    )
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed = time.monotonic()
    while alive(child) and time.monotonic() < killed + GONE_S:
        time.sleep(0.05)
    orphan = alive(child)
    if orphan:
        os.kill(child, signal.SIGKILL)
    assert not orphan, f"the live build (pid {child}) outlived its parent by {GONE_S} s"
    assert not (site / "index.html").exists()  # it stopped; an orphan would have finished
    with LiveSite(tiny_store, site) as resumed:
        resumed.finish()
    assert json.loads((site / "live.json").read_text())["training"] is False
    assert (site / "index.html").is_file() and not note.exists()
