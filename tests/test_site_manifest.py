"""The typed build manifest: it round-trips, and an older or damaged one means a clean
rebuild (never a crash) that still cleans up the files the older build owned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.build import build
from generator.config import BuildConfig, PublishedOptions
from generator.site.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ArtefactKind,
    ArtefactRecord,
    Manifest,
    RunEntry,
    load_manifest,
)
from tests.conftest import make_store

FAST = {"jobs": 1, "formats": ("gif",), "channel_probes": 0}


def sample_manifest() -> Manifest:
    grid = ArtefactRecord(
        id="a-1/grid-block1-p0",
        kind=ArtefactKind.GRID,
        layer="layer1.0.conv1",
        probe=0,
        channel=None,
        files={"gif": "runs/a-1/media/x.gif", "poster": "runs/a-1/media/x.poster.png"},
        fingerprint="f" * 40,
        frames=3,
        width=64,
        height=48,
        epochs=(0, 1, 2),
        kernels_shown=None,
    )
    return Manifest(
        tool_version="1.2.3",
        options=PublishedOptions(fps=4.0, formats=("gif",)),
        runs=(RunEntry(slug="a-1", name="a\\xff", epochs=3, artefacts=(grid.id,)),),
        artefacts={grid.id: grid},
        files=("index.html", *grid.files.values()),
    )


def test_a_manifest_round_trips_through_its_json(tmp_path: Path) -> None:
    manifest = sample_manifest()
    (tmp_path / MANIFEST_NAME).write_bytes(manifest.dumps())
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.artefacts["a-1/grid-block1-p0"].kind is ArtefactKind.GRID
    assert loaded.records_of(loaded.runs[0]) == [manifest.artefacts["a-1/grid-block1-p0"]]
    assert json.loads(manifest.dumps())["version"] == MANIFEST_VERSION


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"version": 2, "artefacts": {"x": {"kind": "hologram"}}}',
        '{"version": 2, "runs": [{"slug": "a"}]}',
        '{"version": 2, "artefacts": 5}',
    ],
)
def test_a_damaged_manifest_loads_as_empty(tmp_path: Path, text: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(text)
    loaded = load_manifest(tmp_path)
    assert loaded.artefacts == {} and loaded.runs == ()


def old_version_manifest(owned: list[str]) -> str:
    """What the previous release wrote: version 1, with each store's absolute path."""
    return json.dumps(
        {
            "version": 1,
            "runs": [{"slug": "run-x", "store": "/home/me/runs/x.zarr", "epochs": 2}],
            "artefacts": {"run-x/grid": {"kind": "grid", "files": {"gif": owned[0]}}},
            "files": owned,
        }
    )


def test_an_older_manifest_means_a_clean_rebuild_that_removes_its_files(
    tmp_path: Path,
) -> None:
    store = tmp_path / "run.zarr"
    make_store(store)
    site = tmp_path / "site"
    (site / "runs" / "gone").mkdir(parents=True)
    (site / "runs" / "gone" / "old.gif").write_bytes(b"GIF89a")
    (site / "mine.txt").write_text("not the build's")
    (site / MANIFEST_NAME).write_text(old_version_manifest(["runs/gone/old.gif"]))
    result = build(BuildConfig(stores=(store,), out=site, **FAST))
    assert result.kept == 0 and result.made > 0  # everything re-made
    assert not (site / "runs" / "gone" / "old.gif").exists()  # the old build's file
    assert (site / "mine.txt").exists()  # never listed: never touched
    assert load_manifest(site).version == MANIFEST_VERSION


def test_a_malformed_manifest_means_a_clean_rebuild(tmp_path: Path) -> None:
    store = tmp_path / "run.zarr"
    make_store(store)
    site = tmp_path / "site"
    build(BuildConfig(stores=(store,), out=site, **FAST))
    (site / MANIFEST_NAME).write_text('{"version": 2, "artefacts": {"x": 1}}')
    result = build(BuildConfig(stores=(store,), out=site, **FAST))
    assert result.kept == 0 and result.made == len(load_manifest(site).artefacts)


def test_the_published_manifest_holds_no_local_path(tmp_path: Path) -> None:
    store = tmp_path / "secret-folder" / "run.zarr"
    make_store(store)
    site = tmp_path / "site"
    build(BuildConfig(stores=(store,), out=site, **FAST))
    text = (site / MANIFEST_NAME).read_text()
    assert "secret-folder" not in text and str(tmp_path) not in text
    options = json.loads(text)["options"]
    assert "out" not in options and "stores" not in options and "jobs" not in options


def test_a_kind_prints_as_its_plain_name() -> None:
    """Templates and file names show a kind as text: "grid", never "ArtefactKind.GRID"."""
    assert str(ArtefactKind.GRID) == f"{ArtefactKind.GRID}" == "grid"
    assert ArtefactKind("probe") is ArtefactKind.PROBE and ArtefactKind.PROBE == "probe"
