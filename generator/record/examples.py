"""Dataset examples: each conv channel's top-k images of a fixed pool, found every epoch.

Zeiler & Fergus (2014) and OpenAI Microscope show, for a channel, the images that excite
it most; here that is measured at every epoch, on the model as it is then. One eval-mode
``no_grad`` pass over the pool (``hooks.untouched``: training is left exactly as it was)
in batches, with hooks that reduce each conv layer's output at once to every image's
per-channel maximum and its (y, x). A running top-k per channel is merged with each batch,
so memory is one batch of activations plus (C, k) per layer, whatever the pool size.

Order is exact and repeatable: images are ranked by value, ties (a dead channel's zeros)
by the lower pool index, and the position is the first maximum in row-major order, so
the stored top-k equals a fresh pass of the same weights over the same pool.

``hooks.capture_outputs`` is not used: it keeps every layer's whole output and five
statistics, where this needs one max per map. The hooks here are removed on exit too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from generator.data import storable_text, to_model_input
from generator.errors import ExamplePoolError
from generator.record.hooks import untouched
from generator.record.layers import recorded_modules
from generator.record.probes import (
    ProbeError,
    Transform,
    model_input_like,
    pick_indices,
    prepare_probes,
)
from generator.store import LayerSpec, example_layers

log = logging.getLogger(__name__)

DEFAULT_POOL = 256
DEFAULT_TOP_K = 9
BATCH = 64  # pool images per forward pass: bounds the activations held at once


@dataclass(frozen=True)
class ExamplePool:
    """The pool as stored (``images`` (N, S, S, 3) uint8, ``labels`` (N,) with -1 =
    unknown, ``sources``) and as the model sees it (``inputs`` float (N, 3, S, S), CPU)."""

    images: np.ndarray
    labels: np.ndarray
    sources: tuple[str, ...]
    inputs: torch.Tensor
    top_k: int

    def stored(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], int]:
        """What the store keeps of it: images, labels, sources, top-k."""
        return self.images, self.labels, self.sources, self.top_k


@dataclass
class _Best:
    """A layer's running top-k: (C, m) values, pool indices and flat map positions."""

    value: torch.Tensor
    index: torch.Tensor
    where: torch.Tensor


def prepare_pool(
    pool: Any,
    *,
    input_size: int,
    top_k: int = DEFAULT_TOP_K,
    count: int = DEFAULT_POOL,
    transform: Transform = to_model_input,
    channels: int | None = None,
) -> ExamplePool:
    """An ``ExamplePool`` from a (N, C, S, S) tensor, image paths or a dataset (``count``
    images spread over its classes), checked against the probes' ``input_size`` and
    ``channels`` (None: not checked); a pool prepared already (``split_pool``) passes
    through."""
    if isinstance(pool, ExamplePool):
        return pool
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ExamplePoolError(f"example_top_k={top_k!r}: pass a positive number of images")
    try:
        found = prepare_probes(pool, input_size=input_size, count=count, transform=transform)
    except ProbeError as exc:
        raise ExamplePoolError(f"example_pool: {exc}".replace("probes", "pool images")) from None
    if channels is not None and found.images.shape[1] != channels:
        raise ExamplePoolError(
            f"example_pool: pool images have {found.images.shape[1]} channels but the probes "
            f"have {channels}; pass pool images like the probes"
        )
    if found.size != input_size:
        raise ExamplePoolError(
            f"example_pool images are {found.size} px but the probes are {input_size} px; "
            f"pass pool images of the probes' size"
        )
    images = np.ascontiguousarray(np.moveaxis(found.images, 1, -1))
    keep = min(top_k, len(images))
    return ExamplePool(images, found.labels, tuple(found.sources), found.inputs, keep)


def from_stored(
    images: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    *,
    top_k: int,
    transform: Transform = to_model_input,
) -> ExamplePool:
    """The pool from its stored (N, S, S, 3) uint8 images, for a resumed run not given it
    again (a pool given as float model input is then seen through ``transform``)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    inputs = transform(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).float()
    keep = min(top_k, len(images))
    return ExamplePool(images, np.asarray(labels, np.int64), tuple(sources), inputs, keep)


def top_examples(
    model: nn.Module,
    pool: ExamplePool,
    layers: Sequence[LayerSpec],
    *,
    batch: int = BATCH,
) -> dict[str, dict[str, np.ndarray]]:
    """Each conv layer's top-k pool images per channel, as the store takes them: layer ->
    ``index`` (C, k) int32, ``position`` (C, k, 2) int32 (y, x), ``value`` (C, k) float32."""
    modules = recorded_modules(model, example_layers(layers))
    best: dict[str, _Best] = {}
    widths: dict[str, int] = {}
    with untouched(model):
        for start in range(0, len(pool.images), batch):
            inputs = model_input_like(pool.inputs[start : start + batch], model)
            with _batch_maxima(modules) as maxima:
                model(inputs)
            for name, (value, where, width) in maxima.items():
                best[name] = _merge(best.get(name), value, where, start, pool.top_k)
                widths[name] = width
    missing = [name for name in modules if name not in best]
    if missing:
        raise ExamplePoolError(
            f"layer {missing[0]} gave no (N, C, H, W) output on the example pool; pass "
            "layers= without it or example_pool=None"
        )
    return {name: _stored(found, widths[name]) for name, found in best.items()}


@contextmanager
def _batch_maxima(
    modules: Mapping[str, nn.Module],
) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor, int]]]:
    """Yield a dict that fills, per module, with (B, C) maxima, their flat positions in
    the map and the map's width."""
    maxima: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    handles = []
    for name, module in modules.items():

        def hook(_module: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(tensor, torch.Tensor) and tensor.ndim == 4:
                flat = tensor.detach().flatten(2)  # (B, C, H*W); channels_last copies here
                flat_width = int(tensor.shape[-1])
                value, where = flat.max(dim=2)  # the first maximum of each map
                maxima[name] = (value.float().nan_to_num(nan=-torch.inf), where, flat_width)

        handles.append(module.register_forward_hook(hook))
    try:
        yield maxima
    finally:
        for handle in handles:
            handle.remove()


def _merge(
    best: _Best | None, value: torch.Tensor, where: torch.Tensor, start: int, k: int
) -> _Best:
    """The running top-k with one batch's (B, C) maxima; a stable sort keeps the lower
    pool index first among equal values (earlier images come first in the concatenation)."""
    index = torch.arange(start, start + len(value), device=value.device)
    value, where = value.T, where.T  # (C, B)
    index = index.expand_as(value)
    if best is not None:
        value = torch.cat([best.value, value], dim=1)
        index = torch.cat([best.index, index], dim=1)
        where = torch.cat([best.where, where], dim=1)
    order = torch.sort(value, dim=1, descending=True, stable=True).indices[:, :k]
    return _Best(value.gather(1, order), index.gather(1, order), where.gather(1, order))


def _stored(best: _Best, width: int) -> dict[str, np.ndarray]:
    where = best.where.cpu().numpy()
    return {
        "index": best.index.cpu().numpy().astype(np.int32),
        "position": np.stack([where // width, where % width], axis=-1).astype(np.int32),
        "value": best.value.cpu().numpy().astype(np.float32),
    }


def resumed_pool(
    given: ExamplePool | None, stored: Any, *, transform: Transform = to_model_input
) -> ExamplePool | None:
    """The pool a resumed run searches: the stored one (``stored`` has ``images``,
    ``labels``, ``sources``, ``top_k``; None when the store keeps no examples). A pool
    given again must be the stored one; a store without examples never gets them."""
    if stored is None:
        if given is not None:
            log.warning("the store keeps no dataset examples, so none are recorded on resume")
        return None
    if given is None:
        return from_stored(
            stored.images, stored.labels, stored.sources, top_k=stored.top_k, transform=transform
        )
    if given.top_k != stored.top_k or not np.array_equal(given.images, stored.images):
        raise ExamplePoolError(
            "example_pool differs from the pool the store was recorded with (images or "
            "top-k); pass the same pool, or none to use the stored one"
        )
    return given


def split_pool(
    dataset: Any,
    indices: Sequence[int] | np.ndarray,
    requested: int | None,
    *,
    top_k: int = DEFAULT_TOP_K,
) -> ExamplePool | None:
    """The pool ``train`` searches: ``requested`` images of the validation split
    (``indices`` into a dataset of (uint8 image, label) items), spread over its classes;
    by default ``DEFAULT_POOL`` or the whole split if smaller; None for 0 (off)."""
    if requested == 0:
        return None
    count = min(DEFAULT_POOL, len(indices)) if requested is None else requested
    if count > len(indices):
        raise ExamplePoolError(
            f"--example-pool {count}: the validation split has only {len(indices)} images; "
            f"pass --example-pool {len(indices)} or less (0 turns dataset examples off)"
        )
    targets = getattr(dataset, "targets", None)
    split_targets = None if targets is None else [targets[i] for i in indices]
    chosen = [int(indices[j]) for j in pick_indices(split_targets, len(indices), count)]
    items = [dataset[i] for i in chosen]
    pictures = torch.stack([torch.as_tensor(image) for image, _ in items])
    labels = np.array([int(label) for _, label in items], dtype=np.int64)
    samples, root = getattr(dataset, "samples", None), getattr(dataset, "root", "")
    sources = tuple(
        storable_text(os.path.relpath(samples[i][0], root) if samples else f"item {i}")
        for i in chosen
    )
    images = np.ascontiguousarray(pictures.permute(0, 2, 3, 1).numpy())
    keep = min(top_k, count)  # a split smaller than top_k keeps every image
    return ExamplePool(images, labels, sources, to_model_input(pictures).float(), keep)
