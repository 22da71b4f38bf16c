"""Where a model's logits are in what its forward returns, and the model a wrapper holds.

Models return more than a tensor: a dict (``{"logits": ..., "aux": ...}``), a tuple (the
main and auxiliary heads of a GoogLeNet), a Hugging Face style object with ``.logits``.
``pick_logits`` is the one place that finds the logits, for the Recorder and for ``train``
alike: ``output=`` names them (a key or attribute, an index, or a callable); without it
the output itself when it is a tensor, its ``logits`` when it has one, else the one 2-D
tensor among its items. Anything else is one line asking for ``output=``.

``unwrapped`` is the eager module inside ``torch.compile``, ``DataParallel`` and
``DistributedDataParallel``: layer names are the plain model's (no ``_orig_mod.`` or
``module.`` prefix), and hooks run on the modules that really compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from generator.errors import ModelOutputError

OutputChoice = str | int | Callable[[Any], torch.Tensor] | None


def pick_logits(output: Any, choice: OutputChoice = None) -> torch.Tensor:
    """The logits in a model's ``output``, as ``choice`` says (see the module docstring)."""
    picked = _chosen(output, choice) if choice is not None else _found(output)
    if not isinstance(picked, torch.Tensor):
        raise ModelOutputError(
            f"output={choice!r} gave {type(picked).__name__}, not a logits tensor; pass "
            "output= (a key, an index or a callable) that picks the (N, classes) logits"
        )
    return picked


def _chosen(output: Any, choice: OutputChoice) -> Any:
    """What ``choice`` picks from ``output``; one line when it picks nothing."""
    try:
        if callable(choice):
            return choice(output)
        if isinstance(choice, str) and isinstance(output, Mapping):
            return output[choice]
        if isinstance(choice, str):
            return getattr(output, choice)
        return output[choice]
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ModelOutputError(
            f"output={choice!r} picks nothing from the model's {type(output).__name__} "
            f"({type(exc).__name__}: {exc}); pass a key, an index or a callable it has"
        ) from None


def _found(output: Any) -> torch.Tensor:
    """The output itself, its ``logits``, or its one 2-D tensor item; else one line."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    items = _items(output)
    matrices = [item for item in items if isinstance(item, torch.Tensor) and item.ndim == 2]
    if len(matrices) == 1:
        return matrices[0]
    raise ModelOutputError(
        "the model returns no tensor; netlapse records classifiers that return logits "
        f"(N, classes), and its {type(output).__name__} holds {len(matrices)} 2-D tensors: "
        "pass output= (a key, an index or a callable) that picks the logits"
    )


def _items(output: Any) -> list[Any]:
    """The values of a dict, the items of a tuple or list, else nothing."""
    if isinstance(output, Mapping):
        return list(output.values())
    if isinstance(output, (tuple, list)):
        return list(output)
    return []


def unwrapped(model: nn.Module) -> nn.Module:
    """The eager module inside any ``torch.compile`` / ``DataParallel`` / DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model
