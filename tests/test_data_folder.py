"""ImageFolder loading: every colour mode, the square crop, skipped files and DataErrors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from generator.data import ImageFolderData, load_image_folder, load_uint8, to_model_input
from generator.data import folder as folder_module
from generator.data.images import to_rgb
from generator.errors import DataError

S = 16
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def _png_bytes(tmp: Path) -> bytes:
    path = tmp / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _jpeg_bytes(tmp: Path) -> bytes:
    path = tmp / "noise.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, quality=90)
    return path.read_bytes()


def _palette_image() -> Image.Image:
    image = Image.new("P", (24, 24), 0)
    image.putpalette([10, 20, 30] + [0] * 765)
    return image


# Uniform images in every mode, with the RGB colour each must come out as.
MODE_CASES = {
    "rgb.png": (lambda: Image.new("RGB", (24, 24), (200, 10, 30)), (200, 10, 30)),
    "gray.png": (lambda: Image.new("L", (24, 24), 100), (100, 100, 100)),
    "palette.png": (_palette_image, (10, 20, 30)),
    "opaque.png": (lambda: Image.new("RGBA", (24, 24), (255, 0, 0, 255)), RED),
    # fully transparent: the pixel's own colour must not leak; mid-grey shows instead
    "transparent.png": (lambda: Image.new("RGBA", (24, 24), (0, 255, 0, 0)), (128, 128, 128)),
    "gray_alpha.png": (lambda: Image.new("LA", (24, 24), (200, 255)), (200, 200, 200)),
    "cmyk.tif": (lambda: Image.new("CMYK", (24, 24), (0, 255, 255, 0)), RED),
    # 16-bit 32896 = 128 * 257: scaled it is 128; clipped, as PIL's convert does, 255
    "gray16.png": (lambda: Image.fromarray(np.full((24, 24), 32896, np.uint16)), (128,) * 3),
    "tiny.png": (lambda: Image.new("RGB", (4, 4), (7, 70, 170)), (7, 70, 170)),  # upscaled
}


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """alpha/: one image per mode plus four broken files; beta/: two crop test images."""
    root = tmp_path / "data"
    alpha, beta, hidden = root / "alpha", root / "beta", root / ".hidden_class"
    for folder in (alpha, beta, hidden):
        folder.mkdir(parents=True)
    for name, (make, _) in MODE_CASES.items():
        make().save(alpha / name)
    assert Image.open(alpha / "gray16.png").mode == "I;16"
    png, jpeg = _png_bytes(tmp_path), _jpeg_bytes(tmp_path)
    (alpha / "truncated.png").write_bytes(png[: len(png) // 2])
    (alpha / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (alpha / "empty.jpg").write_bytes(b"")
    (alpha / "notes.txt").write_text("not an image\n")
    (alpha / ".DS_Store").write_bytes(b"\0\1hidden")  # hidden: ignored, not counted
    split = np.zeros((32, 16, 3), np.uint8)  # 16 wide, 32 tall: top red, bottom blue
    split[:16], split[16:] = RED, BLUE
    Image.fromarray(split).save(beta / "split.png")
    wide = np.zeros((16, 48, 3), np.uint8)  # thirds: green | white | black
    wide[:, :16], wide[:, 16:32] = GREEN, WHITE
    Image.fromarray(wide).save(beta / "wide.png")
    Image.new("RGB", (8, 8)).save(hidden / "ignored.png")
    (root / "readme.txt").write_text("top-level files are not classes\n")
    return root


def _item(dataset: ImageFolderData, name: str) -> tuple[torch.Tensor, int]:
    index = [Path(path).name for path, _ in dataset.samples].index(name)
    return dataset[index]


def test_classes_samples_and_skipped_count(
    image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="generator.data.folder"):
        dataset = load_image_folder(image_root, S)
    assert dataset.classes == ["alpha", "beta"]
    assert dataset.root == image_root and dataset.size == S
    names = sorted(Path(path).name for path, _ in dataset.samples)
    assert names == sorted([*MODE_CASES, "split.png", "wide.png"])
    assert len(dataset) == len(MODE_CASES) + 2
    assert dataset.skipped == 4  # truncated png, truncated jpg, empty file, txt
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 4 of" in warnings[0].getMessage()


@pytest.mark.parametrize("name", sorted(MODE_CASES))
def test_every_mode_becomes_the_expected_rgb(image_root: Path, name: str) -> None:
    image, label = _item(load_image_folder(image_root, S), name)
    assert image.dtype == torch.uint8 and image.shape == (3, S, S)
    assert label == 0 and isinstance(label, int)
    expected = torch.tensor(MODE_CASES[name][1], dtype=torch.int16).view(3, 1, 1)
    assert (image.to(torch.int16) - expected).abs().max() <= 1


def test_short_side_crop_keeps_the_centre_in_row_major_layout(image_root: Path) -> None:
    dataset = load_image_folder(image_root, S)
    split, label = _item(dataset, "split.png")  # rows 8..23 of the 32-row image
    assert label == 1
    assert split[:, :8].eq(torch.tensor(RED, dtype=torch.uint8).view(3, 1, 1)).all()
    assert split[:, 8:].eq(torch.tensor(BLUE, dtype=torch.uint8).view(3, 1, 1)).all()
    wide, _ = _item(dataset, "wide.png")  # the middle third only
    assert wide.eq(255).all()


def test_large_images_are_resized_on_the_short_side(tmp_path: Path) -> None:
    image = np.zeros((40, 80, 3), np.uint8)  # 80 wide: halves resize to 16 px each of 32
    image[:, :40] = RED
    image[:, 40:] = BLUE
    Image.fromarray(image).save(tmp_path / "halves.png")
    out = load_uint8(tmp_path / "halves.png", S)
    assert out.shape == (3, S, S) and out.dtype == np.uint8
    assert tuple(out[:, 5, 0]) == RED and tuple(out[:, 5, S - 1]) == BLUE
    assert tuple(out[:, 5, 6]) == RED and tuple(out[:, 5, 9]) == BLUE


def test_batches_collate_to_uint8_and_normalise(image_root: Path) -> None:
    images, labels = next(iter(DataLoader(load_image_folder(image_root, S), batch_size=4)))
    assert images.shape == (4, 3, S, S) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    model_input = to_model_input(images)
    assert model_input.dtype == torch.float32
    assert model_input.min() >= -1.0 and model_input.max() <= 1.0


def test_to_model_input_maps_0_255_to_minus_one_one() -> None:
    out = to_model_input(torch.tensor([0, 255, 51], dtype=torch.uint8))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([-1.0, 1.0, (51 / 255 - 0.5) / 0.5]))
    with pytest.raises(TypeError):
        to_model_input(torch.zeros(3))


def test_wide_modes_are_scaled_not_clipped() -> None:
    int32 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32))
    assert int32.mode == "I"
    assert list(np.array(to_rgb(int32))[0, :, 0]) == [0, 128, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert floats.mode == "F"
    assert list(np.array(to_rgb(floats))[0, :, 0]) == [0, 128, 255]


def test_symlink_loops_neither_hang_nor_duplicate(image_root: Path) -> None:
    os.symlink(image_root / "alpha", image_root / "alpha" / "loop")
    os.symlink(image_root, image_root / "beta" / "up")
    dataset = load_image_folder(image_root, S)
    assert len(dataset) == len(MODE_CASES) + 2


def test_symlinks_inside_the_dataset_are_not_followed_and_counted_once(
    image_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 8.8: ``ln -s . data/zz_parent`` and ``ln -s ../data data/zy_loop`` made two
    classes four, with the same images under contradictory labels."""
    (image_root / "zz_parent").symlink_to(".")
    (image_root / "zy_loop").symlink_to(Path("..") / image_root.name)
    (image_root / "beta" / "linked.png").symlink_to(image_root / "beta" / "split.png")
    with caplog.at_level(logging.WARNING, logger="generator.data.folder"):
        dataset = load_image_folder(image_root, S)
    assert dataset.classes == ["alpha", "beta"]
    assert len(dataset) == len(MODE_CASES) + 2 and dataset.links_skipped == 3
    linked = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(linked) == 1 and "skipped 3 symbolic links" in linked[0]


def test_the_dataset_folder_itself_may_be_a_link(image_root: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(image_root)
    dataset = load_image_folder(tmp_path / "link", S)
    assert dataset.classes == ["alpha", "beta"] and dataset.links_skipped == 0


def test_special_files_in_a_class_folder_are_skipped_without_opening(image_root: Path) -> None:
    os.mkfifo(image_root / "beta" / "pipe.png")  # opening it would block the scan for ever
    dataset = load_image_folder(image_root, S)
    assert len(dataset) == len(MODE_CASES) + 2 and dataset.skipped == 5


def test_class_names_that_are_not_utf8_are_stored_escaped(image_root: Path) -> None:
    """Issue 8.7: a folder named with the bytes ``caf\\xe9`` (Latin-1), read as bytes."""
    os.rename(os.fsencode(image_root / "beta"), os.fsencode(image_root) + b"/caf\xe9")
    dataset = load_image_folder(image_root, S)
    assert dataset.classes == ["alpha", "caf\udce9"]  # the real name, to open its files
    assert dataset.class_names == ["alpha", "caf\\xe9"]  # what a store keeps
    for name in dataset.class_names:
        name.encode("utf-8", "strict")
    assert len(dataset) == len(MODE_CASES) + 2


def test_images_over_the_pixel_limit_are_skipped(
    image_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("RGB", (64, 64)).save(image_root / "beta" / "huge.png")
    monkeypatch.setattr(folder_module, "MAX_PIXELS", 32 * 32)
    dataset = load_image_folder(image_root, S)
    assert "huge.png" not in [Path(path).name for path, _ in dataset.samples]
    assert dataset.skipped == 5
    assert "megapixel limit" in (
        folder_module.unusable_reason(image_root / "beta" / "huge.png") or ""
    )


def test_pil_decompression_bomb_error_becomes_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > 2x: PIL raises
    reason = folder_module.unusable_reason(tmp_path / "bomb.png")
    assert reason is not None and "limit" in reason


def test_a_file_deleted_after_loading_is_a_one_line_data_error(image_root: Path) -> None:
    dataset = load_image_folder(image_root, S)
    Path(dataset.samples[0][0]).unlink()
    with pytest.raises(DataError, match=Path(dataset.samples[0][0]).name) as err:
        dataset[0]
    assert "\n" not in str(err.value)


def test_probe_files_load_like_dataset_images(image_root: Path, tmp_path: Path) -> None:
    dataset = load_image_folder(image_root, S)
    probe = dataset.load_uint8(image_root / "beta" / "split.png")
    assert np.array_equal(probe, _item(dataset, "split.png")[0].numpy())
    with pytest.raises(DataError, match="does not exist"):
        dataset.load_uint8(tmp_path / "missing.png")
    with pytest.raises(DataError, match="notes.txt"):
        dataset.load_uint8(image_root / "alpha" / "notes.txt")


def _one_class(root: Path) -> Path:
    (root / "only").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "only" / "a.png")
    return root


def _empty_class(root: Path) -> Path:
    for name in ("good", "bad"):
        (root / name).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "good" / "a.png")
    (root / "bad" / "notes.txt").write_text("text")
    return root


def _file(root: Path) -> Path:
    root.write_text("a file")
    return root


def _no_classes(root: Path) -> Path:
    root.mkdir()
    (root / "stray.png").write_bytes(b"")
    (root / ".git").mkdir()
    return root


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "does not exist"),
        (_file, "is a file"),
        (_no_classes, "has no class folders"),
        (_one_class, "only one class folder"),
        (_empty_class, "class folder .*bad has no usable image"),
    ],
)
def test_unusable_folders_are_one_line_data_errors(tmp_path: Path, make, message: str) -> None:
    root = make(tmp_path / "data")
    with pytest.raises(DataError, match=message) as err:
        load_image_folder(root, S)
    assert "\n" not in str(err.value) and str(tmp_path / "data") in str(err.value)
