"""The build planner without rendering: what is up to date, what is stale, what is carried
over with --layers/--probes, what is deleted, and which options re-make which kinds.

Each test plans against a "previous build" made of the planned records and empty files,
so no training, no rendering and no encoder is needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.build.plan import (
    BuildPlan,
    new_manifest,
    plan_build,
    plan_run,
    published_options,
    stale_files,
)
from generator.config import BuildConfig
from generator.site.manifest import ArtefactKind, Manifest
from generator.store import RunReader, open_run
from tests.conftest import make_store, synthetic_record


@pytest.fixture
def run(tmp_path: Path) -> RunReader:
    make_store(tmp_path / "run.zarr", trim=False, featviz=True, examples=True)
    return open_run(tmp_path / "run.zarr")


def config_for(run: RunReader, site: Path, **options) -> BuildConfig:
    return BuildConfig(stores=(run.path,), out=site, jobs=1, **options)


def plan(run: RunReader, previous: Manifest, site: Path, **options) -> BuildPlan:
    config = config_for(run, site, **options)
    return plan_build([plan_run(run, config)], previous, config, site)


def fake_build(run: RunReader, site: Path, **options) -> Manifest:
    """The manifest a build with ``options`` would leave, with empty files on disk."""
    config = config_for(run, site, **options)
    plans = [plan_run(run, config)]
    done = plan_build(plans, Manifest(), config, site)
    for record in done.todo:
        for relative in record.files.values():
            (site / relative).parent.mkdir(parents=True, exist_ok=True)
            (site / relative).touch()
    return new_manifest(plans, done.records({r.id: r for r in done.todo}), config)


def kinds(records) -> set[ArtefactKind]:
    return {r.kind for r in records}


def test_a_first_build_makes_everything(run: RunReader, tmp_path: Path) -> None:
    first = plan(run, Manifest(), tmp_path)
    assert len(first.todo) == len(first.wanted) > 0 and not first.kept
    assert kinds(first.todo) == set(ArtefactKind)


def test_nothing_is_remade_when_nothing_changed(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path)
    again = plan(run, previous, tmp_path)
    assert again.todo == () and set(again.kept) == set(previous.artefacts)


def test_a_missing_file_remakes_only_its_artefact(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path)
    victim = previous.artefacts[next(iter(previous.artefacts))]
    (tmp_path / next(iter(victim.files.values()))).unlink()
    assert [a.id for a in plan(run, previous, tmp_path).todo] == [victim.id]


def test_a_new_epoch_makes_everything_stale(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path)
    from generator.store import StoreWriter

    StoreWriter.open_for_resume(run.path).write_epoch(3, synthetic_record(3, examples=True))
    grown = plan(run := open_run(run.path), previous, tmp_path)
    assert run.epochs == 4 and len(grown.todo) == len(grown.wanted)


@pytest.mark.parametrize(
    "option, value, remade",
    [
        # --fps re-makes every animation and no still (contact sheets are PNGs)
        (
            "fps",
            8.0,
            {ArtefactKind.GRID, ArtefactKind.CHANNEL, ArtefactKind.KERNELS, ArtefactKind.PROBE}
            | {ArtefactKind.KERNEL_CHANGE, ArtefactKind.FEATVIZ, ArtefactKind.FEATVIZ_SHEET}
            | {ArtefactKind.PATCHES},
        ),
        # --max-side re-makes grids, contact sheets and kernels: not the probe animation,
        # whose frames have a fixed size, nor per-channel ones (they use --channel-side)
        (
            "max_side",
            512,
            {ArtefactKind.GRID, ArtefactKind.CONTACT, ArtefactKind.KERNELS}
            | {ArtefactKind.KERNEL_CHANGE, ArtefactKind.FEATVIZ_SHEET, ArtefactKind.PATCH_SHEET},
        ),
        ("channel_side", 128, {ArtefactKind.CHANNEL, ArtefactKind.FEATVIZ, ArtefactKind.PATCHES}),
        (
            "gif_max_side",
            128,
            {ArtefactKind.GRID, ArtefactKind.KERNELS, ArtefactKind.KERNEL_CHANGE}
            | {ArtefactKind.FEATVIZ_SHEET},
        ),
        ("colormap", "diverging", {ArtefactKind.GRID, ArtefactKind.CHANNEL, ArtefactKind.CONTACT}),
        ("scale", "layer", {ArtefactKind.GRID, ArtefactKind.CHANNEL, ArtefactKind.CONTACT}),
    ],
)
def test_an_option_remakes_exactly_the_kinds_that_use_it(
    run: RunReader, tmp_path: Path, option: str, value, remade: set[ArtefactKind]
) -> None:
    previous = fake_build(run, tmp_path)
    changed = plan(run, previous, tmp_path, **{option: value})
    assert kinds(changed.todo) == remade
    # only the first probe's grid has a GIF (to share): the other probes' grids are kept
    grids_with_a_gif = {r.probe for r in changed.todo if r.kind is ArtefactKind.GRID}
    also_kept = {ArtefactKind.GRID} if option == "gif_max_side" else set()
    assert option != "gif_max_side" or grids_with_a_gif == {0}
    assert kinds(changed.kept.values()) == set(ArtefactKind) - remade | also_kept


def test_layers_and_probes_carry_the_others_over(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path)
    only = plan(run, previous, tmp_path, layers=("block2",), probe_index=(2,), scale="layer")
    assert {a.layer for a in only.wanted.values()} == {"block2", None}  # None: probe 2
    assert {a.probe for a in only.wanted.values()} == {1, None}  # None: kernels
    assert all(a.layer == "block2" for a in only.todo)
    carried = only.carried.values()
    assert {a.layer for a in carried if a.layer} == {"block1", "hidden", "logits", "block2"}
    assert all(a.layer != "block2" or a.probe == 0 for a in carried)
    records = only.records({a.id: a for a in only.todo})
    assert set(records) >= set(previous.artefacts)  # nothing lost from the manifest
    # --probes 2 makes probe 2 the first selected: it gets block2's per-channel views
    added = [records[i] for i in set(records) - set(previous.artefacts)]
    assert {(r.kind, r.layer, r.probe) for r in added} == {
        (ArtefactKind.CHANNEL, "block2", 1),
        (ArtefactKind.CONTACT, "block2", 1),
    }


def test_a_carried_over_artefact_needs_its_files(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path)
    block1 = next(a for a in previous.artefacts.values() if a.layer == "block1")
    for relative in block1.files.values():
        (tmp_path / relative).unlink()
    only = plan(run, previous, tmp_path, layers=("block2",))
    assert block1.id not in only.carried and len(only.carried) > 0


def test_stale_files_are_exactly_those_no_longer_owned(run: RunReader, tmp_path: Path) -> None:
    previous = fake_build(run, tmp_path).with_files(["index.html", "runs/old/index.html"])
    current = fake_build(run, tmp_path, formats=("mp4",)).with_files(["index.html"])
    stale = stale_files(previous, current)
    assert "runs/old/index.html" in stale and "index.html" not in stale
    assert stale and all(p.endswith((".gif", ".webm", ".html")) for p in stale)
    assert not set(stale) & set(current.files)


def test_a_run_without_epochs_plans_no_artefact(tmp_path: Path) -> None:
    make_store(tmp_path / "young.zarr", epochs=0, trim=False)
    young = open_run(tmp_path / "young.zarr")
    config = config_for(young, tmp_path / "site")
    plans = [plan_run(young, config)]
    assert plans[0].artefacts == ()
    manifest = new_manifest(plans, {}, config)
    assert manifest.runs[0].epochs == 0 and manifest.runs[0].artefacts == ()


def test_published_options_hold_no_paths(run: RunReader, tmp_path: Path) -> None:
    options = published_options(config_for(run, tmp_path / "secret", layers=("block1",))).to_json()
    assert not any(isinstance(v, Path) for v in options.values())
    assert {"out", "stores", "jobs"}.isdisjoint(options) and options["layers"] == ["block1"]


def test_auto_builds_own_a_webm_before_the_mp4_and_remake_a_lost_one(
    run: RunReader, tmp_path: Path
) -> None:
    previous = fake_build(run, tmp_path)
    animations = [r for r in previous.artefacts.values() if r.kind.is_animation]
    assert animations and all(list(r.files)[:2] == ["webm", "mp4"] for r in animations)
    assert all(r.files["webm"] in previous.files for r in animations)  # the manifest owns it
    lost = animations[0]
    (tmp_path / lost.files["webm"]).unlink()
    again = plan(run, previous, tmp_path)
    assert [r.id for r in again.todo] == [lost.id]  # only the artefact missing its WebM


def test_channel_pages_caps_the_per_channel_animations_of_each_conv_layer(
    run: RunReader, tmp_path: Path
) -> None:
    # block1 has 4 channels, block2 6; 1 probe gets per-channel animations by default
    capped = plan(run, Manifest(), tmp_path, channel_pages=3)
    channels = {
        (r.layer, r.channel) for r in capped.wanted.values() if r.kind is ArtefactKind.CHANNEL
    }
    assert channels == {(layer, c) for layer in ("block1", "block2") for c in range(3)}
    every = plan(run, Manifest(), tmp_path, channel_pages=64)
    assert sum(r.kind is ArtefactKind.CHANNEL for r in every.wanted.values()) == 4 + 6
    one = plan(run, Manifest(), tmp_path, channel_pages=1)  # the fixture visualises 2
    for kind in (ArtefactKind.FEATVIZ, ArtefactKind.PATCHES):  # shown on channel pages only
        paged = {(r.layer, r.channel) for r in one.wanted.values() if r.kind is kind}
        assert paged and all(c == 0 for _, c in paged), kind
    none = plan(run, Manifest(), tmp_path, channel_pages=0)
    per_channel = (ArtefactKind.CHANNEL, ArtefactKind.FEATVIZ, ArtefactKind.PATCHES)
    assert not [r for r in none.wanted.values() if r.kind in per_channel]


def test_contact_probes_chooses_how_many_probes_get_a_contact_sheet(
    run: RunReader, tmp_path: Path
) -> None:
    def contacts(**options) -> set[tuple[str, int]]:
        planned = plan(run, Manifest(), tmp_path, **options).wanted.values()
        return {(r.layer, r.probe) for r in planned if r.kind is ArtefactKind.CONTACT}

    layers = {layer.name for layer in run.layers}
    assert contacts() == {(layer, 0) for layer in layers}  # default: the first probe
    assert contacts(contact_probes=2) == {(layer, p) for layer in layers for p in (0, 1)}
    assert contacts(contact_probes=0) == set()
    assert contacts(contact_probes=1, probe_index=(2,)) == {(layer, 1) for layer in layers}


def test_each_conv_layer_gets_its_kernels_and_their_change(run: RunReader, tmp_path: Path) -> None:
    first = plan(run, Manifest(), tmp_path)
    for kind in (ArtefactKind.KERNELS, ArtefactKind.KERNEL_CHANGE):
        assert {r.layer for r in first.wanted.values() if r.kind is kind} == {"block1", "block2"}
