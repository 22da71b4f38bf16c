"""`build` end to end on a real 3-epoch demo run: what it writes, and what it re-makes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.__main__ import main
from generator.build import build
from generator.config import BuildConfig
from generator.encode import ffmpeg_exe
from generator.errors import OptionError, StoreError
from generator.reader import open_run
from generator.store import StoreWriter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(trained_run: Path) -> Path:
    """The session's shared demo run (tests/conftest.py): E = 3 epochs, 4 probes."""
    return trained_run


@pytest.fixture(scope="module")
def site(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["-q", "build", "--store", str(demo_run), "--out", str(out)]) == 0
    return out


def mp4_frames(path: Path) -> tuple[int, str]:
    """Decoded frame count and ffmpeg's stream line for ``path``."""
    probe = subprocess.run(
        [ffmpeg_exe(), "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    frames = int(probe.stderr.rsplit("frame=", 1)[1].split()[0])
    stream = next(line for line in probe.stderr.splitlines() if "Video:" in line)
    return frames, stream


def manifest(site: Path) -> dict:
    return json.loads((site / "manifest.json").read_text())


def test_every_layer_and_probe_has_a_grid_mp4_and_gif_with_one_frame_per_epoch(
    site: Path, demo_run: Path
) -> None:
    run = open_run(demo_run)
    records = manifest(site)["artefacts"]
    grids = [r for r in records.values() if r["kind"] == "grid"]
    assert len(grids) == len(run.layers) * run.n_probes == 40
    for record in grids:
        gif = Image.open(site / record["files"]["gif"])
        assert gif.n_frames == 3 and gif.info["loop"] == 0
        frames, stream = mp4_frames(site / record["files"]["mp4"])
        assert frames == 3 and "h264" in stream and "yuv420p" in stream
        assert (site / record["files"]["poster"]).is_file()


def test_per_channel_kernel_contact_and_probe_artefacts(site: Path, demo_run: Path) -> None:
    run = open_run(demo_run)
    records = manifest(site)["artefacts"].values()
    channels = {(r["layer"], r["probe"], r["channel"]) for r in records if r["kind"] == "channel"}
    expected = {
        (layer.name, probe, c)
        for layer in run.conv_layers
        for probe in (0, 1)
        for c in range(layer.channels)
    }
    assert channels == expected  # default --channel-probes 2
    kernels = {r["layer"] for r in records if r["kind"] == "kernels"}
    assert kernels == {layer.name for layer in run.conv_layers}
    contacts = [r for r in records if r["kind"] == "contact"]
    assert len(contacts) == len(run.layers) * run.n_probes
    assert all(r["epochs"] == [0, 1, 2] for r in contacts)
    assert sum(r["kind"] == "probe" for r in records) == run.n_probes
    for record in records:
        assert all((site / path).is_file() for path in record["files"].values())
    owned = set(manifest(site)["files"])
    assert {p for r in records for p in r["files"].values()} <= owned
    assert {"index.html", "404.html"} <= owned  # the gallery's pages are the build's too


def test_rebuild_without_changes_touches_no_file(site: Path, demo_run: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    result = build(BuildConfig(stores=(demo_run,), out=site))
    assert result.made == 0 and result.kept > 0
    after = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    assert after == before


def test_one_option_for_one_layer_remakes_only_that_layer(
    site: Path, demo_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    result = build(BuildConfig(stores=(demo_run,), out=copy, layers=("block2",), scale="layer"))
    changed = {
        p
        for p in copy.rglob("*")
        if p.is_file() and p.stat().st_mtime_ns != before.get(p) and "/media/" in str(p)
    }  # pages show the options: not media
    assert changed and all("/media/block2/" in str(p) for p in changed)
    assert not any("kernels" in p.name for p in changed)  # kernels do not use --scale
    block2 = [
        r
        for r in manifest(copy)["artefacts"].values()
        if r["layer"] == "block2" and r["kind"] != "kernels"
    ]
    assert result.made == len(block2)
    assert len(manifest(copy)["artefacts"]) == len(manifest(site)["artefacts"])


def test_a_store_being_written_is_built_from_committed_epochs(
    demo_run: Path, tmp_path: Path
) -> None:
    store = tmp_path / "partial.zarr"
    shutil.copytree(demo_run, store)
    StoreWriter.open_for_resume(store).rewind(2)  # as if epoch 2 were being written
    out = tmp_path / "site"
    build(BuildConfig(stores=(store,), out=out, layers=("block1",), probes=(1,), channel_probes=0))
    record = next(r for r in manifest(out)["artefacts"].values() if r["kind"] == "grid")
    assert Image.open(out / record["files"]["gif"]).n_frames == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layers": ("block9",)}, StoreError, "no layer 'block9'"),
        ({"probes": (9,)}, OptionError, "has probes 1..4"),
        ({"jobs": 0}, OptionError, "--jobs must be at least 1"),
        ({"colormap": "viridis"}, OptionError, "viridis"),
        ({"scale": "global"}, OptionError, "global"),
    ],
)
def test_bad_build_options(demo_run: Path, tmp_path: Path, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        build(BuildConfig(stores=(demo_run,), out=tmp_path / "site", **kwargs))


def test_unknown_format_is_one_line(
    demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        ["build", "--store", str(demo_run), "--out", str(tmp_path / "s"), "--formats", "webm"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--formats 'webm'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["/", "~", ".", ".."])
def test_out_refuses_root_home_and_project_folders(
    where: str, demo_run: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    with pytest.raises(OptionError, match="refusing to build into"):
        build(BuildConfig(stores=(demo_run,), out=Path(where).expanduser()))
    assert list(project.iterdir()) == []


def test_out_inside_the_store_is_refused(demo_run: Path) -> None:
    with pytest.raises(OptionError, match="overlaps the run store"):
        build(BuildConfig(stores=(demo_run,), out=demo_run / "site"))


def test_hostile_class_names_stay_text_and_nothing_leaves_out(tmp_path: Path) -> None:
    """Class names are user input: they never become paths, and pages escape them."""
    from tests.conftest import TINY_LAYERS, synthetic_record

    names = ["../../x", "<script>alert(1)</script>", "ünï cödé  "]
    store = tmp_path / "work" / "hostile.zarr"
    writer = StoreWriter.create(
        store,
        class_names=names,
        layers=TINY_LAYERS,
        input_size=8,
        training={},
        probe_images=np.zeros((2, 3, 8, 8), np.uint8),
        probe_labels=np.array([0, 1]),
        probe_sources=["../../a.png", "<b>.png"],
    )
    for epoch in range(2):
        writer.write_epoch(epoch, synthetic_record(epoch))
    writer.trim()
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "work" / "site"
    build(BuildConfig(stores=(store,), out=out, jobs=1))
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(out in p.parents or p == out for p in created)
    assert not (tmp_path / "x").exists()
    pages = "".join(p.read_text() for p in out.rglob("*.html"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages
    assert "<script>alert(1)</script>" not in pages
    assert "ünï cödé" in pages
