"""The probe images a Recorder shows the model each epoch, from whatever the user has.

Three sources, one result (``ProbeSet``): a tensor (uint8 images, or float model input), a
list of image paths, or a dataset to pick from (round-robin over its classes). The store
keeps uint8 pictures (P, 3, S, S); the model sees ``inputs``. uint8 images become model
input through ``transform`` (default: the project's one normalisation); a float tensor *is*
the model input, and its stored picture is each image rescaled to 0-255.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.data import load_uint8, to_model_input
from generator.defaults import PROBE_COUNT
from generator.errors import OptionError, ProbeError

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ProbeSet:
    """Probes as stored (uint8 (P, 3, S, S), labels (P,) with -1 = unknown, sources) and
    as the model sees them (``inputs``, float (P, 3, S, S) on the CPU)."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]
    inputs: torch.Tensor
    class_names: list[str] | None = None  # what a dataset says its classes are

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])


def prepare_probes(
    probes: Any,
    *,
    labels: Sequence[int] | None = None,
    input_size: int | None = None,
    count: int = PROBE_COUNT,
    transform: Transform = to_model_input,
) -> ProbeSet:
    """A ``ProbeSet`` from a tensor/array, a list of image paths or a dataset."""
    if isinstance(probes, (torch.Tensor, np.ndarray)):
        return _from_tensor(torch.as_tensor(probes), labels, [], transform)
    if isinstance(probes, (list, tuple)) and probes and isinstance(probes[0], (str, Path)):
        return _from_paths(probes, labels, input_size, transform)
    is_text = isinstance(probes, (str, bytes, Path))
    if (
        not is_text
        and hasattr(probes, "__getitem__")
        and hasattr(probes, "__len__")
        and len(probes)
    ):
        return _from_dataset(probes, count, transform)
    raise ProbeError(
        f"probes= got {type(probes).__name__}: pass a (N, 3, S, S) tensor, a list of image "
        "paths or a dataset of (image, label) pairs"
    )


def with_sources(probes: ProbeSet, sources: Sequence[str]) -> ProbeSet:
    """``probes`` with where each came from (shown in the gallery), one text per probe."""
    if len(sources) != len(probes.labels):
        raise OptionError(
            f"probe_sources has {len(sources)} entries for {len(probes.labels)} probes; "
            f"pass {len(probes.labels)}"
        )
    return replace(probes, sources=[str(source) for source in sources])


def _from_tensor(
    tensor: torch.Tensor, labels: Sequence[int] | None, sources: list[str], transform: Transform
) -> ProbeSet:
    tensor = tensor.detach().cpu()
    shape = tuple(tensor.shape)
    if tensor.ndim != 4 or shape[0] < 1 or shape[1] != 3 or shape[2] != shape[3]:
        raise ProbeError(
            f"probes have shape {shape}; pass N >= 1 square RGB images as (N, 3, S, S)"
        )
    if tensor.dtype == torch.uint8:
        images, inputs = tensor.numpy(), transform(tensor)
    elif tensor.is_floating_point():
        images, inputs = _as_pictures(tensor), tensor
    else:
        raise ProbeError(
            f"probes have dtype {tensor.dtype}; pass uint8 images (0-255) or float model input"
        )
    n = shape[0]
    label_array = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    if label_array.shape != (n,):
        raise ProbeError(f"probe_labels has {label_array.size} labels for {n} probes; pass {n}")
    names = sources or [f"probe {i}" for i in range(n)]
    return ProbeSet(np.ascontiguousarray(images), label_array, names, inputs.float())


def _as_pictures(inputs: torch.Tensor) -> np.ndarray:
    """Float model input as uint8 pictures: each image's own range stretched to 0-255."""
    flat = inputs.float().reshape(inputs.shape[0], -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    scaled = (inputs.float() - low) / (high - low).clamp_min(1e-12)
    return (scaled * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _from_paths(
    paths: Sequence[str | Path],
    labels: Sequence[int] | None,
    input_size: int | None,
    transform: Transform,
) -> ProbeSet:
    if input_size is None:
        raise ProbeError("probe image paths need input_size= (the side in pixels the model sees)")
    images = torch.from_numpy(np.stack([load_uint8(Path(p), input_size) for p in paths]))
    return _from_tensor(images, labels, [str(p) for p in paths], transform)


def _from_dataset(dataset: Any, count: int, transform: Transform) -> ProbeSet:
    """``count`` items spread round-robin over the dataset's classes (``targets``), else the
    first ``count``; each item is (image (3, S, S) uint8 or float, label)."""
    indices = pick_indices(getattr(dataset, "targets", None), len(dataset), count)
    items = [dataset[i] for i in indices]
    if not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
        raise ProbeError("probes= dataset items must be (image, label) pairs")
    images = torch.stack([torch.as_tensor(item[0]) for item in items])
    labels = [int(item[1]) for item in items]
    samples = getattr(dataset, "samples", None)
    sources = [str(samples[i][0]) if samples else f"item {i}" for i in indices]
    found = _from_tensor(images, labels, sources, transform)
    classes = getattr(dataset, "classes", None)
    return ProbeSet(
        found.images, found.labels, found.sources, found.inputs, list(classes) if classes else None
    )


def pick_indices(targets: Sequence[int] | None, length: int, count: int) -> list[int]:
    """Up to ``count`` indices, one class after another so every class shows up."""
    if targets is None:
        return list(range(min(count, length)))
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    queues = [by_class[key] for key in sorted(by_class)]
    chosen: list[int] = []
    while len(chosen) < min(count, length):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def model_input_like(inputs: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Probe input on the model's device, in its floating dtype and memory format."""
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    if reference is None:
        return inputs
    moved = inputs.to(device=reference.device, dtype=reference.dtype)
    if reference.ndim == 4 and reference.is_contiguous(memory_format=torch.channels_last):
        moved = moved.contiguous(memory_format=torch.channels_last)
    return moved
