"""The demo dataset: deterministic PNGs, a reusable cache, and classes that really differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.data import DEMO_CLASSES, load_image_folder, make_demo_dataset
from generator.data.demo import COMPLETE_MARKER, DEMO_VERSION, PAINTERS
from generator.errors import DataError

SIZE, PER_CLASS = 48, 3


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _class_pixels(root: Path, name: str) -> np.ndarray:
    """All images of one class as (N, S, S, 3) float."""
    return np.stack(
        [np.asarray(Image.open(p), dtype=np.float64) for p in sorted((root / name).glob("*.png"))]
    )


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("cache"), seed=3, size=64, per_class=12)


def test_layout_names_and_marker(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path, seed=0, size=SIZE, per_class=PER_CLASS)
    assert root == tmp_path / f"demo-{DEMO_VERSION}-s0-{SIZE}px-{PER_CLASS}"
    assert len(DEMO_CLASSES) >= 4 and len(set(DEMO_CLASSES)) == len(DEMO_CLASSES)
    assert set(PAINTERS) == set(DEMO_CLASSES)
    assert (root / COMPLETE_MARKER).is_file()
    for name in DEMO_CLASSES:
        files = sorted(p.name for p in (root / name).iterdir())
        assert files == [f"{name}_{i:04d}.png" for i in range(PER_CLASS)]
        with Image.open(root / name / files[0]) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (SIZE, SIZE)
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no staging left behind


def test_loads_as_an_image_folder(tmp_path: Path) -> None:
    dataset = load_image_folder(make_demo_dataset(tmp_path, size=SIZE, per_class=PER_CLASS), SIZE)
    assert dataset.classes == list(DEMO_CLASSES)  # so DEMO_CLASSES[label] names the label
    assert len(dataset) == len(DEMO_CLASSES) * PER_CLASS and dataset.skipped == 0
    assert dataset[0][0].shape == (3, SIZE, SIZE)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    first = _files(make_demo_dataset(tmp_path / "a", seed=7, size=SIZE, per_class=PER_CLASS))
    again = _files(make_demo_dataset(tmp_path / "b", seed=7, size=SIZE, per_class=PER_CLASS))
    other = _files(make_demo_dataset(tmp_path / "c", seed=8, size=SIZE, per_class=PER_CLASS))
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_images_within_a_class_differ(demo_root: Path) -> None:
    for name in DEMO_CLASSES:
        pixels = _class_pixels(demo_root, name)
        assert np.abs(pixels[0] - pixels[1]).mean() > 5.0, name


def test_a_complete_cache_is_reused_untouched(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path, size=SIZE, per_class=PER_CLASS)
    sentinel = root / DEMO_CLASSES[0] / f"{DEMO_CLASSES[0]}_0000.png"
    sentinel.write_bytes(b"changed after generation")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert make_demo_dataset(tmp_path, size=SIZE, per_class=PER_CLASS) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert sentinel.read_bytes() == b"changed after generation"


def test_an_incomplete_folder_is_regenerated(tmp_path: Path) -> None:
    reference = _files(make_demo_dataset(tmp_path / "ref", size=SIZE, per_class=PER_CLASS))
    final = tmp_path / "cache" / f"demo-{DEMO_VERSION}-s0-{SIZE}px-{PER_CLASS}"
    (final / DEMO_CLASSES[0]).mkdir(parents=True)  # as if killed half way, without marker
    (final / DEMO_CLASSES[0] / "half.png").write_bytes(b"partial")
    root = make_demo_dataset(tmp_path / "cache", size=SIZE, per_class=PER_CLASS)
    assert root == final and (root / COMPLETE_MARKER).is_file()
    assert not (root / DEMO_CLASSES[0] / "half.png").exists()
    assert _files(root) == reference


def _channel_means(pixels: np.ndarray) -> np.ndarray:
    return pixels.mean(axis=(0, 1, 2))  # (3,) mean R, G, B over the class


def _gradient_energy(pixels: np.ndarray, block: int = 4) -> tuple[float, float]:
    """Mean |d/dx| and |d/dy| of the grey images, block-averaged to cancel the pixel noise:
    which way the edges run."""
    n, height, width, _ = pixels.shape
    grey = pixels.mean(axis=3).reshape(n, height // block, block, width // block, block)
    grey = grey.mean(axis=(2, 4))
    return float(np.abs(np.diff(grey, axis=2)).mean()), float(np.abs(np.diff(grey, axis=1)).mean())


def test_stripes_differ_in_colour_and_orientation(demo_root: Path) -> None:
    warm, cool = _class_pixels(demo_root, "warm_stripes"), _class_pixels(demo_root, "cool_stripes")
    red, _, blue = _channel_means(warm)
    assert red > blue + 20
    red, _, blue = _channel_means(cool)
    assert blue > red + 20
    across, down = _gradient_energy(warm)  # vertical bars: intensity changes along x
    assert across > 3 * down
    across, down = _gradient_energy(cool)
    assert down > 3 * across


def _share_with_green_region(pixels: np.ndarray) -> float:
    """Share of images where at least 2 % of the pixels are clearly green."""
    greenness = pixels[..., 1] - np.maximum(pixels[..., 0], pixels[..., 2])
    return float((np.percentile(greenness, 98, axis=(1, 2)) > 40).mean())


def test_discs_are_green_and_checkers_have_edges_both_ways(demo_root: Path) -> None:
    assert _share_with_green_region(_class_pixels(demo_root, "green_discs")) == 1.0
    for name in ("warm_stripes", "cool_stripes", "triangles"):
        assert _share_with_green_region(_class_pixels(demo_root, name)) < 0.75, name
    across, down = _gradient_energy(_class_pixels(demo_root, "checkers"))
    assert 0.6 < across / down < 1.6


def _peak_frequency(pixels: np.ndarray) -> float:
    """Median over images of the radial frequency (cycles/px) of the grey spectrum's peak."""
    grey = pixels.mean(axis=3)
    spectrum = np.abs(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True))) ** 2
    freq = np.fft.fftfreq(grey.shape[1])
    radius = np.hypot(freq[:, None], freq[None, :])
    peaks = spectrum.reshape(len(grey), -1).argmax(axis=1)
    return float(np.median(radius.ravel()[peaks]))


def test_fine_diagonals_are_finer_than_stripes(demo_root: Path) -> None:
    fine = _peak_frequency(_class_pixels(demo_root, "fine_diagonals"))
    for coarse in ("warm_stripes", "cool_stripes", "checkers"):
        assert fine > 1.3 * _peak_frequency(_class_pixels(demo_root, coarse)), coarse


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 8}, "size 8"),
        ({"per_class": 0}, "per class 0"),
        ({"seed": -1}, "seed -1"),
    ],
)
def test_bad_options_are_data_errors(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_demo_dataset(tmp_path, **options)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match="cannot write the demo dataset") as err:
        make_demo_dataset(blocker, size=SIZE, per_class=PER_CLASS)
    assert "\n" not in str(err.value)
