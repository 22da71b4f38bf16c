"""Hooks are removed on exit, capture what the module returned, and leave training alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from generator.record.hooks import capture_outputs, channel_statistics, untouched


def test_hooks_are_removed_even_when_the_forward_fails():
    conv = nn.Conv2d(3, 2, 3)
    with pytest.raises(RuntimeError), capture_outputs({"conv": conv}, dtype=torch.float32):
        conv(torch.zeros(1, 5, 8, 8))  # wrong channel count
    assert not conv._forward_hooks


def test_a_later_in_place_op_does_not_change_what_was_captured():
    """A conv followed by ReLU(inplace=True) and no BatchNorm: the stored conv output keeps
    its negative values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
    x = torch.randn(2, 3, 8, 8)
    expected = model[0](x)
    with torch.no_grad(), capture_outputs({"conv": model[0]}, dtype=torch.float32) as got:
        model(x)
    assert torch.allclose(got.activations["conv"], expected)
    assert (got.activations["conv"] < 0).any()
    assert torch.allclose(got.channel_stats["conv"]["min"], expected.amin(dim=(2, 3)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_bfloat16_and_channels_last_outputs_are_stored_contiguous_in_the_store_dtype(dtype):
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        capture_outputs({"c": conv}, dtype=dtype) as got,
    ):
        conv(x)
    stored = got.activations["c"]
    assert stored.dtype == dtype and stored.is_contiguous()
    assert got.channel_stats["c"]["mean"].dtype == torch.float32


def test_untouched_restores_modes_and_every_random_generator():
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3)).train()
    model[1].eval()  # a frozen norm stays frozen
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    with untouched(model):
        assert not model.training and not torch.is_grad_enabled()
        torch.rand(5), np.random.rand(5), random.random()
    assert (torch.rand(1), np.random.rand(), random.random()) == expected
    assert model.training and model[0].training and not model[1].training


def test_channel_statistics_values():
    """Per channel of each probe: min, max, mean, mean of |x| and max of |x|; a (P, N)
    output's unit is one feature."""
    x = torch.tensor([[[[-3.0, 1.0], [2.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])
    stats = {k: v.numpy() for k, v in channel_statistics(x).items()}
    np.testing.assert_allclose(stats["min"], [[-3, 5]])
    np.testing.assert_allclose(stats["max"], [[2, 5]])
    np.testing.assert_allclose(stats["mean"], [[0, 5]])
    np.testing.assert_allclose(stats["abs_mean"], [[1.5, 5]])
    np.testing.assert_allclose(stats["abs_max"], [[3, 5]])
    linear = channel_statistics(torch.tensor([[-2.0, 4.0]]))
    np.testing.assert_allclose(linear["abs_max"].numpy(), [[2, 4]])
