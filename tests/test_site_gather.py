"""The gallery context: which pages exist, their links, captions and derived statistics.

The manifest here is made from the build's own plan (the artefacts it would make) without
encoding anything, so these tests stay fast; tests/test_site.py renders a real build.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generator.analysis.statistics import dead_share, kernel_change
from generator.build.builder import plan_run
from generator.build.plan import published_options
from generator.config import BuildConfig
from generator.errors import StoreError
from generator.site.gather import build_site_context
from generator.site.manifest import ArtefactKind, ArtefactRecord, Manifest, RunEntry
from generator.site.pages import ChannelPage, HomePage, LayerPage, NotFoundPage, RunPage
from generator.site.paths import RunPaths, root_of, url
from generator.store import RunReader, file_stem, open_run
from tests.conftest import TINY_LAYERS, make_store


def fake_manifest(runs: list[RunReader], site: Path, **options: Any) -> Manifest:
    """The manifest a build of ``runs`` would write, with plausible made-file records."""
    config = BuildConfig(stores=tuple(r.path for r in runs), out=site, jobs=1, **options)
    entries, records = [], {}
    for run in runs:
        plan = plan_run(run, config)
        for a in plan.artefacts:
            records[a.id] = ArtefactRecord(
                id=a.id,
                kind=ArtefactKind(a.kind),
                layer=a.layer,
                probe=a.probe,
                channel=a.channel,
                files=dict(a.files),
                fingerprint=a.fingerprint,
                title=a.title,
                frames=1 if a.kind == "contact" else run.epochs,
                width=64,
                height=48,
            )
        entries.append(
            RunEntry(
                slug=plan.slug,
                name=run.name,
                epochs=run.epochs,
                artefacts=tuple(a.id for a in plan.artefacts),
            )
        )
    return Manifest(
        tool_version="9.9.9",
        options=published_options(config),
        runs=tuple(entries),
        artefacts=records,
    )


def readers(runs: list[RunReader], manifest: Manifest) -> dict[str, RunReader]:
    """The readers keyed by slug, as ``build`` passes them (same order as the runs)."""
    return {entry.slug: run for entry, run in zip(manifest.runs, runs, strict=True)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> RunReader:
    path = tmp_path_factory.mktemp("gallery") / "run.zarr"
    make_store(path)
    return open_run(path)


@pytest.fixture(scope="module")
def context(tiny_run: RunReader, tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("site")
    manifest = fake_manifest([tiny_run], site)
    return build_site_context(manifest, readers([tiny_run], manifest))


def pages_of(context, kind: type) -> list:
    return [p for p in context.pages if isinstance(p, kind)]


def test_root_prefix_follows_page_depth() -> None:
    assert root_of("index.html") == ""
    assert root_of("runs/a/index.html") == "../../"
    assert root_of("runs/a/channels/block1-c1.html") == "../../../"


def test_url_is_the_shortest_relative_path_percent_encoded() -> None:
    assert url("runs/a/layers/b.html", "runs/a/media/x y#1.mp4") == "../media/x%20y%231.mp4"
    assert url("index.html", "runs/a/index.html") == "runs/a/index.html"
    assert url("runs/a/index.html", "index.html") == "../../index.html"


def test_layer_file_names_stay_inside_their_folder_and_never_collide() -> None:
    assert file_stem("block1") == "block1" and file_stem("layer1.0.conv1") == "layer1.0.conv1"
    assert "/" not in file_stem("../../etc/passwd") and not file_stem("..").startswith(".")
    names = ["a/b", "a-b", "a b", "é[0]", "0"]
    stems = set(RunPaths.of("run", names).files.values())
    assert len(stems) == len(names)


def test_every_page_kind_is_there(context, tiny_run: RunReader) -> None:
    conv_channels = sum(layer.channels for layer in tiny_run.attrs.conv_layers)
    assert len(pages_of(context, HomePage)) == 1
    assert len(pages_of(context, RunPage)) == 1
    assert len(pages_of(context, LayerPage)) == len(TINY_LAYERS)
    assert len(pages_of(context, ChannelPage)) == conv_channels
    assert len(pages_of(context, NotFoundPage)) == 1
    paths = [p.path for p in context.pages]
    assert len(paths) == len(set(paths))
    assert all(p.root == root_of(p.path) for p in context.pages)


def test_channel_pages_are_numbered_from_one(context) -> None:
    paths = {p.path.rsplit("/", 1)[-1] for p in pages_of(context, ChannelPage)}
    assert {"block1-c1.html", "block1-c4.html", "block2-c6.html"} <= paths
    assert "block1-c0.html" not in paths


def test_every_thumbnail_links_to_an_existing_channel_page(context) -> None:
    pages = {p.path for p in context.pages}
    for layer in pages_of(context, LayerPage):
        base = layer.path.rsplit("/", 2)[0]
        for thumb in layer.channels:
            assert thumb.href.startswith("../channels/")
            assert f"{base}/{thumb.href[3:]}" in pages
            assert thumb.poster and thumb.poster.endswith(".poster.png")


def test_home_card_has_classes_accuracy_and_a_thumbnail(context, tiny_run: RunReader) -> None:
    (home,) = pages_of(context, HomePage)
    (card,) = home.runs
    assert card.classes == tuple(tiny_run.attrs.class_names)
    assert card.epochs_trained == tiny_run.epochs - 1
    assert card.final_val_accuracy == "40.0%"
    assert card.thumbnail is not None and card.thumbnail.kind == "probe"
    assert card.thumbnail.mp4.startswith("runs/") and card.thumbnail.eager


def test_run_page_content(context, tiny_run: RunReader) -> None:
    (run,) = pages_of(context, RunPage)
    rows = [row for group in run.layer_groups for row in group.rows]
    assert [row.name for row in rows] == [layer.name for layer in TINY_LAYERS]
    assert rows[0].href == "layers/block1.html"
    assert rows[0].receptive_field == "3 px" and rows[2].receptive_field == "—"
    assert rows[0].kernel == "3 × 3" and rows[2].kernel == "—"
    assert len(run.probes) == tiny_run.n_probes
    assert run.probes[0].label == "alpha" and run.probes[0].animation is not None
    assert not run.probes[0].animation.eager  # below the fold
    assert np.array(eval(run.confusion.data)).shape == (3, 3, 3)  # (E, K, K) for the scrubber
    assert run.scrubber is not None and run.scrubber.epochs == tiny_run.epochs
    assert ("seed", "0") in run.footer.items and run.footer.tool_version == "9.9.9"


def test_layer_page_media_and_laziness(context, tiny_run: RunReader) -> None:
    block1 = next(p for p in pages_of(context, LayerPage) if p.layer.name == "block1")
    assert len(block1.grids) == tiny_run.n_probes
    assert [m.eager for m in block1.grids] == [True, True]
    assert block1.kernels is not None and block1.kernels.mp4.startswith("../media/")
    assert block1.grids[0].mp4 == "../media/block1/grid-block1-p0.mp4"
    assert block1.previous is None and block1.next.label == "block2"
    hidden = next(p for p in pages_of(context, LayerPage) if p.layer.name == "hidden")
    assert hidden.kernels is None and hidden.channels == ()


def test_channel_page_media_kernel_note_and_stats(context, tiny_run: RunReader) -> None:
    page = next(p for p in pages_of(context, ChannelPage) if p.path.endswith("block2-c2.html"))
    assert page.number == 2 and page.layer == "block2"
    assert [m.id.rsplit("-", 1)[-1] for m in page.animations] == ["p0"]  # --channel-probes 1
    assert page.animations[0].mp4 == "../media/block2/channel-block2-c1-p0.mp4"
    assert "row 2" in page.kernel_note
    assert len(page.stats) == tiny_run.n_probes
    assert page.previous.label == "channel 1" and page.next.label == "channel 3"
    assert page.layer_href == "../layers/block2.html"


def test_captions_name_the_probe_class(context) -> None:
    block1 = next(p for p in pages_of(context, LayerPage) if p.layer.name == "block1")
    assert block1.grids[1].caption == "probe 2 · beta"


def test_missing_reader_is_a_clear_error(tiny_run: RunReader, tmp_path: Path) -> None:
    manifest = fake_manifest([tiny_run], tmp_path / "site")
    with pytest.raises(StoreError, match="no reader"):
        build_site_context(manifest, {})


def test_channels_without_animation_still_get_pages(tiny_run: RunReader, tmp_path: Path) -> None:
    manifest = fake_manifest([tiny_run], tmp_path / "site", channel_probes=0)
    context = build_site_context(manifest, readers([tiny_run], manifest))
    channel_pages = pages_of(context, ChannelPage)
    assert channel_pages and all(p.animations == () for p in channel_pages)
    layer = next(p for p in pages_of(context, LayerPage) if p.layer.name == "block1")
    assert all(t.poster is None and t.href for t in layer.channels)


def test_build_options_shown_without_local_paths(context) -> None:
    (home,) = pages_of(context, HomePage)
    keys = [k for k, _ in home.footer.items]
    assert "fps" in keys and "out" not in keys


def test_dead_share_counts_channels_constant_over_every_probe() -> None:
    # (E=2, P=2, C=3): channel 0 always 0; channel 1 constant 1.5 on both probes at epoch 0
    minimum = np.array([[[0, 1.5, -1], [0, 1.5, 0]], [[0, 0, -1], [0, 1, 0]]], float)
    maximum = np.array([[[0, 1.5, 1], [0, 1.5, 2]], [[0, 1, 1], [0, 1, 2]]], float)
    assert dead_share(minimum, maximum).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_kernel_change_matches_numpy(tiny_run: RunReader) -> None:
    change = kernel_change(tiny_run, "block2")
    weights = tiny_run.kernels("block2").astype(np.float64)
    flat = weights.reshape(weights.shape[0], weights.shape[1], -1)
    expected = np.linalg.norm(flat[2] - flat[1], axis=1) / np.linalg.norm(flat[1], axis=1)
    assert change.shape == (tiny_run.epochs, 6)
    assert np.isnan(change[0]).all()
    np.testing.assert_allclose(change[2], expected, rtol=1e-6)


def test_dead_share_treats_nan_statistics_as_alive_without_warnings() -> None:
    nan = np.full((1, 2, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dead_share(nan, nan).tolist() == [0.0]
