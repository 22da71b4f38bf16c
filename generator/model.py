"""The reference CNN, and how any model's layers are described for the store.

Block 1 is Conv -> LeakyReLU -> BatchNorm; every later block starts with a 2x2 max pool.
The head pools to at most 2x2 (``AdaptiveMaxPool2d``, identical to ``MaxPool2d(2)`` on the
reference 4x4 map) so any input size from ``min_input_size`` up works, and its flatten
size is computed rather than hard-coded. The model returns logits; softmax is the caller's.

``describe_layer`` turns any ``Conv2d`` or ``Linear`` (or a block holding exactly one) of
any model into the store's ``LayerSpec``; the reference CNN describes its layers with it,
so nothing in it is special to this network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from generator.architecture import REFERENCE_CHANNELS, REFERENCE_HIDDEN, REFERENCE_KERNEL
from generator.errors import OptionError
from generator.store import LayerSpec

HIDDEN_LAYER, LOGITS_LAYER = "hidden", "logits"


def block_name(index: int) -> str:
    """``block1`` ... ``blockN``: the names the store and the gallery use."""
    return f"block{index + 1}"


def min_input_size(depth: int) -> int:
    """Smallest input whose last block still sees a 1x1 map without padding-only pools."""
    return max(16, 2 ** (depth - 2))


def map_sizes(input_size: int, depth: int) -> list[int]:
    """Spatial size of each block's output (pools round up, so odd sizes keep a border)."""
    sizes = [input_size]
    for _ in range(depth - 1):
        sizes.append(-(-sizes[-1] // 2))
    return sizes


class ConvBlock(nn.Sequential):
    """[MaxPool2d(2)] -> Conv2d(k, same padding) -> LeakyReLU -> BatchNorm2d."""

    conv: nn.Conv2d  # registered by add_module; declared so its type is known

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, pool: bool) -> None:
        layers: dict[str, nn.Module] = {}
        if pool:
            layers["pool"] = nn.MaxPool2d(2, ceil_mode=True)
        layers["conv"] = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        layers["act"] = nn.LeakyReLU()
        layers["norm"] = nn.BatchNorm2d(out_ch)
        super().__init__()
        for name, module in layers.items():
            self.add_module(name, module)


class Head(nn.Module):
    """Pool to at most 2x2 -> flatten -> Linear -> ReLU (``hidden``) -> Linear (``logits``)."""

    def __init__(self, channels: int, last_size: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        pooled = max(1, last_size // 2)
        self.pool = nn.AdaptiveMaxPool2d(pooled)
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(nn.Linear(channels * pooled * pooled, hidden), nn.ReLU())
        self.logits = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(self.flatten(self.pool(x))))


class NetlapseCNN(nn.Module):
    """The reference classifier, parametrised by input size, channels and kernel size."""

    def __init__(
        self,
        n_classes: int,
        input_size: int = 512,
        channels: Sequence[int] = REFERENCE_CHANNELS,
        kernel_size: int = REFERENCE_KERNEL,
        hidden: int = REFERENCE_HIDDEN,
    ) -> None:
        super().__init__()
        check_architecture(n_classes, input_size, channels, kernel_size)
        self.input_size, self.channels = input_size, tuple(channels)
        self.kernel_size, self.hidden_units = kernel_size, hidden
        in_ch = 3
        for index, out_ch in enumerate(channels):
            self.add_module(block_name(index), ConvBlock(in_ch, out_ch, kernel_size, index > 0))
            in_ch = out_ch
        self.head = Head(in_ch, map_sizes(input_size, len(channels))[-1], hidden, n_classes)

    def blocks(self) -> list[tuple[str, ConvBlock]]:
        return [(block_name(i), getattr(self, block_name(i))) for i in range(len(self.channels))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, block in self.blocks():
            x = block(x)
        return self.head(x)

    def recorded_modules(self) -> dict[str, nn.Module]:
        """Layer name -> the module whose output the store records, in forward order."""
        return {spec.name: self.get_submodule(_path(spec.module)) for spec in self.layer_specs()}

    def weights(self) -> dict[str, torch.Tensor]:
        """Layer name -> its main weight (conv kernel or linear matrix), for change tracking."""
        return {
            spec.name: _weight_layer(path, self.get_submodule(path))[1].weight
            for spec in self.layer_specs()
            for path in (_path(spec.weights),)
        }

    def layer_specs(self) -> list[LayerSpec]:
        """What the store records for each layer: shapes, kernel geometry, receptive field."""
        sizes = map_sizes(self.input_size, len(self.channels))
        specs, field, jump = [], 1, 1
        for (name, block), size in zip(self.blocks(), sizes, strict=True):
            if "pool" in block._modules:
                field, jump = grow_receptive_field(field, jump, kernel=2, stride=2)
            conv = block.conv
            field, jump = grow_receptive_field(
                field, jump, kernel=conv.kernel_size[0], dilation=conv.dilation[0]
            )
            shape = (conv.out_channels, size, size)
            specs.append(describe_layer(name, block, output_shape=shape, receptive_field=field))
        hidden, logits = self.head.hidden, self.head.logits
        specs.append(
            describe_layer(
                "head.hidden", hidden, output_shape=(self.hidden_units,), name=HIDDEN_LAYER
            )
        )
        specs.append(
            describe_layer(
                "head.logits", logits, output_shape=(logits.out_features,), name=LOGITS_LAYER
            )
        )
        return specs


def describe_layer(
    path: str,
    module: nn.Module,
    *,
    output_shape: Sequence[int],
    name: str | None = None,
    parent: str | None = None,
    receptive_field: int | None = None,
) -> LayerSpec:
    """The store's description of the layer at ``path`` in any model.

    ``module`` is a ``Conv2d`` or ``Linear``, or a block holding exactly one of them (the
    reference CNN's ``block1`` = pool, conv, activation, norm): that one gives the kind,
    the kernel shape (O, I / groups, kh, kw) and the geometry, while ``params`` counts the
    whole module. ``output_shape`` is one probe's output, (C, H, W) or (N,); ``name`` is the
    layer's name in the store (default: its path), and ``parent`` defaults to the path's
    enclosing module ("" = the model itself).
    """
    weights_path, layer = _weight_layer(path, module)
    kind = "conv" if isinstance(layer, nn.Conv2d) else "linear"
    rank = 3 if kind == "conv" else 1
    if len(output_shape) != rank:
        raise OptionError(
            f"layer {path}: a {type(layer).__name__} output per probe has {rank} dimensions, "
            f"got shape {tuple(output_shape)}"
        )
    geometry: dict = {}
    if isinstance(layer, nn.Conv2d):
        geometry = {
            "groups": int(layer.groups),
            "stride": _pair(layer.stride),
            "dilation": _pair(layer.dilation),
            "padding": conv_padding(layer),
        }
    return LayerSpec(
        name if name is not None else path,
        kind,
        tuple(int(s) for s in output_shape),
        tuple(layer.weight.shape) if kind == "conv" else None,
        _count(module),
        receptive_field,
        module=path,
        module_type=type(module).__name__,
        parent=path.rpartition(".")[0] if parent is None else parent,
        weights=weights_path,
        **geometry,
    )


def _weight_layer(path: str, module: nn.Module) -> tuple[str, nn.Conv2d | nn.Linear]:
    """(path, layer) of the one Conv2d or Linear that ``module`` is or holds."""
    found = [
        (f"{path}.{sub}" if sub else path, layer)
        for sub, layer in module.named_modules()
        if isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    if len(found) != 1:
        held = ", ".join(p for p, _ in found) or "none"
        raise OptionError(
            f"layer {path}: describe one Conv2d or Linear at a time (it holds {held})"
        )
    return found[0]


def conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """The top and left padding of a conv; "same" pads (d (k - 1)) // 2 there (PyTorch puts
    the odd pixel of an even kernel at the bottom and right)."""
    if isinstance(conv.padding, str):  # "valid" or "same", the only names Conv2d takes
        if conv.padding == "valid":
            return (0, 0)
        (dh, dw), (kh, kw) = conv.dilation, conv.kernel_size
        return (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
    return _pair(conv.padding)


def grow_receptive_field(
    field: int, jump: int, *, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
    """(receptive field, jump) after one more sliding window (a conv or a pool).

    ``field`` is the side in input pixels that one output pixel sees, ``jump`` the input
    pixels between two neighbouring outputs; both start at 1 for the input image.
    """
    return field + dilation * (kernel - 1) * jump, jump * stride


def _path(path: str | None) -> str:
    """A module path of a ``LayerSpec`` that ``describe_layer`` made (it always sets one)."""
    if path is None:
        raise ValueError("a layer described without its module path")
    return path


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_architecture(
    n_classes: int, input_size: int, channels: Sequence[int], kernel_size: int
) -> None:
    """Refuse shapes the network cannot run, naming the option to change."""
    if n_classes < 2:
        raise OptionError(f"a classifier needs at least 2 classes, got {n_classes}")
    if not channels or any(c < 1 for c in channels):
        raise OptionError(f"--channels must be positive integers, got {list(channels)}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise OptionError(f"--kernel-size must be an odd positive integer, got {kernel_size}")
    smallest = min_input_size(len(channels))
    if input_size < smallest:
        raise OptionError(
            f"--input-size {input_size} is too small for {len(channels)} "
            f"blocks; use at least {smallest}"
        )


# -- any classifier by name ----------------------------------------------------------------
MODEL_LIST_HINT = (
    'list the names with: python -c "import torchvision.models as m; '
    'print(m.list_models(module=m))"'
)


def build_model(name: str, *, num_classes: int) -> nn.Module:
    """A fresh, untrained classifier: a torchvision name (``resnet18``), always built with
    ``weights=None`` so nothing is downloaded, or a user factory ``pkg.module:function``
    called as ``function(num_classes=...)``."""
    if ":" in name:
        return _user_model(name, num_classes)
    return _torchvision_model(name, num_classes)


def check_model_name(name: str) -> None:
    """Refuse a ``--model`` that names no torchvision classifier before any data is loaded
    (a factory ``pkg.module:function`` is checked when it is called)."""
    if ":" not in name and name not in torchvision_classifiers():
        raise OptionError(
            f"--model {name}: not a torchvision classifier; {MODEL_LIST_HINT}, "
            "or pass your own as my_pkg.my_module:make_model"
        )


def torchvision_classifiers() -> list[str]:
    """Every classification model torchvision builds (no detection or segmentation)."""
    import torchvision.models  # imported when asked: a second or more to load

    return list(torchvision.models.list_models(module=torchvision.models))


def _torchvision_model(name: str, num_classes: int) -> nn.Module:
    import torchvision.models

    check_model_name(name)
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def _user_model(spec: str, num_classes: int) -> nn.Module:
    """``pkg.module:function`` imported and called; every way it can fail is one line."""
    import importlib
    import inspect

    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as exc:
        raise OptionError(
            f"--model {spec}: cannot import {module_name} ({exc}); pass "
            "package.module:function with the package on PYTHONPATH, or a torchvision name"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise OptionError(
            f"--model {spec}: {module_name} has no function {attribute!r}; pass "
            "package.module:function"
        )
    try:
        inspect.signature(factory).bind(num_classes=num_classes)
    except (TypeError, ValueError):
        raise OptionError(
            f"--model {spec}: {attribute} must accept num_classes= (the number of classes "
            "in the data)"
        ) from None
    try:
        model = factory(num_classes=num_classes)
    except Exception as exc:  # the user's code: any failure is theirs to fix, in one line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise OptionError(
            f"--model {spec}: {attribute}(num_classes={num_classes}) raised "
            f"{type(exc).__name__}: {first}; fix the factory or pass a torchvision name"
        ) from None
    if not isinstance(model, nn.Module):
        raise OptionError(
            f"--model {spec}: {attribute}(num_classes={num_classes}) returned "
            f"{type(model).__name__}, not a torch.nn.Module classifier"
        )
    return model
