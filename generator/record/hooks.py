"""Forward hooks that capture chosen modules' outputs, and the state a record must not touch.

Hooks only exist inside ``capture_outputs`` (a context manager): they are removed on exit,
whatever happens, so they can never run during a training step. Each hook turns its output
into the stored form at once (the store dtype, contiguous, plus per-channel statistics in
float32), first laid out as the stored (C, H, W) map where its layer's is not channels-first
(``as_map``: tokens on the patch grid, channels-last permuted): a later in-place op of the
model (``ReLU(inplace=True)`` after a conv without BatchNorm, ``out += identity``) would
otherwise change what a kept reference shows.

``untouched`` runs a record without changing training: eval mode under ``no_grad``, every
module's own train/eval flag restored, and the torch (CPU and CUDA), numpy and ``random``
generators put back, so a run with the recorder ends with the same weights as one without.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from generator.store import STAT_FIELDS, LayerSpec


@dataclass
class Captured:
    """What the hooks kept: per layer, (P, ...) in the store dtype and (P, C) statistics."""

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    channel_stats: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def channel_statistics(output: torch.Tensor) -> dict[str, torch.Tensor]:
    """(P, C, H, W) or (P, N) -> each of ``STAT_FIELDS`` as float32 (P, C) (a unit = a channel).

    Four reductions and no temporaries: abs_max follows from min and max (separate amin
    and amax measured 3x faster than ``torch.aminmax`` on CPU).
    """
    flat = output.float().reshape(output.shape[0], output.shape[1], -1)
    low, high = flat.amin(dim=2), flat.amax(dim=2)
    stats = {
        "min": low,
        "max": high,
        "mean": flat.mean(dim=2),
        "abs_mean": torch.linalg.vector_norm(flat, ord=1, dim=2) / flat.shape[2],
        "abs_max": torch.maximum(-low, high),
    }
    return {name: stats[name] for name in STAT_FIELDS}


def stored_form(output: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A private, contiguous copy in the store dtype (bfloat16 and channels_last included)."""
    return output.detach().to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)


def as_map(output: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """A layer's output (N, ...) as its stored (N, C, H, W) map, a view where it can be:
    channels-last (N, H, W, C) permuted; tokens (N, T, D) with the class and register
    tokens (the first ``extra_tokens``) left out and the rest laid on the (H, W) grid."""
    if spec.layout == "channels_last":
        return output.permute(0, 3, 1, 2)
    if spec.layout != "tokens":
        return output
    rows, columns = spec.shape[1], spec.shape[2]
    grid = output[:, spec.extra_tokens : spec.extra_tokens + rows * columns]
    return grid.reshape(output.shape[0], rows, columns, output.shape[2]).permute(0, 3, 1, 2)


@contextmanager
def capture_outputs(
    modules: Mapping[str, nn.Module],
    *,
    dtype: torch.dtype,
    calls: Mapping[str, int] | None = None,
    root: nn.Module | None = None,
    specs: Mapping[str, LayerSpec] | None = None,
) -> Iterator[Captured]:
    """Yield a ``Captured`` that fills with each named module's output during forward passes.

    A module's output must be one tensor (N, C, ...); the hooks are removed on exit. With
    ``root`` (the model), a name may be a later call of its module: ``calls`` gives which
    (default 1), counted afresh at the start of every forward of ``root``. Without it,
    each name keeps its module's latest output. A name with a spec in ``specs`` is kept as
    that layer's stored map (``as_map``), its statistics per channel of the map.
    """
    captured = Captured()
    wanted: dict[int, dict[int, str]] = {}  # id(module) -> call -> name
    for name, module in modules.items():
        call = (calls or {}).get(name, 1) if root is not None else 0
        wanted.setdefault(id(module), {})[call] = name
    counts: dict[int, int] = {}

    def hook(module: nn.Module, _inputs: object, output: object) -> None:
        counts[id(module)] = counts.get(id(module), 0) + 1
        name = wanted[id(module)].get(counts[id(module)] if root is not None else 0)
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        if name is None or not isinstance(tensor, torch.Tensor):
            return
        if specs and name in specs:
            tensor = as_map(tensor, specs[name])
        captured.activations[name] = stored_form(tensor, dtype)
        captured.channel_stats[name] = channel_statistics(tensor.detach())

    hooked = {id(module): module for module in modules.values()}
    handles = [module.register_forward_hook(hook) for module in hooked.values()]
    if root is not None:
        handles.append(root.register_forward_pre_hook(lambda _m, _a: counts.clear()))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the body in eval mode under ``no_grad``; afterwards the model's modes and every
    global random generator are exactly as before (see the module docstring)."""
    modes = [(module, module.training) for module in model.modules()]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            yield
    finally:
        for module, training in modes:
            module.training = training
        random.setstate(python_state)
        np.random.set_state(numpy_state)
