"""The capture: the model on the probes as an ``EpochRecord``, pure and of numpy copies.

One forward pass of the probes in eval mode under ``no_grad``, with hooks on the recorded
layers, changing nothing of training (``hooks.untouched``); then the kernels, the weight
change since the record before, and the loop's metrics. Nothing here writes or keeps
state: the Recorder holds the previous weights and hands the record to the writer.
Nothing in a record shares memory with a tensor training goes on to change, so it can be
written on another thread while the optimizer steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from generator.errors import ModelOutputError, OptionError
from generator.record.hooks import capture_outputs, untouched
from generator.record.layers import call_of, module_path, recorded_modules
from generator.record.outputs import OutputChoice, pick_logits
from generator.record.probes import model_input_like
from generator.store import EpochRecord, LayerSpec

NAMED_SCALARS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
FRACTIONS = ("train_accuracy", "val_accuracy")  # in [0, 1]
# ``Recorder.epoch()``'s arguments that are not scalar metrics: a metric a framework logs
# under such a name is stored under ``USER_PREFIX + name`` (``integrations``).
RESERVED_METRICS = ("confusion",)
USER_PREFIX = "logged/"
STORED_MAX = float(np.finfo(np.float32).max)  # metrics are stored as float32

log = logging.getLogger(__name__)

Weights = dict[str, torch.Tensor]  # parameter name -> CPU float32 copy


@dataclass(frozen=True)
class Metrics:
    """The metrics one record stores besides what the capture measures itself: the named
    scalars, any extra ones by name, and the (K, K) confusion matrix (rows = true class)."""

    scalars: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None


def loop_metrics(classes: int, *, confusion: Any = None, **scalars: Any) -> Metrics:
    """The loop's metrics as stored (what is None is absent); one line for a metric that
    is not a number or a confusion matrix that is not (``classes``, ``classes``) counts."""
    given = {name: _number(name, value) for name, value in scalars.items() if value is not None}
    return Metrics(
        scalars={k: v for k, v in given.items() if k in NAMED_SCALARS},
        extra={k: v for k, v in given.items() if k not in NAMED_SCALARS},
        confusion=None if confusion is None else _confusion(confusion, classes),
    )


def user_metric_name(name: str) -> str:
    """The name a metric logged by a framework (Lightning's ``self.log``) is stored under:
    its own, unless it is an argument of ``Recorder.epoch()`` that is not a scalar metric
    (``confusion``): then ``logged/<name>``, so it never passes for netlapse's own."""
    return USER_PREFIX + name if name in RESERVED_METRICS else name


def _number(name: str, value: Any) -> float:
    """A metric as a float (Python, numpy or one-element torch number), or one line: not
    a number, an accuracy outside [0, 1]. A loss that diverged (NaN, infinite, or beyond
    float32) is data, not a mistake, and training must go on: it is stored as NaN or
    +-inf, said once in the log (never as numpy's RuntimeWarning)."""
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise OptionError(f"metric {name}={value!r:.40} is not a number; pass a float") from None
    if not abs(number) <= STORED_MAX:  # also NaN
        stored = number if math.isnan(number) else math.copysign(math.inf, number)
        log.warning("metric %s=%r is not a finite float32: stored as %s", name, number, stored)
        return stored
    if name in FRACTIONS and not 0.0 <= number <= 1.0:
        raise OptionError(f"metric {name}={number!r} is outside [0, 1]; pass a fraction")
    return number


def _confusion(confusion: Any, k: int) -> np.ndarray:
    matrix = np.asarray(
        confusion.detach().cpu() if isinstance(confusion, torch.Tensor) else confusion
    )
    if matrix.shape != (k, k) or not np.issubdtype(matrix.dtype, np.integer):
        raise OptionError(
            f"confusion= has shape {matrix.shape} and dtype {matrix.dtype}; pass a "
            f"({k}, {k}) integer matrix of counts, rows = true class"
        )
    if matrix.size and (matrix.min() < 0 or matrix.max() > np.iinfo(np.int64).max):
        raise OptionError(
            f"confusion= holds {matrix.min()}; pass counts (integers >= 0), rows = true class"
        )
    return matrix.astype(np.int64)


def kernel_of(model: nn.Module, path: str) -> torch.Tensor:
    """The ``weight`` of the conv or linear module at ``path``."""
    weight = model.get_submodule(path).weight
    if not isinstance(weight, torch.Tensor):
        raise ModelOutputError(f"layer weights {path!r}: {type(weight).__name__}, not a tensor")
    return weight


def recorded_kernels(model: nn.Module, layers: Sequence[LayerSpec]) -> dict[str, np.ndarray]:
    """(O, I / groups, kh, kw) float32 copies of every recorded conv's kernel: what an epoch
    stores. Copies, because ``.float()`` of a float32 weight is the weight itself, which the
    optimizer changes in place while the write thread still reads it. The kernel is the
    weight the forward uses (``module.weight``: weight_norm's, spectral_norm's, a pruned
    one's), computed under ``untouched`` so spectral_norm's power iteration does not run."""
    with untouched(model):
        return _kernels(model, layers)


def _kernels(model: nn.Module, layers: Sequence[LayerSpec]) -> dict[str, np.ndarray]:
    return {
        spec.name: kernel_of(model, spec.weights)
        .detach()
        .to("cpu", torch.float32, copy=True)
        .numpy()
        for spec in layers
        if spec.kernel_shape is not None and spec.weights
    }


def followed_parameters(model: nn.Module, layers: Sequence[LayerSpec]) -> dict[str, list[str]]:
    """Layer name -> the parameters its weight change follows: its kernel (or matrix), or
    every parameter of a block."""
    found = {}
    for spec in layers:
        if spec.weights:
            found[spec.name] = [f"{spec.weights}.weight"]
        elif spec.params:
            path = module_path(spec)
            owner = model.get_submodule(path)
            found[spec.name] = [f"{path}.{name}" for name, _ in owner.named_parameters()]
    return found


def weight_change(
    followed: Mapping[str, list[str]], weights: Weights, previous: Weights | None
) -> dict[str, float]:
    """||W - W_prev|| / ||W_prev|| per layer over the parameters it follows; NaN with no
    previous record (epoch 0) and for a layer whose previous weights are all zero."""
    if previous is None:
        return {name: math.nan for name in followed}
    moved = {n: float(torch.dist(weights[n], previous[n])) ** 2 for n in weights}
    size = {n: float(torch.linalg.vector_norm(previous[n])) ** 2 for n in weights}
    change = {}
    for layer, names in followed.items():
        norm = math.sqrt(sum(size[n] for n in names))
        change[layer] = math.sqrt(sum(moved[n] for n in names)) / norm if norm else math.nan
    return change


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor ``model``'s attribute path ``name`` gives (``conv.weight`` as its forward
    sees it, parametrised or pruned, or a parameter), detached."""
    owner, _, attribute = name.rpartition(".")
    value = getattr(model.get_submodule(owner), attribute)
    if not isinstance(value, torch.Tensor):
        raise ModelOutputError(f"layer weights {name!r}: {type(value).__name__}, not a tensor")
    return value.detach()


class ModelCapture:
    """What one record reads from ``model``: its recorded ``layers`` on the probe
    ``inputs`` (float model input on the CPU), activations kept as ``dtype``, the logits
    picked from its output by ``output`` (``pick_logits``)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[LayerSpec],
        inputs: torch.Tensor,
        *,
        dtype: torch.dtype,
        output: OutputChoice = None,
    ) -> None:
        self.model, self.layers = model, list(layers)
        self._inputs, self._dtype, self._output = inputs, dtype, output
        self._modules = recorded_modules(model, layers)
        self._calls = {spec.name: call_of(spec) for spec in layers}
        self._followed = followed_parameters(model, layers)

    def weights(self) -> Weights:
        """CPU float32 copies of every weight a layer follows, each copied once (a block
        shares its convs' kernels): a conv's or linear's as its forward uses it (a
        reparametrised one computed, under ``untouched``), a block's parameters."""
        with untouched(self.model):
            return self._weights()

    def _weights(self) -> Weights:
        wanted = {name for names in self._followed.values() for name in names}
        return {name: _tensor_at(self.model, name).float().cpu().clone() for name in wanted}

    def record(self, metrics: Metrics, *, previous: Weights | None) -> tuple[EpochRecord, Weights]:
        """The model now as an epoch record (no featviz or examples: those are the
        Recorder's per-channel work), and its weights, the base of the next change."""
        with untouched(self.model):
            activations, channel_stats, logits = self._forward()
            weights, kernels = self._weights(), _kernels(self.model, self.layers)
        record = EpochRecord(
            activations=activations,
            channel_stats=channel_stats,
            kernels=kernels,
            weight_change=weight_change(self._followed, weights, previous),
            probe_probs=torch.softmax(logits.float(), dim=1).cpu().numpy(),
            confusion=metrics.confusion,
            scalars=dict(metrics.scalars),
            extra=dict(metrics.extra),
        )
        return record, weights

    def _forward(
        self,
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], torch.Tensor]:
        """Activations and channel statistics per layer (numpy copies), and the logits."""
        specs = {spec.name: spec for spec in self.layers}
        with capture_outputs(
            self._modules, dtype=self._dtype, calls=self._calls, root=self.model, specs=specs
        ) as got:
            output = self.model(model_input_like(self._inputs, self.model))
        logits = pick_logits(output, self._output)
        missing = [spec.name for spec in self.layers if spec.name not in got.activations]
        if missing:
            raise ModelOutputError(
                f"layer {missing[0]} gave no tensor output on the probes this time; pass "
                "layers= without it"
            )
        activations = {name: value.cpu().numpy() for name, value in got.activations.items()}
        stats = {
            name: {stat: value.cpu().numpy() for stat, value in fields.items()}
            for name, fields in got.channel_stats.items()
        }
        return activations, stats, logits.detach()
