"""Issue 23, "any input": a network on grey, four-channel or non-square images is recorded
with its probes as given, and the gallery built from it shows them (grey as grey, other
channel counts through the display mapping) with every page and animation in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from generator import Recorder
from generator.__main__ import main
from generator.record.probes import prepare_probes
from generator.store import open_run

# cheap: one worker, GIFs only, one probe's channels, one channel page, one contact sheet
CHEAP = ["--jobs", "1", "--formats", "gif", "--channel-probes", "1", "--channel-pages", "1"]


def tiny(channels: int) -> nn.Module:
    """Two convs (the second strided, so its map is half the input) and a linear head."""
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def swap(images: np.ndarray) -> np.ndarray:
    """A display mapping for four channels: channels 3, 2, 1 as red, green, blue."""
    return np.ascontiguousarray(images[:, [3, 2, 1]])


def record_and_build(tmp_path: Path, shape: tuple[int, ...], **options: object) -> Path:
    """Record two epochs of ``tiny`` on uint8 probes of ``shape`` (with dataset examples,
    without feature visualizations) and build its gallery; returns the store."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    store = tmp_path / "run.zarr"
    with Recorder(
        tiny(shape[1]),
        probes=images,
        out=store,
        featviz_layers=[],
        example_pool=images,
        example_top_k=2,
        **options,  # type: ignore[arg-type]
    ) as recorder:
        recorder.epoch(train_loss=1.0)
    site = tmp_path / "site"
    assert main(["-q", "build", "--store", str(store), "--out", str(site), *CHEAP]) == 0
    assert (site / "index.html").is_file()
    pages = list(site.rglob("*.html"))
    assert any("/layers/" in str(page) for page in pages), pages
    assert any("/channels/" in str(page) for page in pages), pages
    for kind in ("probe", "grid", "channel", "patches", "kernels"):
        assert list(site.rglob(f"{kind}-*.gif")), kind
    assert list(site.rglob("contact-*.png")) and list(site.rglob("patch-sheet-*.png"))
    return store


def probe_poster(store: Path) -> np.ndarray:
    site = store.parent / "site"
    (poster,) = site.rglob("probe-p0.poster.png")
    return np.asarray(Image.open(poster).convert("RGB"))


@pytest.mark.slow
def test_a_grey_28px_network_is_recorded_and_shown_grey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = record_and_build(tmp_path, (3, 1, 28, 28))
    run = open_run(store)
    assert run.attrs.input_shape == (1, 28, 28)
    assert run.probe_images.shape == (3, 1, 28, 28)
    assert run.layer_at("0", 1).shape == (3, 4, 28, 28)
    assert run.example_images.shape == (3, 28, 28, 1)  # the pool as the model saw it
    assert main(["info", str(store)]) == 0
    assert "28x28, grey, 3 probes" in capsys.readouterr().out
    poster = probe_poster(store)[20:120, 20:120].astype(int)  # inside the probe's picture
    assert poster.std() > 0  # a picture, not the background
    assert (poster[..., 0] == poster[..., 1]).all() and (poster[..., 1] == poster[..., 2]).all()


@pytest.mark.slow
def test_a_four_channel_network_is_shown_through_its_display(tmp_path: Path) -> None:
    store = record_and_build(tmp_path, (3, 4, 32, 32), display=swap)
    run = open_run(store)
    assert run.attrs.input_shape == (4, 32, 32)
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(swap(run.probe_images), 1, -1))


@pytest.mark.slow
def test_a_non_square_network_keeps_its_aspect(tmp_path: Path) -> None:
    store = record_and_build(tmp_path, (3, 3, 48, 64))
    run = open_run(store)
    assert run.attrs.input_shape == (3, 48, 64) and run.probe_pictures.shape == (3, 48, 64, 3)
    assert run.layer_at("0", 1).shape == (3, 4, 48, 64)
    assert run.layer_at("2", 1).shape == (3, 4, 24, 32)
    np.testing.assert_array_equal(run.probe_pictures, np.moveaxis(run.probe_images, 1, -1))


def test_a_display_that_returns_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="display= returned") as error:
        Recorder(
            tiny(4),
            probes=torch.zeros(2, 4, 8, 8, dtype=torch.uint8),
            out=tmp_path / "run.zarr",
            featviz_layers=[],
            display=lambda images: images,
        )
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run.zarr").exists()


def test_image_paths_load_grey_and_non_square(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.full((30, 40, 3), (200, 100, 50), np.uint8)).save(path)
    grey = prepare_probes([path], input_size=(1, 12, 16))
    assert grey.images.shape == (1, 1, 12, 16) and grey.shape == (1, 12, 16)
    assert grey.inputs.shape == (1, 1, 12, 16)
    wide = prepare_probes([path], input_size=(12, 24))
    assert wide.images.shape == (1, 3, 12, 24)
    assert tuple(wide.images[0, :, 5, 5]) == (200, 100, 50)


def test_a_dataset_of_grey_non_square_items_gives_probes_as_given() -> None:
    class Items:
        targets = [0, 1, 0, 1]

        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            return torch.full((1, 6, 10), index * 10, dtype=torch.uint8), self.targets[index]

    probes = prepare_probes(Items(), count=2)
    assert probes.images.shape == (2, 1, 6, 10) and probes.labels.tolist() == [0, 1]
    assert probes.inputs.shape == (2, 1, 6, 10)
