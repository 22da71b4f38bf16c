"""The recorder: hooks never leak, captured values equal a plain forward, stats are right."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generator.model import LOGITS_LAYER, NetlapseCNN
from generator.recorder import (
    capture_layers,
    channel_statistics,
    record_probes,
    relative_change,
    snapshot_weights,
)


@pytest.fixture
def model() -> NetlapseCNN:
    torch.manual_seed(0)
    return NetlapseCNN(3, 64, channels=(4, 8, 8, 8, 8, 8))


def test_hooks_are_removed_even_after_an_error(model: NetlapseCNN) -> None:
    modules = model.recorded_modules()
    with pytest.raises(RuntimeError), capture_layers(modules):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in modules.values())


def test_captured_layers_match_a_plain_forward(model: NetlapseCNN) -> None:
    x = torch.randn(2, 3, 64, 64)
    capture = record_probes(model, model.recorded_modules(), x, LOGITS_LAYER, "float32")
    model.eval()
    with torch.no_grad():
        expected = model.block1(x)
        logits = model(x)
    np.testing.assert_allclose(
        capture.activations["block1"], expected.numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(capture.probs, torch.softmax(logits, 1).numpy(), rtol=1e-5)
    assert capture.activations["hidden"].shape == (2, model.hidden_units)
    assert set(capture.activations) == {s.name for s in model.layer_specs()}


def test_record_restores_training_mode_and_casts(model: NetlapseCNN) -> None:
    model.train()
    capture = record_probes(
        model, model.recorded_modules(), torch.randn(1, 3, 64, 64), LOGITS_LAYER
    )
    assert model.training
    assert capture.activations["block2"].dtype == np.float16


def test_channel_statistics_values() -> None:
    x = torch.tensor([[[[-3.0, 1.0], [2.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])
    stats = {k: v.numpy() for k, v in channel_statistics(x).items()}
    np.testing.assert_allclose(stats["min"], [[-3, 5]])
    np.testing.assert_allclose(stats["max"], [[2, 5]])
    np.testing.assert_allclose(stats["mean"], [[0, 5]])
    np.testing.assert_allclose(stats["abs_mean"], [[1.5, 5]])
    np.testing.assert_allclose(stats["abs_max"], [[3, 5]])
    linear = channel_statistics(torch.tensor([[-2.0, 4.0]]))
    np.testing.assert_allclose(linear["abs_max"].numpy(), [[2, 4]])


def test_relative_change() -> None:
    before = {"w": torch.ones(4)}
    after = {"w": torch.full((4,), 1.5)}
    assert relative_change(after, before)["w"] == pytest.approx(0.5)
    assert math.isnan(relative_change(after, None)["w"])
    snap = snapshot_weights(after)
    after["w"].add_(1)
    assert snap["w"][0] == 1.5
