"""Which layers of any ``nn.Module`` to record, and how each looks in the store.

One dry forward pass of one probe (``trace``) finds, for every module that ran, its output
shape, the order it finished in (the model order the gallery shows), its receptive field
where sliding windows allow one, and the module whose output is the model's (the logits).
The default choice works for any architecture without knowing names:

* every ``Conv2d`` (so every kernel is recorded);
* every *block*: a module with a ``forward`` of its own (not a ``Sequential``) that holds
  a conv and outputs a feature map, e.g. a ResNet ``BasicBlock`` (after the residual
  addition), a MobileNet ``InvertedResidual`` or ``SqueezeExcitation``;
* every *token block*: a module with a ``forward`` of its own (not a ``Sequential``) that
  holds a ``Linear`` and a normalization and outputs a token or channels-last map, e.g. a
  ViT's encoder layers, a swin stage's blocks and patch merging (not their ``Linear``,
  ``LayerNorm`` or ``Dropout`` children);
* the logits; and when a model has no such blocks, every ``Linear`` too.

Outputs that are maps in another layout are stored as (C, H, W) maps all the same
(``MapView``): tokens (N, T, D) on the patch grid, the class and register tokens left out,
and channels-last (N, H, W, C) maps (swin, convnext's permuted LayerNorm).

``layers=`` replaces that choice with module names, glob patterns (``fnmatch``: ``*`` also
crosses dots, ``?`` is one character) or module types.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from generator.errors import LayerChoiceError
from generator.model import describe_layer, grow_receptive_field
from generator.record.hooks import untouched
from generator.record.outputs import OutputChoice, pick_logits
from generator.store import LayerSpec

LayerChoice = str | type[nn.Module]
WINDOWS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
# Modules whose forward only chains or holds children: never a block of their own.
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
NORMS = tuple(
    norm
    for norm in (nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None))
    if isinstance(norm, type)
)


@dataclass(frozen=True)
class MapView:
    """How one layer's output, not channels-first, becomes the stored (C, H, W) map:
    ``layout`` is ``channels_last`` (H, W, C) or ``tokens`` (T, D) with ``extra_tokens``
    (class, register) before the ``shape[1] x shape[2]`` patch grid."""

    layout: str
    shape: tuple[int, int, int]
    extra_tokens: int = 0


@dataclass
class Trace:
    """One dry forward pass: per layer that ran, one probe's output shape (in the order
    modules finished), its receptive field, and the layer giving the logits. A layer is
    one call of a module: its path for the first call, ``path#k`` for the k-th (a module
    applied twice per forward, e.g. one conv at two resolutions, is two layers)."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    fields: dict[str, int | None] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # layer name -> module path
    logits: str | None = None
    output_shape: tuple[int, ...] | None = None  # one probe's logits
    views: dict[str, MapView] = field(default_factory=dict)  # maps not channels-first

    def map_shape(self, name: str) -> tuple[int, ...]:
        """Layer ``name``'s output as stored: (C, H, W) for any map, (N,) for a vector."""
        view = self.views.get(name)
        return self.shapes[name] if view is None else view.shape

    def recordable(self, name: str) -> bool:
        """Whether layer ``name`` gives a (C, H, W) map (in any layout) or an (N,) vector."""
        return name in self.views or len(self.shapes[name]) in (1, 3)


class Grids:
    """The spatial grids a trace has seen so far, to tell what a later output's dims are:
    every channels-first map's (H, W), the patch grid (the last conv's output before the
    first tokens: the patch embedding), and the input's aspect ratio."""

    def __init__(self, example: torch.Tensor) -> None:
        self.height, self.width = (int(s) for s in example.shape[-2:])
        self.seen: set[tuple[int, int]] = set()
        self.conv: tuple[int, int] | None = None
        self.patch: tuple[int, int] | None = None

    def view(self, module: nn.Module, shape: tuple[int, ...]) -> MapView | None:
        """How an output of one probe's ``shape`` is a map (None: channels-first or none)."""
        if len(shape) == 2:
            return self._tokens(*shape)
        if len(shape) != 3:
            return None
        last = self._fits(*shape[:2]) and not self._fits(*shape[1:])
        if last and not isinstance(module, WINDOWS):
            self.seen.add((shape[0], shape[1]))
            return MapView("channels_last", (shape[2], shape[0], shape[1]))
        self.seen.add((shape[1], shape[2]))
        if isinstance(module, nn.Conv2d):
            self.conv = (shape[1], shape[2])
        return None

    def _fits(self, rows: int, columns: int) -> bool:
        """A grid seen before, or one of the input's aspect ratio."""
        return (rows, columns) in self.seen or rows * self.width == columns * self.height

    def _tokens(self, tokens: int, dim: int) -> MapView | None:
        """(T, D) tokens on the patch grid, else on the smallest grid of the input's
        aspect ratio leaving at most ``LayerSpec.MAX_EXTRA_TOKENS`` over."""
        self.patch, most = self.patch or self.conv, LayerSpec.MAX_EXTRA_TOKENS
        grids = [self.patch, *(self._aspect_grid(tokens - extra) for extra in range(most + 1))]
        for grid in grids:
            if grid is not None and 0 <= tokens - grid[0] * grid[1] <= most:
                return MapView("tokens", (dim, *grid), tokens - grid[0] * grid[1])
        return None

    def _aspect_grid(self, count: int) -> tuple[int, int] | None:
        """(rows, columns) of ``count`` cells in the input's aspect ratio, if there is one."""
        if count < 1:
            return None
        rows = max(1, round(math.sqrt(count * self.height / self.width)))
        columns = count // rows
        ok = rows * columns == count and rows * self.width == columns * self.height
        return (rows, columns) if ok else None


def call_name(path: str, call: int) -> str:
    """The layer name of a module's ``call``-th call in one forward (1 = its path)."""
    return path if call == 1 else f"{path}#{call}"


def call_of(spec: LayerSpec) -> int:
    """Which call of its module a recorded layer is (1 unless named ``module#k``)."""
    path = module_path(spec)
    suffix = spec.name[len(path) + 1 :] if spec.name.startswith(f"{path}#") else ""
    return int(suffix) if suffix.isdigit() else 1


def traced_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every submodule but a parametrization's own (weight_norm's, spectral_norm's): those
    compute a weight, not an output of the network."""
    inside = {
        id(sub)
        for module in model.modules()
        if isinstance(module, parametrize.ParametrizationList)
        for sub in module.modules()
    }
    return [(p, m) for p, m in model.named_modules() if p and id(m) not in inside]


def trace(model: nn.Module, example: torch.Tensor, *, output: OutputChoice = None) -> Trace:
    """Run ``example`` (one probe, model input) once, recording nothing, changing nothing;
    ``output`` picks the logits from what the model returns (``pick_logits``)."""
    found = Trace()
    windows: dict[int, tuple[int, int] | None] = {id(example): (1, 1)}
    alive: list[torch.Tensor] = [example]  # ids stay unique while the pass is traced
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, tuple[int, int] | None] = {}
    calls: dict[str, int] = {}
    grids = Grids(example)

    def before(path: str, args: tuple) -> None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        inputs[path] = windows.get(id(first)) if first is not None else None

    def after(path: str, module: nn.Module, output: object) -> None:
        calls[path] = calls.get(path, 0) + 1
        if not isinstance(output, torch.Tensor):
            return
        # A block's output usually is its last leaf's (known); else it sees what its input saw.
        if id(output) not in windows or not list(module.children()):
            windows[id(output)] = _window_after(module, inputs.get(path))
        alive.append(output)
        name = call_name(path, calls[path])
        window = windows[id(output)]
        found.shapes[name] = tuple(output.shape[1:])
        found.fields[name] = None if window is None else window[0]
        found.paths[name] = path
        outputs[name] = output
        view = grids.view(module, found.shapes[name])
        if view is not None:
            found.views[name] = view

    handles = []
    for path, module in traced_modules(model):
        handles.append(module.register_forward_pre_hook(lambda _m, a, p=path: before(p, a)))
        handles.append(module.register_forward_hook(lambda m, _a, o, p=path: after(p, m, o)))
    try:
        with untouched(model):
            result = pick_logits(model(example), output)
    finally:
        for handle in handles:
            handle.remove()
    found.output_shape = tuple(result.shape[1:])
    found.logits = next((p for p, out in outputs.items() if out is result), None)
    return found


def _window_after(module: nn.Module, window: tuple[int, int] | None) -> tuple[int, int] | None:
    """(receptive field, jump) of a leaf's output from its input's; None when unknown."""
    if window is None or isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return None
    if not isinstance(module, WINDOWS):
        return window
    kernel, stride = _first(module.kernel_size), _first(module.stride or module.kernel_size)
    dilation = _first(getattr(module, "dilation", 1))
    return grow_receptive_field(*window, kernel=kernel, stride=stride, dilation=dilation)


def _first(value: int | Sequence[int]) -> int:
    return int(value) if isinstance(value, int) else int(value[0])


def default_layers(model: nn.Module, found: Trace) -> list[str]:
    """Every conv, every block output and the logits; every Linear when there are no blocks."""
    modules = _layer_modules(model, found)
    ran = list(found.shapes)
    convs = [p for p in ran if isinstance(modules[p], nn.Conv2d) and len(found.shapes[p]) == 3]
    if not convs:
        raise LayerChoiceError(
            f"{type(model).__name__} ran no Conv2d layer on the probes; netlapse records "
            "convolutional networks (pass a model with at least one nn.Conv2d)"
        )
    blocks = [
        p
        for p in ran
        if _is_block(modules[p], found.shapes[p]) or _is_token_block(modules[p], found.views, p)
    ]
    chosen = set(convs) | set(blocks)
    if not blocks:
        chosen |= {
            p for p in ran if isinstance(modules[p], nn.Linear) and len(found.shapes[p]) == 1
        }
    if found.logits:
        chosen.add(found.logits)
    return [path for path in ran if path in chosen]


def _is_block(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """A module with its own forward that holds a conv and outputs a (C, H, W) map."""
    if isinstance(module, (nn.Conv2d, *CONTAINERS)) or len(shape) != 3:
        return False
    return any(isinstance(sub, nn.Conv2d) for sub in module.modules())


def _is_token_block(module: nn.Module, views: dict[str, MapView], name: str) -> bool:
    """A module with its own forward, outputting tokens or a channels-last map, that holds
    a Linear and a normalization: a transformer block (an encoder layer, a swin block, a
    patch merging), never one of its parts (a Linear, a LayerNorm, an attention or MLP)."""
    if name not in views or isinstance(module, CONTAINERS) or not list(module.children()):
        return False
    parts = list(module.modules())
    return any(isinstance(m, nn.Linear) for m in parts) and any(isinstance(m, NORMS) for m in parts)


def chosen_layers(model: nn.Module, found: Trace, choices: Iterable[LayerChoice]) -> list[str]:
    """The modules ``choices`` names (exact names, glob patterns or types), in model order."""
    modules = _layer_modules(model, found)
    ran = [p for p in found.shapes if found.recordable(p)]
    chosen: set[str] = set()
    for choice in choices:
        matches = _matches(choice, ran, modules)
        if not matches:
            raise LayerChoiceError(
                f"layers={choice!r} matches no module with a (C, H, W) or (N,) output "
                "(or tokens, or a channels-last map); "
                f"module names look like {', '.join(_examples(ran))} "
                "(see [name for name, _ in model.named_modules()])"
            )
        chosen.update(matches)
    return [path for path in ran if path in chosen]


def _layer_modules(model: nn.Module, found: Trace) -> dict[str, nn.Module]:
    """Layer name -> the module whose call it is."""
    return {name: model.get_submodule(path) for name, path in found.paths.items()}


def _examples(paths: list[str]) -> list[str]:
    """The first module name at each of the first three depths, to show what names look like."""
    by_depth: dict[int, str] = {}
    for path in paths:
        by_depth.setdefault(path.count("."), path)
    return [by_depth[depth] for depth in sorted(by_depth)[:3]]


def _matches(choice: LayerChoice, ran: list[str], modules: dict[str, nn.Module]) -> list[str]:
    if isinstance(choice, type) and issubclass(choice, nn.Module):
        return [p for p in ran if isinstance(modules[p], choice)]
    if not isinstance(choice, str):
        raise LayerChoiceError(
            f"layers= takes module names, glob patterns or nn.Module types, got {choice!r}"
        )
    if choice in ran:
        return [choice]
    # A pattern never matches an Identity (a ViT's q_norm/k_norm when off): no layer at all.
    return [
        p for p in ran if fnmatch.fnmatchcase(p, choice) and not isinstance(modules[p], nn.Identity)
    ]


def describe_layers(
    model: nn.Module,
    example: torch.Tensor,
    choices: Iterable[LayerChoice] | None = None,
    *,
    output: OutputChoice = None,
) -> tuple[Trace, list[LayerSpec]]:
    """Trace ``model`` on ``example`` (one probe) and describe the layers ``choices`` picks
    (default: ``default_layers``), in model order: what a Recorder records."""
    found = trace(model, example, output=output)
    names = (
        default_layers(model, found) if choices is None else chosen_layers(model, found, choices)
    )
    with untouched(model):  # reading a spectral_norm weight in training mode would step it
        return found, [describe(model, name, found) for name in names]


def describe(model: nn.Module, name: str, found: Trace) -> LayerSpec:
    """The store's description of layer ``name`` (its output as ``found`` saw it). A later
    call of a conv or linear module is a block of that module: its kernel is recorded
    once, with the first call. A map in another layout is a block even around one conv
    (swin's patch embedding: conv, permute, norm): its kernel is the conv's own layer, and
    what reads a conv layer's output (dataset examples) reads it channels-first."""
    path = found.paths.get(name, name)
    shape, view = found.map_shape(name), found.views.get(name)
    spec = _described(model, name, path, shape, found, single=view is None)
    if view is None:
        return spec
    return replace(spec, layout=view.layout, extra_tokens=view.extra_tokens, receptive_field=None)


def _described(
    model: nn.Module, name: str, path: str, shape: tuple[int, ...], found: Trace, *, single: bool
) -> LayerSpec:
    """``describe`` for an output already in its stored (C, H, W) or (N,) shape; ``single``:
    a module with one conv (or linear) may be described as that layer."""
    module = model.get_submodule(path)
    field_ = found.fields.get(name) if len(shape) == 3 else None
    convs = sum(isinstance(sub, nn.Conv2d) for sub in module.modules())
    linears = sum(isinstance(sub, nn.Linear) for sub in module.modules())
    one_weight = (convs, linears) == ((1, 0) if len(shape) == 3 else (0, 1))
    if single and one_weight and name == path:
        return describe_layer(path, module, output_shape=shape, receptive_field=field_)
    return LayerSpec(
        name,
        "block" if len(shape) == 3 else "linear",
        shape,
        None,
        sum(p.numel() for p in module.parameters()),
        field_,
        module=path,
        module_type=type(module).__name__,
        parent=path.rpartition(".")[0],
    )


def module_path(spec: LayerSpec) -> str:
    """Where a recorded layer's module is in its model: ``module``, or for a layer described
    before paths were stored (schema version 1), its name."""
    return spec.module or spec.name


def recorded_modules(model: nn.Module, layers: Iterable[LayerSpec]) -> dict[str, nn.Module]:
    """Layer name -> the module whose output the store records."""
    return {spec.name: model.get_submodule(module_path(spec)) for spec in layers}
