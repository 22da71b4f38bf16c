"""Round four, builds (docs/reliability.md): one build at a time per ``--out``, and no kill
of a build that leaves its folder in the way of the next one.

The builds run as real processes (``python -m generator build``) so they can be killed
and can race; the fault points of ``generator.faults`` stop or hold one at an exact
moment. Stores are the tiny synthetic ones of ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator import defaults
from generator.__main__ import main
from generator.build import build, builder
from generator.build.rebuilds import LIVE_COST, LIVE_PROBES
from generator.config import BuildConfig
from generator.faults import ENV, RESUME_ENV
from generator.site.manifest import load_manifest
from tests.conftest import make_store
from tests.test_site import parse, resolve

pytestmark = pytest.mark.slow

BUILD = (sys.executable, "-m", "generator", "-q", "build")
WAIT_S = 120.0
NOTE_NAME = ".netlapse-build"  # generator.build.lock.NOTE_NAME (spelled out: the
# regression tests also run against the code from before the lock)


def build_command(stores: Sequence[Path], out: Path, *options: str) -> list[str]:
    return [*BUILD, *(a for s in stores for a in ("--store", str(s))), "--out", str(out), *options]


def start(command: list[str], **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (ENV, RESUME_ENV)}
    return subprocess.Popen(
        command, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def snapshot(site: Path) -> dict[str, bytes]:
    """Every file under ``site`` (hidden ones too), by relative path."""
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def broken_links(site: Path) -> list[str]:
    """The links that lead nowhere on the pages a reader can reach from the home page now
    (a stale page no page links to any more may lose its neighbours while it goes)."""
    broken, todo, seen = [], [site / "index.html"], set()
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        try:
            links = parse(page).found
        except OSError:  # not there (yet): a link to it is counted where it is
            continue
        for _, attr, link in links:
            target = None if link.startswith(("data:", "#")) else resolve(site, page, link)
            if target is None:
                continue
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {attr}={link}")
            elif target.suffix == ".html":
                todo.append(target)
    return broken


def watch(site: Path, running: Callable[[], bool], seen: list[str]) -> None:
    """Look at the site as a reader would, again and again while ``running()``."""
    while running():
        seen.extend(broken_links(site))
        time.sleep(0.05)


def wait_until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=WAIT_S)
    return process.returncode, stderr


def stores(folder: Path, *names: str) -> list[Path]:
    for name in names:
        make_store(folder / f"{name}.zarr")
    return [folder / f"{name}.zarr" for name in names]


def held_by(site: Path, process: subprocess.Popen[str]) -> Callable[[], bool]:
    """Whether ``process`` holds the lock of ``site`` (its pid in the lock's note), or
    has already ended."""
    note = site / NOTE_NAME

    def held() -> bool:
        try:
            return note.read_text().strip() == str(process.pid) or process.poll() is not None
        except OSError:
            return process.poll() is not None

    return held


# -- point 1: two builds into one --out ------------------------------------------------------
def test_a_live_build_beside_a_manual_one_waits_and_no_link_ever_breaks(tmp_path: Path) -> None:
    """A full build of two runs is held mid-media (after its first job); a live-style
    build of one of them (what ``train --site`` runs) starts into the same folder. It says
    in one line that it waits for the first, naming its pid, and runs when the first is
    done; a reader looking at the site all along never meets a broken link, and at the end
    every file the manifest lists is there."""
    a, b = stores(tmp_path, "a", "b")
    site, resume = tmp_path / "site", tmp_path / "resume"
    build(BuildConfig(stores=(a, b), out=site, jobs=1))  # an earlier full build
    full = start(
        build_command((a, b), site, "--jobs", "1", "--fps", "3"),  # every animation re-made
        **{ENV: "build.job:0:1:pause", RESUME_ENV: str(resume)},
    )
    seen: list[str] = []
    try:
        wait_until(held_by(site, full), "the full build to hold the site")
        live = start(build_command((a,), site, *LIVE_PROBES, *LIVE_COST, "--live"))
        until = time.monotonic() + 2.0
        watch(site, lambda: live.poll() is None and time.monotonic() < until, seen)
    finally:
        resume.touch()
    watch(site, lambda: full.poll() is None or live.poll() is None, seen)
    (full_code, full_err), (live_code, live_err) = finish(full), finish(live)
    assert (full_code, live_code) == (0, 0), full_err + live_err
    assert f"waiting for the build in {site.resolve()} (pid {full.pid})" in live_err
    assert len(live_err.strip().splitlines()) == 1, live_err
    assert seen == [] and broken_links(site) == []
    manifest = load_manifest(site)
    assert [p for p in manifest.files if not (site / p).is_file()] == []
    assert '"training": true' in (site / "live.json").read_text()  # the live build ran last


def test_the_files_a_rebuild_no_longer_lists_outlive_its_new_pages_by_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader who loaded an old page just before the rebuild replaced it still finds what
    it links to for ``STALE_GRACE_S``: when the build starts waiting, its new pages are in
    place and every stale file is still there; after the wait they are gone."""
    (a,) = stores(tmp_path, "a")
    site = tmp_path / "site"
    build(BuildConfig(stores=(a,), out=site, jobs=1))
    before = load_manifest(site).files
    monkeypatch.setattr(defaults, "STALE_GRACE_S", 1.5)
    waits: list[tuple[float, list[str], bool]] = []

    def sleep(seconds: float) -> None:
        live = (site / "live.json").read_text() if (site / "live.json").exists() else ""
        waits.append((seconds, [p for p in before if not (site / p).is_file()], "true" in live))

    monkeypatch.setattr(builder, "time", SimpleNamespace(sleep=sleep))
    assert main(["-q", "build", "--store", str(a), "--out", str(site), *LIVE_PROBES,
                 *LIVE_COST, "--live"]) == 0  # fmt: skip
    gone = [p for p in before if not (site / p).is_file()]
    assert gone, "the live build was meant to leave files of the full one stale"
    assert waits == [(1.5, [], True)]  # new pages in place, nothing removed yet


# -- point 2: a killed first build never locks its folder ------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_first_build_killed_mid_media_leaves_a_folder_the_next_build_finishes(
    tmp_path: Path, tiny_store: Path, sig: signal.Signals
) -> None:
    """A first build into an empty folder is killed once its first media are there (no
    pages, no final manifest yet); the next build is not refused, finishes, and leaves
    the same site as a build that was never interrupted."""
    site, resume = tmp_path / "site", tmp_path / "resume"
    first = start(
        build_command((tiny_store,), site, "--jobs", "1"),
        **{ENV: "build.job:0:1:pause", RESUME_ENV: str(resume)},
    )
    wait_until(
        lambda: first.poll() is not None or any((site / "runs").rglob("*.png")),
        "the first media",
    )
    first.send_signal(sig)
    code, _ = finish(first)
    assert code == -sig
    assert not (site / "index.html").exists()  # killed mid-build
    build(BuildConfig(stores=(tiny_store,), out=site, jobs=1))
    build(BuildConfig(stores=(tiny_store,), out=tmp_path / "clean", jobs=1))
    assert snapshot(site) == snapshot(tmp_path / "clean")


# -- the kill campaign -----------------------------------------------------------------------
# (kill point, over the site of an earlier live-style build instead of an empty folder)
KILLS = (
    ("build.claimed:0:1", False),  # the lock held, the owning manifest written, no media
    ("encode.frame:0:2", False),  # inside the first video file
    ("encode.frame:0:9", True),  # inside a later video file
    ("build.job:0:1", False),  # the first job's files in place
    ("build.job:0:4", True),
    ("site.page:0:1", False),  # the first page or site file written
    ("site.page:0:9", True),  # half the pages written
    ("build.stale:0:1", True),  # the old files removed, the manifest not yet written
    ("build.manifest:0:1", False),  # the final manifest's temp file written, not renamed
    ("build.manifest:0:1", True),
)


def test_a_build_killed_at_any_point_is_finished_by_the_next_to_a_clean_build(
    tmp_path: Path, tiny_store: Path
) -> None:
    """SIGKILL at each point of ``KILLS`` (a first build, or a rebuild over a live-style
    site), then a plain build: never refused, and the site equals, byte for byte and
    file for file, a build that was never interrupted."""
    clean = snapshot(build(BuildConfig(stores=(tiny_store,), out=tmp_path / "clean", jobs=1)).site)
    earlier = tmp_path / "live"
    code, err = finish(
        start(build_command((tiny_store,), earlier, *LIVE_PROBES, *LIVE_COST, "--live"))
    )
    assert code == 0, err
    for number, (point, over_live) in enumerate(KILLS):
        site = tmp_path / f"site-{number}"
        if over_live:
            shutil.copytree(earlier, site)
        code, err = finish(start(build_command((tiny_store,), site, "--jobs", "1"), **{ENV: point}))
        assert code == -signal.SIGKILL, f"{point}: not reached ({err})"
        build(BuildConfig(stores=(tiny_store,), out=site, jobs=1))
        assert snapshot(site) == clean, point


def test_a_folder_that_cannot_be_locked_still_builds_with_a_warning(
    tmp_path: Path,
    tiny_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file system without ``flock`` (some network mounts) is no reason to refuse."""
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    site = build(BuildConfig(stores=(tiny_store,), out=tmp_path / "site", jobs=1)).site
    assert (site / "index.html").is_file() and not (site / NOTE_NAME).exists()
    assert "cannot lock this folder (No locks available)" in caplog.text
