"""Probes from a tensor, image paths or a dataset; bad probes are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from generator.data import to_model_input
from generator.record.probes import ProbeError, pick_indices, prepare_probes


def test_uint8_probes_are_stored_as_given_and_normalised_for_the_model():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    probes = prepare_probes(images)
    assert np.array_equal(probes.images, images.numpy())
    assert torch.equal(probes.inputs, to_model_input(images))
    assert probes.labels.tolist() == [-1, -1] and probes.size == 16


def test_float_probes_are_the_model_input_and_stored_rescaled():
    inputs = torch.randn(2, 3, 8, 8)
    probes = prepare_probes(inputs, labels=[1, 0])
    assert torch.equal(probes.inputs, inputs)
    assert probes.images.dtype == np.uint8
    assert probes.images.reshape(2, -1).min(1).tolist() == [0, 0]
    assert probes.images.reshape(2, -1).max(1).tolist() == [255, 255]
    assert probes.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("probes", "message"),
    [
        (torch.zeros(0, 1, 8, 8, dtype=torch.uint8), r"shape \(0, 1, 8, 8\).*\(N, C, H, W\)"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), r"shape \(3, 8, 8\)"),
        (
            torch.zeros(2, 3, 8, 0, dtype=torch.uint8),
            r"shape \(2, 3, 8, 0\)",
        ),  # grey, non-square: fine
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "dtype torch.int32; pass uint8"),
        ("pictures/", "probes= got str"),
    ],
)
def test_bad_probes_are_one_line(probes, message):
    with pytest.raises(ProbeError, match=message) as error:
        prepare_probes(probes)
    assert "\n" not in str(error.value)


def test_labels_must_match_the_probes():
    with pytest.raises(ProbeError, match="3 labels for 2 probes"):
        prepare_probes(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), labels=[0, 1, 2])


def test_image_paths_need_an_input_size_and_load_square(tmp_path):
    path = tmp_path / "cat.png"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path)
    with pytest.raises(ProbeError, match="input_size="):
        prepare_probes([path])
    probes = prepare_probes([path, str(path)], input_size=16)
    assert probes.images.shape == (2, 3, 16, 16)
    assert probes.images[0, 0].mean() > 150 and probes.sources == [str(path)] * 2


class TinyDataset:
    classes = ["a", "b"]
    targets = [0, 0, 0, 1, 1]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return torch.full((3, 8, 8), index, dtype=torch.uint8), self.targets[index]


def test_probes_from_a_dataset_cover_every_class():
    probes = prepare_probes(TinyDataset(), count=3)
    assert probes.labels.tolist() == [0, 1, 0]
    assert probes.images[:, 0, 0, 0].tolist() == [0, 3, 1]
    assert probes.class_names == ["a", "b"]


def test_pick_indices_without_targets_takes_the_first():
    assert pick_indices(None, 10, 3) == [0, 1, 2]
    assert pick_indices([1, 1, 0], 3, 8) == [2, 0, 1]
