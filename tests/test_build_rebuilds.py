"""The live gallery (``generator.build.rebuilds``): ``train --site`` keeps a complete,
consistent site while the run trains, and leaves the site a separate ``build`` writes when
it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.site.live import LIVE_FILE
from generator.site.manifest import MANIFEST_NAME, load_manifest
from generator.store import open_run
from tests.test_site import html_pages, parse, resolve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# A tiny run: two conv blocks at 32 px, no feature visualizations, a small example pool.
TINY = [
    *("--input-size", "32", "--demo-per-class", "4", "--batch-size", "8", "--probes", "1"),
    *("--channels", "4,8", "--featviz-layers", "none"),
]
TIMEOUT = 600


def run_train(tmp_path: Path, store: Path, site: Path, resume: Path) -> subprocess.Popen[str]:
    """``train --site`` held (only its training thread) after epoch 1's checkpoint until
    ``resume`` exists; the live builds run on meanwhile."""
    env = {
        **os.environ,
        "NETLAPSE_CACHE": str(tmp_path / "cache"),
        "NETLAPSE_KILL_AT": "train.epoch_end:1:0:pause",
        "NETLAPSE_RESUME_FILE": str(resume),
    }
    command = [sys.executable, "-m", "generator", "-q", "train", "--out", str(store)]
    command += ["--site", str(site), "--epochs", "2", "--device", "cpu", *TINY]
    with (tmp_path / "train.log").open("w") as log:  # a file, not a pipe nobody reads
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=log, text=True, start_new_session=True
        )


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "train.log").read_text()[-2000:]


def wait_for_built_epochs(
    site: Path, epochs: int, process: subprocess.Popen[str], tmp_path: Path
) -> None:
    """Until the site's manifest (written last by a build) shows ``epochs`` epochs."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        manifest = load_manifest(site)
        if manifest.runs and manifest.runs[0].epochs == epochs:
            return
        if process.poll() is not None:
            pytest.fail(f"train ended before its site showed {epochs} epochs: {log_of(tmp_path)}")
        time.sleep(0.2)
    pytest.fail(f"{site} never showed {epochs} epochs")


def assert_consistent(site: Path, *, epochs: int, training: bool) -> None:
    """Every link resolves, the manifest lists only files that exist, every page shows
    ``epochs`` epochs and says whether the run still trains."""
    manifest = load_manifest(site)
    assert [run.epochs for run in manifest.runs] == [epochs]
    listed = set(manifest.files) | {
        path for record in manifest.artefacts.values() for path in record.files.values()
    }
    missing = sorted(path for path in listed if not (site / path).is_file())
    assert not missing, missing[:5]
    status = json.loads((site / LIVE_FILE).read_text())
    assert (status["epochs"], status["training"]) == (epochs, training)
    pages = html_pages(site)
    assert len(pages) >= 5  # home, 404, the run page, a page per layer
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert ("Still training" in text) == training, page
        for _, _, link in parse(page).found:
            if link.startswith("data:"):
                continue
            target = resolve(site, page, link)
            assert target is None or target.is_file(), f"{page}: {link} is missing"
    scrubber = (site / "runs" / manifest.runs[0].slug / "index.html").read_text()
    assert f'max="{epochs - 1}"' in scrubber


def site_files(site: Path) -> dict[str, bytes]:
    return {
        path.relative_to(site).as_posix(): path.read_bytes()
        for path in sorted(site.rglob("*"))
        if path.is_file()
    }


def test_train_site_is_complete_after_epoch_1_and_equals_a_build_at_the_end(
    tmp_path: Path,
) -> None:
    store, site, resume = tmp_path / "runs" / "tiny.zarr", tmp_path / "site", tmp_path / "go"
    process = run_train(tmp_path, store, site, resume)
    try:
        wait_for_built_epochs(site, 2, process, tmp_path)
        assert open_run(store).epochs == 2  # training is held after epoch 1: epochs 0, 1
        assert_consistent(site, epochs=2, training=True)
        resume.touch()
        process.wait(timeout=TIMEOUT)
    finally:
        resume.touch()
        if process.poll() is None:  # train and its live build, the whole process group
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, log_of(tmp_path)
    assert open_run(store).epochs == 3
    assert_consistent(site, epochs=3, training=False)
    separate = tmp_path / "separate"
    command = [sys.executable, "-m", "generator", "-q", "build", "--store", str(store)]
    done = subprocess.run(
        [*command, "--out", str(separate)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    live, built = site_files(site), site_files(separate)
    assert live.keys() == built.keys()
    differ = sorted(name for name in live if live[name] != built[name])
    assert not differ, differ[:5]
    assert MANIFEST_NAME in live
