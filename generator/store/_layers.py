"""One recorded layer: its description (``LayerSpec``) and the checks of its stored entry.

Schema version 2 describes each recorded layer of any PyTorch model: its module path
(``layer1.0.conv1``), kind, output shape, kernel shape with ``groups``, stride, dilation and
padding, parent block and receptive field. Version 1 stores (the reference CNN only) are
still read: their layer entries lack the new fields and get the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from generator.store._checks import dims, is_count, is_text, short
from generator.store._keys import MAX_KEY_LENGTH, array_key

# conv: output (C, H, W) and kernels (O, I / groups, kh, kw); linear: output (N,), no kernels;
# block: output (C, H, W) of a module holding several convs (a residual block), no kernels.
LAYER_KINDS = {"conv": 3, "linear": 1, "block": 3}
MAX_NAME_LENGTH = 200
# How a layer's module gave its output before the capture stored it as (C, H, W):
# channels-first already, channels-last (N, H, W, C) (swin stages, convnext's permuted
# LayerNorm), or tokens (N, T, D) laid on the patch grid with ``extra_tokens`` left out.
LAYOUTS = ("channels_first", "channels_last", "tokens")
MAX_EXTRA_TOKENS = 8
V1_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class LayerSpec:
    """One recorded layer of any model: what its output and its kernel look like.

    ``name`` is the layer's name in the store (its module path for any model but the
    reference CNN, which keeps ``block1``, ``hidden``, ``logits``). ``shape`` is one probe's
    output: (C, H, W) for ``conv`` and (N,) for ``linear``. ``kernel_shape`` is the conv
    weight, (O, I / groups, kh, kw): a depthwise conv has I = 1. The fields after ``module``
    are new in schema version 2; a version-1 store reads them as None (unknown) or 1.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    kernel_shape: tuple[int, ...] | None = None
    params: int = 0
    receptive_field: int | None = None  # side in input pixels of the square region seen
    _: KW_ONLY
    module: str | None = None  # path of the recorded module in its model, e.g. "head.hidden"
    module_type: str | None = None  # its class, e.g. "Conv2d", "ConvBlock"
    parent: str | None = None  # path of the enclosing module; "" = the model itself
    weights: str | None = None  # path of the Conv2d / Linear that holds the kernel
    groups: int = 1
    stride: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None  # top/left; "same" with an even kernel pads more
    # Optional (absent = the defaults, so older stores read unchanged): how the module gave
    # its output (``LAYOUTS``), and for tokens how many (class, register) tokens came
    # before the patch grid and are not stored.
    layout: str = "channels_first"
    extra_tokens: int = 0
    # The most class/register tokens a token map may leave out (the recorder's search too).
    MAX_EXTRA_TOKENS: ClassVar[int] = MAX_EXTRA_TOKENS

    @property
    def is_conv(self) -> bool:
        return self.kind == "conv"

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def key(self) -> str:
        """This layer's folder name under ``activations/`` and the other groups."""
        return array_key(self.name)

    def to_json(self) -> dict[str, Any]:
        """The version-2 layer entry of the root attributes (``key`` is for other readers)."""

        def listed(value: tuple[int, ...] | None) -> list[int] | None:
            return None if value is None else [int(v) for v in value]

        return {
            "name": self.name,
            "key": self.key,
            "kind": self.kind,
            "shape": listed(self.shape),
            "kernel_shape": listed(self.kernel_shape),
            "params": int(self.params),
            "receptive_field": self.receptive_field,
            "module": self.module,
            "module_type": self.module_type,
            "parent": self.parent,
            "weights": self.weights,
            "groups": int(self.groups),
            "stride": listed(self.stride),
            "dilation": listed(self.dilation),
            "padding": listed(self.padding),
        } | self._layout_json()

    def _layout_json(self) -> dict[str, Any]:
        """The optional layout fields, written only where they differ from the defaults so
        a CNN's entry is byte for byte what it was before they existed."""
        extra: dict[str, Any] = {}
        if self.layout != "channels_first":
            extra["layout"] = self.layout
        if self.extra_tokens:
            extra["extra_tokens"] = int(self.extra_tokens)
        return extra

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerSpec:
        """A layer entry of either version (checked first with ``layer_problem``)."""

        def pair(key: str) -> tuple[int, int] | None:
            value = data.get(key)
            return None if value is None else (int(value[0]), int(value[1]))

        kernel = data.get("kernel_shape")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            shape=tuple(int(s) for s in data["shape"]),
            kernel_shape=tuple(int(s) for s in kernel) if kernel else None,
            params=int(data.get("params", 0)),
            receptive_field=data.get("receptive_field"),
            module=data.get("module"),
            module_type=data.get("module_type"),
            parent=data.get("parent"),
            weights=data.get("weights"),
            groups=int(data.get("groups", 1)),
            stride=pair("stride"),
            dilation=pair("dilation"),
            padding=pair("padding"),
            layout=str(data.get("layout", "channels_first")),
            extra_tokens=int(data.get("extra_tokens", 0)),
        )


def layers_problem(layers: Any, *, version: int) -> str | None:
    """What is wrong with the ``layers`` attribute of a store of ``version``, or None."""
    if not isinstance(layers, list) or not layers:
        return f"layers is {short(layers)}, not a list of layers"
    for item in layers:
        problem = layer_problem(item, version=version)
        if problem:
            return f"layers has {short(item)}: {problem}"
    keys = [array_key(item["name"]) for item in layers]
    if len(set(keys)) != len(keys):
        return "layers has a repeated layer name"
    return None


def layer_problem(item: Any, *, version: int) -> str | None:
    """What is wrong with one stored layer entry of a store of ``version``, or None."""
    if not isinstance(item, dict):
        return "not an object"
    name, kind = item.get("name"), item.get("kind")
    problem = _name_problem(name, version=version)
    if problem:
        return problem
    if not isinstance(kind, str) or kind not in LAYER_KINDS:
        return f"its kind is not {' or '.join(LAYER_KINDS)}"
    if not dims(item.get("shape"), LAYER_KINDS[kind]):
        return "its shape does not fit its kind"
    kernel = item.get("kernel_shape")
    if (kernel is not None or kind == "conv") and not dims(kernel, 4):
        return "its kernel_shape is not 4 positive sizes"
    if not is_count(item.get("params", 0), 0):
        return "its params is not a count"
    if item.get("receptive_field") is not None and not is_count(item["receptive_field"], 1):
        return "its receptive_field is not a number of pixels"
    return None if version < 2 else _v2_layer_problem(item)


def _v2_layer_problem(item: dict[str, Any]) -> str | None:
    """The fields version 2 added: present (possibly null) and of their types."""
    if "key" in item and item["key"] != array_key(item["name"]):
        return "its key is not the encoding of its name"
    for key in ("module", "module_type", "parent", "weights"):
        if not (item.get(key) is None or is_text(item[key])):
            return f"its {key} is not a module path or null"
    if not is_count(item.get("groups", 1), 1):
        return "its groups is not a positive count"
    for key in ("stride", "dilation"):
        if item.get(key) is not None and not dims(item[key], 2):
            return f"its {key} is not 2 positive sizes"
    padding = item.get("padding")
    if padding is not None and not (
        isinstance(padding, list) and len(padding) == 2 and all(is_count(p, 0) for p in padding)
    ):
        return "its padding is not 2 sizes"
    kernel = item.get("kernel_shape")
    if kernel and item.get("groups", 1) > 1 and kernel[0] % item["groups"]:
        return "its groups does not divide its output channels"
    return _layout_problem(item)


def _layout_problem(item: dict[str, Any]) -> str | None:
    """The optional layout fields: a known layout, and extra tokens only for tokens."""
    layout = item.get("layout", "channels_first")
    if layout not in LAYOUTS:
        return f"its layout is not {' or '.join(LAYOUTS)}"
    extra = item.get("extra_tokens", 0)
    if not is_count(extra, 0) or extra > MAX_EXTRA_TOKENS:
        return f"its extra_tokens is not a count of at most {MAX_EXTRA_TOKENS}"
    if extra and layout != "tokens":
        return "it has extra_tokens but its layout is not tokens"
    return None


def _name_problem(name: Any, *, version: int) -> str | None:
    """Version 1 names were plain folder names; version 2 takes any module path, escaped."""
    if not isinstance(name, str) or not name:
        return "its name is not a text"
    if version < 2:
        ok = V1_LAYER_NAME.match(name) and array_key(name) == name
        return None if ok else "its name is not a plain name"
    if not is_text(name) or len(name) > MAX_NAME_LENGTH:
        return f"its name is not a module path of at most {MAX_NAME_LENGTH} printable characters"
    if len(array_key(name)) > MAX_KEY_LENGTH:
        return f"its name is longer than {MAX_KEY_LENGTH} characters once escaped"
    return None
