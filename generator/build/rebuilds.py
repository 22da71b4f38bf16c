"""Keep a gallery current while a run records (``train --site``, ``Recorder(site=...)``).

After each committed epoch the recorder calls ``LiveSite.committed()``, which only notes
that the store moved on and returns at once. A daemon thread then runs ``build --live``
for the newest committed state in a separate process, niced (``LIVE_PRIORITY``), so the
training process never shares its interpreter (or its GIL) with the build. Requests that
arrive while a build runs fold into one next build, so a slow build never queues up.

A build during training is the *first look* (``LIVE_PROBES``, ``LIVE_COST``): every page
and chart, and for the first probe each layer's grid, kernels and feature-visualization
sheet, as MP4 only, in one process, single-threaded (``generator.threads``). That is under a
tenth of a full build's work, and it runs at ``nice 15``: a niced build that is still
busy when the next epoch commits takes its scheduler share from training the whole time,
about a tenth of a core at ``nice 10`` (training measured 12 % slower), about 3 % at
``nice 15`` (bench/README.md). Per-channel pages and animations, the other
probes and the WebM/GIF files come with ``finish()``: the last, ordinary build at normal
priority, which the recorder waits for; its pages no longer say "still training", and
its files are the ones a separate ``build`` writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from generator.build.outdir import check_out_folder
from generator.build.parent import PARENT_ENV
from generator.errors import LiveSiteError
from generator.store import StoreLocation, store_location

log = logging.getLogger(__name__)

LIVE_PRIORITY = 15
# The first look, built after each epoch while training runs (see the module docstring):
# the first probe unless the user's options choose others, then what keeps it cheap, which
# the user's options for the final build do not override.
LIVE_PROBES = ("--probe-index", "1")
LIVE_COST: tuple[str, ...] = (
    "--channel-probes",
    "0",
    "--channel-pages",
    "0",
    "--contact-probes",
    "0",
)
LIVE_COST += ("--formats", "mp4", "--jobs", "1")


class LiveSite:
    """Rebuilds the site ``site`` from ``store`` in the background after every commit.

    ``options`` are extra ``build`` options (e.g. ``("--formats", "mp4")``). The instance
    is a context manager; leaving the block without ``finish()`` (training failed) stops
    a running background build and leaves the last complete site in place.
    """

    def __init__(self, store: str | Path, site: str | Path, *, options: Sequence[str] = ()) -> None:
        check_site(store, site)
        self.store, self.site = str(store), Path(site)
        self.options = tuple(options)
        self.builds = 0
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._loop, name="netlapse-live", daemon=True)
        self._thread.start()

    # -- what the recorder calls ---------------------------------------------------------
    def committed(self) -> None:
        """The store has a new committed epoch: build it when the current build is done."""
        self._wanted.set()

    def finish(self) -> None:
        """Stop the background builds, then build the finished run at normal priority."""
        self._stop_background()
        result = subprocess.run(
            self.command(live=False), capture_output=True, check=False, env=_child_environment()
        )
        self.builds += 1
        if result.returncode != 0:
            raise LiveSiteError(
                f"--site {self.site}: the final build failed ({_last_line(result.stderr)}); "
                f"run `python -m generator build --store {self.store} --out {self.site}`"
            )

    def close(self) -> None:
        """Stop without a final build (the run failed); the last complete site stays."""
        self._stop_background()

    def __enter__(self) -> LiveSite:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the background ------------------------------------------------------------------
    def command(self, *, live: bool) -> list[str]:
        """The ``build`` command line: the full build, or (``live``) the niced first look."""
        build = [sys.executable, "-m", "generator", "-q", "build"]
        build += ["--store", self.store, "--out", str(self.site)]
        if not live:
            return [*build, *self.options]
        nice = shutil.which("nice")
        prefix = [nice, "-n", str(LIVE_PRIORITY)] if nice else []
        return [*prefix, *build, *LIVE_PROBES, *self.options, *LIVE_COST, "--live"]

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            self._build_in_background()

    def _build_in_background(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._process = subprocess.Popen(
                self.command(live=True),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_child_environment(),
            )
        _, stderr = self._process.communicate()
        with self._lock:
            code, self._process = self._process.returncode, None
        self.builds += 1
        if code != 0 and not self._stopping.is_set():
            # A live build can fail for a reason the next epoch fixes (a disk briefly
            # full); training goes on either way, and finish() reports a lasting failure.
            log.warning("live gallery: a background build failed: %s", _last_line(stderr))

    def _stop_background(self) -> None:
        with self._lock:
            self._stopping.set()
            if self._process is not None:
                # SIGINT, not SIGTERM: build turns it into KeyboardInterrupt and leaves a
                # manifest that owns every file it wrote.
                self._process.send_signal(signal.SIGINT)
        self._wanted.set()
        self._thread.join()


def check_site(store: StoreLocation | str, site: str | Path, *, option: str = "--site") -> None:
    """Refuse a site folder that ``build`` would refuse (one ``OptionError`` line with a
    folder that is accepted) when a run starts, not when its first build runs."""
    check_out_folder(site, [store_location(store)], option=option)


def _child_environment() -> dict[str, str]:
    """This environment, telling a build that it dies with this process (a ``kill -9``
    of training must not leave a build writing on as an orphan)."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no message"
