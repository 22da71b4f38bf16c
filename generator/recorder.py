"""The recorder: forward hooks that capture every recorded layer for the probe images.

Hooks live only inside ``capture_layers`` (a context manager), so they can never leak into
training steps. Capturing is one eval-mode forward pass over the probes; per-channel
statistics are computed on the captured tensors in torch, before the float16 cast, so
renderers can fix colour scales without reading the activations again. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from generator.record.hooks import channel_statistics


@dataclass
class ProbeCapture:
    """One forward pass over the probes: activations (P, ...) and stats (P, C) per layer."""

    activations: dict[str, np.ndarray]
    channel_stats: dict[str, dict[str, np.ndarray]]
    probs: np.ndarray


@contextmanager
def capture_layers(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that fills with each module's output (detached) during forward passes."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():

        def hook(
            _module: nn.Module, _inputs: object, output: torch.Tensor, name: str = name
        ) -> None:
            outputs[name] = output.detach()

        handles.append(module.register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def record_probes(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    inputs: torch.Tensor,
    logits_layer: str,
    dtype: str = "float16",
) -> ProbeCapture:
    """Run the probes once in eval mode and return every recorded layer as numpy."""
    was_training = model.training
    model.eval()
    try:
        with capture_layers(modules) as outputs:
            logits = model(inputs)
    finally:
        model.train(was_training)
    activations = {
        name: out.to(getattr(torch, dtype)).cpu().numpy() for name, out in outputs.items()
    }
    stats = {
        name: {k: v.cpu().numpy() for k, v in channel_statistics(out).items()}
        for name, out in outputs.items()
    }
    if logits_layer in outputs:
        logits = outputs[logits_layer]
    probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return ProbeCapture(activations, stats, probs)


def relative_change(
    current: Mapping[str, torch.Tensor], previous: Mapping[str, torch.Tensor] | None
) -> dict[str, float]:
    """||W - W_prev|| / ||W_prev|| per layer; NaN for every layer when there is no previous."""
    if previous is None:
        return {name: float("nan") for name in current}
    change = {}
    for name, weight in current.items():
        before = previous[name].float()
        denominator = before.norm().item()
        difference = (weight.detach().float().cpu() - before.cpu()).norm().item()
        change[name] = difference / denominator if denominator > 0 else float("nan")
    return change


def snapshot_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU float32 copies of the weights, to compare against after the next epoch."""
    return {name: weight.detach().float().cpu().clone() for name, weight in weights.items()}
