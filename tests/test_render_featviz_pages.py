"""Feature visualizations in the gallery: a store that has them gets a sheet per layer and
an animation per channel, on the layer and channel pages; a store without them builds as
before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.__main__ import main
from generator.store import FeatvizSpec, StoreWriter, open_run
from tests.conftest import TINY_LAYERS, synthetic_record

SPEC = FeatvizSpec(size=16, channels={"block1": 3}, steps=2, first_steps=8)


def featviz_store(path: Path, epochs: int = 3) -> Path:
    """A tiny store with feature visualizations of ``block1``'s first 3 channels whose
    pixels encode the epoch."""
    writer = StoreWriter.create(
        path,
        class_names=["alpha", "beta", "gamma"],
        layers=TINY_LAYERS,
        input_size=8,
        training={"epochs": epochs - 1},
        probe_sources=["a.png", "b.png"],
        probe_images=np.zeros((2, 3, 8, 8), np.uint8),
        probe_labels=np.arange(2),
        featviz=SPEC,
    )
    for epoch in range(epochs):
        record = synthetic_record(epoch)
        record.featviz = {"block1": np.full((3, 16, 16, 3), 40 * epoch, np.uint8)}
        writer.write_epoch(epoch, record)
    writer.trim()
    writer.close()
    return path


def test_the_store_reads_back_each_epochs_images(tmp_path):
    run = open_run(featviz_store(tmp_path / "run.zarr"))
    assert run.attrs.featviz == SPEC
    assert run.featviz("block1").shape == (3, 3, 16, 16, 3)
    assert run.featviz("block1", 2)[0, 0, 0, 0] == 80


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("featviz")
    store = featviz_store(folder / "run.zarr")
    assert main(["-q", "build", "--store", str(store), "--out", str(folder / "site")]) == 0
    return folder / "site"


def test_the_layer_page_shows_the_sheet_and_the_channel_page_its_animation(site):
    media = {p.name for p in site.rglob("*") if "featviz" in p.name}
    assert "featviz-sheet-block1.mp4" in media and "featviz-sheet-block1.gif" in media
    assert {f"featviz-block1-c{c}.mp4" for c in range(3)} <= media
    assert not any("block2" in name for name in media)  # only the visualised layer
    pages = {p.name: p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    layer = next(text for text in pages.values() if "featviz-sheet-block1.mp4" in text)
    assert "What each channel looks for" in layer
    channel = [text for text in pages.values() if "featviz-block1-c0.mp4" in text]
    assert len(channel) == 1 and "What it looks for" in channel[0]
