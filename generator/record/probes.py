"""The probe images a Recorder shows the model each epoch, from whatever the user has.

Three sources, one result (``ProbeSet``): a tensor (uint8 images, or float model input), a
list of image paths, or a dataset to pick from (round-robin over its classes). Any channel
count C and any height and width: the store keeps uint8 pictures (P, C, H, W) as given; the
model sees ``inputs``. uint8 images become model input through ``transform`` (default: the
project's one normalisation); a float tensor *is* the model input, and its stored picture
is each image rescaled to 0-255. A ``display`` mapping turns C channels other than 1 (grey)
and 3 (RGB) into the RGB pictures the gallery shows; it runs here, at record time.
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
Display = Callable[[np.ndarray], np.ndarray]  # uint8 (P, C, H, W) -> uint8 (P, 3, H, W)


@dataclass(frozen=True)
class ProbeSet:
    """Probes as stored (uint8 (P, C, H, W), labels (P,) with -1 = unknown, sources), as
    the model sees them (``inputs``, float (P, C, H, W) on the CPU) and, from a ``display``
    mapping, as shown (uint8 (P, 3, H, W); None: grey/RGB as they are, else the first
    three channels)."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]
    inputs: torch.Tensor
    class_names: list[str] | None = None  # what a dataset says its classes are
    display: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one probe."""
        channels, height, width = self.images.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def size(self) -> int:
        """The store's ``input_size``: the side of square probes, else the larger side."""
        return max(self.shape[1:])


def prepare_probes(
    probes: Any,
    *,
    labels: Sequence[int] | None = None,
    input_size: int | tuple[int, ...] | None = None,
    count: int = PROBE_COUNT,
    transform: Transform = to_model_input,
) -> ProbeSet:
    """A ``ProbeSet`` from a tensor/array, a list of image paths (loaded at ``input_size``:
    a side, (H, W), or (1, H, W) for grey) or a dataset."""
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
        f"probes= got {type(probes).__name__}: pass a (N, C, H, W) tensor, a list of image "
        "paths or a dataset of (image, label) pairs"
    )


def with_display(probes: ProbeSet, display: Display | None) -> ProbeSet:
    """``probes`` with the RGB pictures ``display`` maps them to: only for channel counts
    other than grey (1) and RGB (3), which show as they are. Mapped here, at record time,
    because the gallery is built in another process that has no callable."""
    if display is None or probes.shape[0] in (1, 3):
        return probes
    shown = np.asarray(display(probes.images.copy()))
    wanted = (len(probes.labels), 3, *probes.shape[1:])
    if shown.dtype != np.uint8 or shown.shape != wanted:
        raise ProbeError(
            f"display= returned {shown.dtype} {shown.shape}; it must map the uint8 probes "
            f"{probes.images.shape} to uint8 RGB pictures {wanted}"
        )
    return replace(probes, display=np.ascontiguousarray(shown))


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
    if tensor.ndim != 4 or min(shape) < 1:
        raise ProbeError(
            f"probes have shape {shape}; pass N >= 1 images as (N, C, H, W) "
            "(C channels, e.g. 1 grey or 3 RGB)"
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
    label_array = np.full(n, -1, np.int64) if labels is None else _labels(labels)
    if label_array.shape != (n,):
        raise ProbeError(f"probe_labels has {label_array.size} labels for {n} probes; pass {n}")
    names = sources or [f"probe {i}" for i in range(n)]
    return ProbeSet(np.ascontiguousarray(images), label_array, names, inputs.float())


def _labels(labels: Any) -> np.ndarray:
    """``probe_labels`` as int64, refusing what is not whole numbers (0.5, 2**70)."""
    try:
        given = np.asarray(labels)
        if given.dtype.kind not in "iub":
            raise TypeError
        return given.astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(
            f"probe_labels={labels!r:.60}: not class indices; pass whole numbers (-1 = unknown)"
        ) from None


def _as_pictures(inputs: torch.Tensor) -> np.ndarray:
    """Float model input as uint8 pictures: each image's own range stretched to 0-255."""
    flat = inputs.float().reshape(inputs.shape[0], -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    scaled = (inputs.float() - low) / (high - low).clamp_min(1e-12)
    return (scaled * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _from_paths(
    paths: Sequence[str | Path],
    labels: Sequence[int] | None,
    input_size: int | tuple[int, ...] | None,
    transform: Transform,
) -> ProbeSet:
    if input_size is None:
        raise ProbeError(
            "probe image paths need input_size= (the side in pixels the model sees, "
            "(height, width), or (1, height, width) for grey)"
        )
    images = torch.from_numpy(np.stack([load_uint8(Path(p), input_size) for p in paths]))
    return _from_tensor(images, labels, [str(p) for p in paths], transform)


def _from_dataset(dataset: Any, count: int, transform: Transform) -> ProbeSet:
    """``count`` items spread round-robin over the dataset's classes (``targets``), else the
    first ``count``; each item is (image (C, H, W) uint8 or float, label)."""
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
