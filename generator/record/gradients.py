"""Gradients and distributions per layer and epoch, gathered by hooks while the user trains.

Nothing here runs a backward pass or touches a gradient: a hook on each parameter of a
recorded layer (``Tensor.register_hook``) reads the gradient each backward pass computes,
before it is added into ``.grad``, and returns nothing (a layer's pass is handled once all
its parameters' gradients are in), so training sees exactly the gradients it would without
it; no random number is drawn. The hooks sit on the parameters themselves, so a compiled or
(Distributed)DataParallel model is measured through its inner module's parameters (in DDP
on the recording rank, the local gradient before the ranks average it).

What is stored (docs/store.md), for a layer's parameters (its conv's or linear's weight
and bias, weight_norm's originals, or every parameter of a block) over one epoch:

- a *pass* is one backward pass that reaches them (gradient accumulation counts each
  pass); ``passes`` = how many. Measuring a pass reads every parameter and gradient a few
  times (on a CPU resnet18 at 32 px, 80 ms beside a 105 ms step), so a sample of the
  passes is measured (``sampling.PassSampler``: every k-th, or within a share of the
  overhead budget while the budget has credit; all the monitor's time, its hooks' too, is
  charged to the budget) and ``sampled`` says how many; the figures below are over the
  sampled passes. A pass not measured costs a hook call per parameter (its gradient is
  not kept).
- its gradient norm ``g_t`` is the L2 norm over all of them of the gradient the pass
  computed. ``norm`` = sqrt(mean_t g_t^2), the root-mean-square over the sampled passes,
  ``norm_max`` = max_t g_t; NaN and 0 with no sampled pass (epoch 0).
- ``update_ratio`` = the mean over the sampled passes' optimizer steps of
  ||W_after - W_before|| / ||W_before||: the weights are copied at a sampled pass and
  compared at the next pass (or the record), so the step between them is seen once; an
  interval in which they did not change (gradient accumulation) is no step. About 1e-3 is
  the usual healthy value.
- histograms of the weights at the record (what ``weight_change`` follows: the kernel or
  matrix as the forward uses it, or a block's parameters), of the activations of the probe
  batch (the capture's) on the write thread (the weights' by torch at the record, from
  the capture's copies), and of the gradients (each sampled pass, then averaged over them,
  so each sums to the element count like the others). Edges are fixed once per layer and
  kind, so epochs compare: the first values seen (epoch 0's weights and activations, the
  first pass's gradients), their range widened by half of itself on each side, in ``bins``
  bins, plus an underflow and an overflow bin.

The monitor's own work runs under ``no_grad`` on the parameters' device, without a device
sync after the first pass (the first pass's gradient range is read once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from generator.record.capture import followed_parameters
from generator.record.layers import module_path
from generator.record.sampling import PassSampler
from generator.store import (
    GRADIENT_FIELDS,
    HISTOGRAM_KINDS,
    LayerSpec,
    gradient_layers,
    gradient_path,
    histogram_layers,
    histogram_path,
)

HISTC_EXACT = 1 << 24  # values per histc call: its float32 counts are exact up to 2^24
Counter = Callable[[Any, np.ndarray], np.ndarray]  # values, edges -> (B + 2,) counts
Edges = tuple[float, float]  # the first and last edge; the bins are equal between them


def fixed_edges(low: float, high: float, bins: int) -> np.ndarray:
    """(bins + 1,) float32 edges from the range [low, high] widened by half of itself on
    each side (a constant widened by half of its size, or by 1 for zeros)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = -1.0, 1.0
    spread = (high - low) / 2 or (abs(high) / 2 or 1.0)
    return np.linspace(low - spread, high + spread, bins + 1).astype(np.float32)


def histogram(values: Iterable[torch.Tensor], edges: np.ndarray) -> torch.Tensor:
    """(B + 2,) float64 counts of every element of ``values`` in the bins [edges[i],
    edges[i + 1]) of ``edges`` (B + 1, equal steps), the first bin everything below them,
    the last everything from the last edge up; NaN is not counted. One ``histc`` over the
    range one bin wider on each side, of the values clamped into it (two passes, no device
    sync; a value within rounding of an edge may land in the bin beside it); with
    deterministic algorithms asked for on CUDA (``histc`` has none there), by sorting."""
    bins = len(edges) + 1
    width = (float(edges[-1]) - float(edges[0])) / (bins - 2)
    low, high = float(edges[0]) - width, float(edges[-1]) + width
    total = torch.zeros(bins, dtype=torch.float64)
    for value in values:
        flat = value.detach().reshape(-1)
        if flat.is_cuda and torch.are_deterministic_algorithms_enabled():
            ordered = flat.float()[~flat.isnan()].sort().values
            bounds = torch.as_tensor(edges, device=flat.device, dtype=ordered.dtype)
            places = torch.searchsorted(ordered, bounds)
            ends = places.new_tensor([0]), places.new_tensor([ordered.numel()])
            counts = torch.diff(torch.cat([ends[0], places, ends[1]])).double()
        else:
            counts = torch.zeros(bins, dtype=torch.float64, device=flat.device)
            for part in flat.split(HISTC_EXACT):  # histc counts in float32 per thread
                inside = part.float().clamp(low, high)  # a new tensor: the caller's is untouched
                counts += torch.histc(inside, bins=bins, min=low, max=high).double()
        total = total.to(counts.device) + counts
    return total


class Deferred(Mapping[str, np.ndarray]):
    """Arrays by store path, some of them computed when first read: the record is handed
    to the write thread with the histograms still to make (their inputs are copies)."""

    def __init__(
        self, ready: dict[str, np.ndarray], later: Callable[[], dict[str, np.ndarray]]
    ) -> None:
        self._values = dict(ready)
        self._later: Callable[[], dict[str, np.ndarray]] | None = later

    def _complete(self) -> dict[str, np.ndarray]:
        later, self._later = self._later, None
        if later is not None:
            self._values.update(later())
        return self._values

    def __getitem__(self, key: str) -> np.ndarray:
        return self._complete()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._complete())

    def __len__(self) -> int:
        return len(self._complete())


@dataclass
class _Layer:
    """One layer's parameters and what its hook has gathered this epoch (device tensors)."""

    params: list[nn.Parameter]
    sum_squares: torch.Tensor
    peak: torch.Tensor
    ratios: torch.Tensor  # summed update/weight ratios
    steps: torch.Tensor  # how many of them (the intervals in which the weights changed)
    counts: torch.Tensor  # summed gradient histograms
    passes: int = 0  # this epoch's
    sampled: int = 0  # this epoch's passes measured
    # the weights at the last sampled pass, and their squared norm
    before: tuple[list[torch.Tensor], torch.Tensor] | None = None
    edges: np.ndarray | None = None  # the gradient histogram's, fixed at the first pass
    handles: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)
    pending: dict[int, torch.Tensor | None] = field(default_factory=dict)  # this pass's
    measuring: bool = False  # whether this pass is measured (its gradients kept)


def _zeros(device: torch.device, size: int = 1) -> torch.Tensor:
    return torch.zeros(size, dtype=torch.float64, device=device)


def _squared_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The squared L2 norm of all of ``tensors`` together, as a float64 0-d tensor: each
    norm in float32 or the tensors' own wider precision (a float64 copy of a resnet18's
    gradients cost more than its backward pass), summed in float64 in the order given."""
    total = torch.zeros((), dtype=torch.float64, device=tensors[0].device if tensors else None)
    for tensor in tensors:
        precision = torch.promote_types(tensor.dtype, torch.float32)  # float16 overflows
        total += torch.linalg.vector_norm(tensor, dtype=precision).double() ** 2
    return total


class GradientMonitor:
    """Gathers gradient norms, update/weight ratios and histograms of ``model``'s recorded
    ``layers`` between two records (``take``); ``close`` removes its hooks."""

    def __init__(
        self, model: nn.Module, layers: Sequence[LayerSpec], *, bins: int, sampler: PassSampler
    ) -> None:
        self.bins, self.layers, self.paused, self.sampler = bins, list(layers), False, sampler
        self._followed = followed_parameters(model, layers)  # the weights histogrammed
        self._layers: dict[str, _Layer] = {}
        for spec in gradient_layers(layers):
            owner = model.get_submodule(spec.weights or module_path(spec))
            params = [p for p in owner.parameters() if p.requires_grad]
            device = params[0].device if params else torch.device("cpu")
            state = _Layer(params, _zeros(device), _zeros(device), _zeros(device), _zeros(device),
                           _zeros(device, bins + 2))  # fmt: skip
            for k, param in enumerate(params):
                hook = partial(self._grad, state, k)
                state.handles.append(param.register_hook(hook))
            self._layers[spec.name] = state
        # kind -> layer -> edges, fixed at the first record (weights, activations)
        self.edges: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in HISTOGRAM_KINDS}

    def close(self) -> None:
        """Remove every hook (idempotent): training goes on without the monitor."""
        for state in self._layers.values():
            for handle in state.handles:
                handle.remove()
            state.handles.clear()

    @contextmanager
    def pause(self) -> Iterator[None]:
        """No pass counts inside (the record's own backward passes, feature visualization)."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def _grad(self, state: _Layer, k: int, grad: torch.Tensor) -> None:
        """Parameter ``k``'s gradient of a pass; the layer's pass is handled once all its
        parameters' are in. One plain hook per parameter: multi-grad hooks over groups
        that overlap (a block's and its convs') slowed a CPU resnet18's steps by a third.
        A gradient is kept only in a pass that is measured: one held by the hook cannot
        become the parameter's ``.grad`` and is copied instead (3 ms a resnet18 step)."""
        if self.paused:
            return
        started = time.perf_counter()
        if k in state.pending:  # the last pass gave some parameter no gradient: it ended
            self._complete(state)
        if not state.pending:  # the pass's first gradient: is this pass measured?
            state.measuring = self.sampler.due(state.passes)
        state.pending[k] = grad if state.measuring else None
        if len(state.pending) == len(state.params):
            self._complete(state)
        self.sampler.spent(time.perf_counter() - started)  # all of the monitor's time

    def _complete(self, state: _Layer) -> None:
        """The layer's pass is over (every parameter's gradient in, or a parameter came
        again): counted, and handled if measured or the step after a measured one."""
        pending, state.pending = state.pending, {}
        state.passes += 1
        if state.measuring or state.before is not None:  # else nothing more to do
            started = time.perf_counter()
            # in parameter order, not arrival order: the sums come out the same every run
            self._pass(state, [pending[i] for i in sorted(pending)])
            self.sampler.measured(time.perf_counter() - started)

    def _pass(self, state: _Layer, grads: Sequence[torch.Tensor | None]) -> None:
        """One backward pass through a layer (counted by the caller): when measured, its
        norm, histogram and the update ratio of the step after it (seen at the next pass).
        The epoch's pass number decides: a killed run resumed re-trains the epoch from its
        start, so it measures the same passes as an uninterrupted one."""
        with torch.no_grad():
            if state.before is not None:
                self._update_ratio(state)  # the step after the last measured pass
            given = [g.detach() for g in grads if g is not None and not g.is_sparse]
            if state.measuring and given:
                self._measure(state, given)

    def _measure(self, state: _Layer, given: list[torch.Tensor]) -> None:
        """A sampled pass: its gradient norm and histogram, and a copy of the weights."""
        squares = _squared_norm(given)
        state.sum_squares += squares
        torch.maximum(state.peak, squares, out=state.peak)
        if state.edges is None:
            low = min(float(g.min()) for g in given)  # the one sync: the first pass
            state.edges = fixed_edges(low, max(float(g.max()) for g in given), self.bins)
        state.counts += histogram(given, state.edges)
        state.sampled += 1
        copy = [p.detach().clone() for p in state.params]
        state.before = copy, _squared_norm(copy)

    @staticmethod
    def _update_ratio(state: _Layer) -> None:
        """Compare the weights with their copy at the last sampled pass, then drop it (the
        copy becomes the difference in place: no second copy of the layer's weights)."""
        if state.before is None:
            return
        (before, size), state.before = state.before, None
        for copy, weight in zip(before, state.params, strict=True):
            copy.sub_(weight.detach())
        moved = _squared_norm(before)
        changed = moved > 0
        ratio = torch.sqrt(moved / size)
        state.ratios += torch.where(changed, torch.nan_to_num(ratio), 0.0)
        state.steps += changed

    def take(
        self, activations: Mapping[str, np.ndarray], weights: Mapping[str, torch.Tensor]
    ) -> Deferred:
        """The epoch's arrays by store path, and a fresh start for the next epoch. The
        hooks' are read now, and the histograms of the ``weights`` (the capture's CPU
        copies, name -> tensor, of what ``weight_change`` follows) made now, by torch on
        this thread's cores (numpy on the write thread took 0.2 s an epoch for a resnet18's
        weights, beside the training); those of the probe batch's ``activations`` (small)
        when the write thread reads them."""
        with torch.no_grad():
            gathered = self._gathered()
            self.sampler.next_epoch()
            kept = {layer: [weights[n] for n in names] for layer, names in self._followed.items()}
            gathered.update(self._histograms("weights", kept, _torch_counts))

        def later() -> dict[str, np.ndarray]:
            # numpy, not torch: a torch op on the write thread gives it an OpenMP team of
            # its own, which slowed the training loop's steps by a quarter while it lived
            values = {k: [v] for k, v in activations.items()}
            return self._histograms("activations", values, numpy_histogram)

        return Deferred(gathered, later)

    def _gathered(self) -> dict[str, np.ndarray]:
        """The hooks' statistics and gradient histograms of the epoch, by store path."""
        if not self._layers:
            return {}
        rows = [self._finish(state) for state in self._layers.values()]
        with np.errstate(over="ignore"):  # a norm beyond float32 (a diverged run) is inf
            out = {
                gradient_path(name): np.array([row[i] for row in rows], dtype=dtype)
                for i, (name, dtype) in enumerate(GRADIENT_FIELDS.items())
            }
        blank = np.full(self.bins + 1, np.nan, np.float32)
        edges = [s.edges if s.edges is not None else blank for s in self._layers.values()]
        out[histogram_path("gradients", "edges")] = np.stack(edges)
        out[histogram_path("gradients", "counts")] = np.stack([row[-1] for row in rows])
        return out

    def _finish(self, state: _Layer) -> tuple[float, float, float, int, int, np.ndarray]:
        """norm, norm_max, update_ratio, passes, sampled passes and the mean gradient
        histogram of the epoch (NaN without a sampled pass); the step after the last sampled
        pass is seen here, and the next epoch starts afresh."""
        if state.pending:  # the epoch ended on a pass that left a parameter without one
            self._complete(state)
        passes, sampled = state.passes, state.sampled
        if state.before is not None:
            self._update_ratio(state)
        steps = float(state.steps)
        norm = math.sqrt(float(state.sum_squares) / sampled) if sampled else math.nan
        peak = math.sqrt(float(state.peak)) if sampled else math.nan
        ratio = float(state.ratios) / steps if steps else math.nan
        counts = state.counts.cpu().numpy() / sampled if sampled else np.full(self.bins + 2, np.nan)
        for tensor in (state.sum_squares, state.peak, state.ratios, state.steps, state.counts):
            tensor.zero_()
        state.passes = state.sampled = 0
        return norm, peak, ratio, passes, sampled, counts

    def _histograms(
        self, kind: str, values: Mapping[str, list[Any]], count: Counter
    ) -> dict[str, np.ndarray]:
        """Edges and counts of ``kind`` for its layers (``values``: numpy arrays or CPU
        tensors, counted by ``count``), edges fixed at the first call."""
        layers = histogram_layers(self.layers, kind)
        if not layers:
            return {}
        fixed = self.edges[kind]
        for spec in layers:
            if spec.name not in fixed:
                low, high = _range(values[spec.name])
                fixed[spec.name] = fixed_edges(low, high, self.bins)
        counts = [count(values[s.name], fixed[s.name]) for s in layers]
        return {
            histogram_path(kind, "edges"): np.stack([fixed[s.name] for s in layers]),
            histogram_path(kind, "counts"): np.stack(counts),
        }

    def continue_from(self, edges: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """A resumed run: the stored edges (kind -> layer -> edges; NaN = not yet fixed)."""
        for kind, layers in edges.items():
            for name, row in layers.items():
                if not np.isnan(row).any():
                    if kind == "gradients":
                        self._layers[name].edges = np.asarray(row, np.float32)
                    else:
                        self.edges[kind][name] = np.asarray(row, np.float32)


def _range(values: Sequence[np.ndarray]) -> tuple[float, float]:
    """The smallest and largest finite element of ``values`` (0, 0 for none)."""
    finite = [np.asarray(v, np.float32).reshape(-1) for v in values]
    finite = [v[np.isfinite(v)] for v in finite]
    finite = [v for v in finite if v.size]
    if not finite:
        return 0.0, 0.0
    return min(float(v.min()) for v in finite), max(float(v.max()) for v in finite)


def _torch_counts(values: Iterable[torch.Tensor], edges: np.ndarray) -> np.ndarray:
    return histogram(values, edges).numpy()


def numpy_histogram(values: Iterable[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """``histogram`` in numpy, for the write thread: (B + 2,) float64 counts in the bins of
    ``edges`` with an underflow and an overflow bin; NaN is not counted."""
    bins = len(edges) + 1
    width = (float(edges[-1]) - float(edges[0])) / (bins - 2)
    low, high = float(edges[0]) - width, float(edges[-1]) + width
    total = np.zeros(bins, np.float64)
    for value in values:
        flat = np.asarray(value, np.float32).reshape(-1)
        inside = np.clip(flat[~np.isnan(flat)], low, high)
        total += np.histogram(inside, bins=bins, range=(low, high))[0]
    return total
