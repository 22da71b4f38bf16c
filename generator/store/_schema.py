"""The run store's contract: versions, layer descriptions, array plan, attribute checks.

Everything that knows the store's shape imports this module and not the writer, so the
writer (``store``) and the reader (``reader``) never need each other. It is pure
description: no torch, no zarr, no file I/O; ``docs/store.md`` is its human copy.

Schema version 2 describes each recorded layer of any PyTorch model (``LayerSpec``): its
module path (``layer1.0.conv1``), kind, output shape, kernel shape with ``groups``, stride,
dilation and padding, parent block and receptive field. Version 1 stores (the reference CNN
only) are still read: their layer entries lack the new fields and get the defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

from generator.errors import StoreError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

PROBES, ACTIVATIONS, KERNELS, METRICS = "probes", "activations", "kernels", "metrics"
GROUPS = (PROBES, ACTIVATIONS, KERNELS, METRICS)
SCALAR_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
CONFUSION, PROBE_PROBS = "confusion", "probe_probs"
WEIGHT_CHANGE, CHANNEL_STATS = "weight_change", "channel_stats"
# Root attribute: any other scalar a user's loop passed, name -> one value per committed
# epoch (null where not passed); written in the same metadata write as epochs_committed.
EXTRA_METRICS = "extra_metrics"
# min/max give each frame's negative and positive colour scale; abs_max fixes a scale over
# epochs; mean and abs_mean feed the statistics pages. All per (epoch, probe, channel).
STAT_FIELDS = ("min", "max", "mean", "abs_mean", "abs_max")
ACTIVATION_DTYPES = ("float16", "float32")
# conv: output (C, H, W) and kernels (O, I / groups, kh, kw); linear: output (N,), no kernels;
# block: output (C, H, W) of a module holding several convs (a residual block), no kernels.
LAYER_KINDS = {"conv": 3, "linear": 1, "block": 3}
# Optional (schema v2): feature visualizations of some conv layers, described by the root
# attribute ``featviz`` (``FeatvizSpec``); stores without it have no ``featviz/`` arrays.
FEATVIZ = "featviz"
FEATVIZ_KINDS = ("conv", "block")  # layers with a (C, H, W) output a channel can drive
# Dataset examples (optional, schema v2): a fixed pool of images written once under
# ``example_pool/`` and, per conv layer and epoch, each channel's top-k pool images by the
# channel's maximum activation under ``examples/<layer>/``. The root attribute ``examples``
# ({"pool": N, "top_k": k, "sources": [...]}) says a store has them; stores without it
# (older ones, or ``--example-pool 0``) read and build as before.
EXAMPLES, EXAMPLE_POOL = "examples", "example_pool"
EXAMPLE_FIELDS = {"index": "int32", "position": "int32", "value": "float32"}

REQUIRED_ATTRS = (
    "schema_version",
    "class_names",
    "layers",
    "input_size",
    "epochs_committed",
    "activation_dtype",
)
# A layer's name becomes one folder name in the store (``array_key``): a file system allows
# 255 bytes, and zarr adds nothing to it.
MAX_KEY_LENGTH = 200
MAX_NAME_LENGTH = 200
# Characters kept as they are in an array key: zarr v3's portable node-name characters.
KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.-")
V1_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
MAX_SIZE = 2**31  # any one dimension


# -- layer names as store paths ---------------------------------------------------------------
def array_key(name: str) -> str:
    """A layer name as one zarr node name: the name itself when it is portable, else escaped.

    Module paths (``layer1.0.conv1``, ``features.3``) are kept as they are; any other
    character becomes ``%XX`` per UTF-8 byte (``%`` itself too, so the encoding is one to
    one), and so do a leading ``.`` (hidden files, ``..``) and the first ``_`` of a leading
    ``__`` (a prefix zarr v3 reserves). The name ``zarr.json`` would clash with a group's
    metadata file, so its dot is escaped. ``layer_name(array_key(n)) == n`` for every name.
    """
    parts = []
    for index, char in enumerate(name):
        leading = index == 0 and (char == "." or name.startswith("__"))
        if char in KEY_CHARACTERS and not leading:
            parts.append(char)
        else:
            parts.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    key = "".join(parts)
    return "zarr%2Ejson" if key == "zarr.json" else key


def layer_name(key: str) -> str:
    """The layer name an array key stands for (the inverse of ``array_key``)."""
    return unquote(key, errors="surrogatepass")


def file_stem(name: str) -> str:
    """A layer name as a file-name stem for the site (media folders, pages): the name
    itself when it is already a plain file name (``block1``, ``layer1.0.conv1``), else its
    safe characters plus a short hash of the whole name, so ``a/b`` and ``a-b`` never share
    a file and no name makes a sub-folder."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-")
    if stem == name:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{stem or 'layer'}-{digest}"


def activation_path(name: str) -> str:
    return f"{ACTIVATIONS}/{array_key(name)}"


def kernel_path(name: str) -> str:
    return f"{KERNELS}/{array_key(name)}"


def weight_change_path(name: str) -> str:
    return f"{METRICS}/{WEIGHT_CHANGE}/{array_key(name)}"


def channel_stat_path(name: str, stat: str) -> str:
    return f"{METRICS}/{CHANNEL_STATS}/{array_key(name)}/{stat}"


def featviz_path(name: str) -> str:
    """(E, C, S, S, 3) uint8: each visualised channel's image at each epoch."""
    return f"{FEATVIZ}/{array_key(name)}"


def metric_path(metric: str) -> str:
    return f"{METRICS}/{metric}"


def example_path(name: str, field: str) -> str:
    """``examples/<layer>/index|position|value``: one conv layer's top-k per epoch."""
    return f"{EXAMPLES}/{array_key(name)}/{field}"


def example_pool_path(name: str) -> str:
    """``example_pool/images`` or ``example_pool/labels``: written once, not per epoch."""
    return f"{EXAMPLE_POOL}/{name}"


def probe_path(name: str) -> str:
    """``images`` or ``labels``: the arrays written once, not per epoch."""
    return f"{PROBES}/{name}"


# -- layer descriptions ----------------------------------------------------------------------
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
        }

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
        )


# -- feature visualizations (optional) --------------------------------------------------------
@dataclass(frozen=True)
class FeatvizSpec:
    """Which channels have a feature visualization and how it was made: ``channels`` is
    layer name -> how many (the first N of the layer), in model order; images are
    ``size`` px square; ``first_steps`` from noise, then ``steps`` per epoch."""

    size: int
    channels: dict[str, int]
    steps: int
    first_steps: int
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "size": int(self.size),
            "layers": [{"name": n, "channels": int(c)} for n, c in self.channels.items()],
            "steps": int(self.steps),
            "first_steps": int(self.first_steps),
            "seed": int(self.seed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatvizSpec:
        """A ``featviz`` attribute checked first with ``featviz_problem``."""
        return cls(
            size=int(data["size"]),
            channels={str(item["name"]): int(item["channels"]) for item in data["layers"]},
            steps=int(data.get("steps", 0)),
            first_steps=int(data.get("first_steps", 0)),
            seed=int(data.get("seed", 0)),
        )


def featviz_problem(data: Any, layers: Any) -> str | None:
    """What is wrong with a ``featviz`` attribute given the stored ``layers``, or None."""
    if not isinstance(data, dict) or not _is_count(data.get("size"), 1):
        return "featviz is not an object with a size in pixels"
    items = data.get("layers")
    if not isinstance(items, list) or not items:
        return "featviz has no list of layers"
    kinds = {item.get("name"): item for item in layers if isinstance(item, dict)}
    for item in items:
        named = isinstance(item, dict) and isinstance(item.get("name"), str)
        entry = kinds.get(item["name"]) if named else None
        if entry is None or entry.get("kind") not in FEATVIZ_KINDS:
            return f"featviz names {short(item)}, not a recorded conv layer"
        if not _is_count(item.get("channels"), 1) or item["channels"] > entry["shape"][0]:
            return f"featviz has {short(item)}: channels is not a count up to the layer's"
    if len({item["name"] for item in items}) != len(items):
        return "featviz names a layer twice"
    for key in ("steps", "first_steps", "seed"):
        if not _is_count(data.get(key, 0), 0):
            return f"featviz {key} is not a count"
    return None


# -- the arrays -------------------------------------------------------------------------------
class ArraySpec(NamedTuple):
    """One array of the store: the shape of one epoch (or the whole array for the probes),
    the chunk of that shape, and the dtype."""

    shape: tuple[int, ...]
    chunk: tuple[int, ...]
    dtype: str


def array_plan(
    layers: Sequence[LayerSpec],
    n_probes: int,
    n_classes: int,
    activation_dtype: str,
    *,
    featviz: FeatvizSpec | None = None,
    example_top_k: int = 0,
) -> dict[str, ArraySpec]:
    """Every epoch-indexed array: path -> one epoch's shape, chunk and dtype.

    Activation chunks are one probe x all channels of a layer: one file per probe and
    layer per epoch, and a whole layer of one probe across epochs is E reads. A feature
    visualization is one chunk per layer and epoch (a layer's sheet is one read).
    ``example_top_k`` > 0 adds the dataset-example arrays (``example_plan``).
    """
    plan: dict[str, ArraySpec] = {}
    for layer in layers:
        per_epoch = (n_probes, *layer.shape)
        chunk = (1, *layer.shape) if len(layer.shape) == 3 else per_epoch
        plan[activation_path(layer.name)] = ArraySpec(per_epoch, chunk, activation_dtype)
        for stat in STAT_FIELDS:
            shape = (n_probes, layer.channels)
            plan[channel_stat_path(layer.name, stat)] = ArraySpec(shape, shape, "float32")
        if layer.kernel_shape is not None:
            kernel = layer.kernel_shape
            plan[kernel_path(layer.name)] = ArraySpec(kernel, kernel, "float32")
        if layer.params:
            plan[weight_change_path(layer.name)] = ArraySpec((), (), "float32")
    for name in SCALAR_METRICS:
        plan[metric_path(name)] = ArraySpec((), (), "float32")
    square = (n_classes, n_classes)
    plan[metric_path(CONFUSION)] = ArraySpec(square, square, "int64")
    probs = (n_probes, n_classes)
    plan[metric_path(PROBE_PROBS)] = ArraySpec(probs, probs, "float32")
    for name, channels in (featviz.channels if featviz else {}).items():
        image = (channels, featviz.size, featviz.size, 3)
        plan[featviz_path(name)] = ArraySpec(image, image, "uint8")
    if example_top_k:
        plan.update(example_plan(layers, example_top_k))
    return plan


def example_layers(layers: Sequence[LayerSpec]) -> list[LayerSpec]:
    """The layers dataset examples are kept for: every conv layer (one map per channel)."""
    return [layer for layer in layers if layer.is_conv]


def example_plan(layers: Sequence[LayerSpec], top_k: int) -> dict[str, ArraySpec]:
    """Per conv layer and epoch: the pool index (C, k), the (y, x) of the channel's
    maximum in its own map (C, k, 2) and that maximum (C, k), best first; one chunk."""
    plan: dict[str, ArraySpec] = {}
    for layer in example_layers(layers):
        for field, dtype in EXAMPLE_FIELDS.items():
            shape = (layer.channels, top_k, 2) if field == "position" else (layer.channels, top_k)
            plan[example_path(layer.name, field)] = ArraySpec(shape, shape, dtype)
    return plan


def example_pool_plan(n_pool: int, input_size: int) -> dict[str, ArraySpec]:
    """The example pool, written once: images (N, S, S, 3) uint8, in chunks of 64 images
    (one chunk per image would be hundreds of small files), and labels (N,)."""
    image = (input_size, input_size, 3)
    return {
        example_pool_path("images"): ArraySpec(
            (n_pool, *image), (min(n_pool, 64), *image), "uint8"
        ),
        example_pool_path("labels"): ArraySpec((n_pool,), (n_pool,), "int64"),
    }


@dataclass(frozen=True)
class ExampleSettings:
    """The ``examples`` root attribute: pool size, top-k kept and where each image came from."""

    pool: int
    top_k: int
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pool": int(self.pool), "top_k": int(self.top_k), "sources": list(self.sources)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExampleSettings:
        return cls(int(data["pool"]), int(data["top_k"]), tuple(data["sources"]))


def example_settings_problem(value: Any) -> str | None:
    """What is wrong with the ``examples`` root attribute, or None."""
    if not isinstance(value, dict):
        return "is not an object"
    pool, top_k, sources = value.get("pool"), value.get("top_k"), value.get("sources")
    if not (_is_count(pool, 1) and _is_count(top_k, 1) and top_k <= pool):
        return "needs a pool of at least 1 image and a top_k between 1 and the pool"
    if not (_is_str_list(sources) and len(sources) == pool):
        return "needs one source name per pool image"
    return None


def probe_plan(n_probes: int, input_size: int) -> dict[str, ArraySpec]:
    """The two arrays written once, not per epoch: the probe images and their labels."""
    image = (3, input_size, input_size)
    return {
        probe_path("images"): ArraySpec((n_probes, *image), (1, *image), "uint8"),
        probe_path("labels"): ArraySpec((n_probes,), (n_probes,), "int64"),
    }


# -- the root attributes ----------------------------------------------------------------------
@dataclass(frozen=True)
class RootAttrs:
    """The root attributes of a store, checked and typed (``parse_root_attrs``)."""

    schema_version: int
    class_names: tuple[str, ...]
    input_size: int
    layers: tuple[LayerSpec, ...]
    activation_dtype: str
    epochs_committed: int
    training: dict[str, Any]
    probe_sources: tuple[str, ...]
    stat_fields: tuple[str, ...]
    featviz: FeatvizSpec | None = None  # optional: feature visualizations recorded
    examples: ExampleSettings | None = None  # dataset examples, when the run kept them


def parse_root_attrs(store: Path | str, attrs: Any) -> RootAttrs:
    """The root attributes as ``RootAttrs``, or a one-line ``StoreError`` naming the store
    and what is wrong: missing, of a newer schema, or of the wrong type."""
    if not isinstance(attrs, dict):
        raise StoreError(f"{store}: not a netlapse run store (its attributes are not an object)")
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreError(f"{store}: not a netlapse run store (missing {', '.join(missing)})")
    version = attrs["schema_version"]
    if not _is_int(version) or version < 1:
        raise StoreError(
            f"{store}: schema_version {short(version)} is not a version number; "
            "the store is damaged"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{store}: schema_version {version} is newer than this netlapse "
            f"reads ({SCHEMA_VERSION}); upgrade netlapse"
        )
    problem = root_attrs_problem(attrs)
    if problem:
        raise StoreError(f"{store}: root attribute {problem}; the store is damaged")
    return RootAttrs(
        schema_version=version,
        class_names=tuple(attrs["class_names"]),
        input_size=attrs["input_size"],
        layers=tuple(LayerSpec.from_json(item) for item in attrs["layers"]),
        activation_dtype=attrs["activation_dtype"],
        epochs_committed=attrs["epochs_committed"],
        training=dict(attrs.get("training", {})),
        probe_sources=tuple(attrs.get("probe_sources", [])),
        stat_fields=tuple(attrs.get("stat_fields", STAT_FIELDS)),
        featviz=FeatvizSpec.from_json(attrs[FEATVIZ]) if attrs.get(FEATVIZ) else None,
        examples=ExampleSettings.from_json(attrs[EXAMPLES]) if EXAMPLES in attrs else None,
    )


def root_attrs_problem(attrs: Mapping[str, Any]) -> str | None:
    """What is wrong with the typed root attributes (version already checked), or None."""
    checks = (
        ("epochs_committed", _is_count(attrs["epochs_committed"], 0), "a count of epochs"),
        ("input_size", _is_count(attrs["input_size"], 1), "a positive number of pixels"),
        (
            "class_names",
            _is_str_list(attrs["class_names"]) and attrs["class_names"],
            "a list of class names",
        ),
        (
            "activation_dtype",
            attrs["activation_dtype"] in ACTIVATION_DTYPES,
            f"one of {', '.join(ACTIVATION_DTYPES)}",
        ),
        ("training", isinstance(attrs.get("training", {}), dict), "an object"),
        ("probe_sources", _is_str_list(attrs.get("probe_sources", [])), "a list of paths"),
        ("stat_fields", _is_str_list(attrs.get("stat_fields", [])), "a list of names"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"{key} is {short(attrs.get(key))}, not {expected}"
    problem = example_settings_problem(attrs[EXAMPLES]) if EXAMPLES in attrs else None
    if problem:
        return f"{EXAMPLES} {problem}"
    problem = layers_problem(attrs["layers"], version=attrs["schema_version"])
    if problem is None and attrs.get(FEATVIZ) is not None:
        problem = featviz_problem(attrs[FEATVIZ], attrs["layers"])
    return problem


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
    if not _dims(item.get("shape"), LAYER_KINDS[kind]):
        return "its shape does not fit its kind"
    kernel = item.get("kernel_shape")
    if (kernel is not None or kind == "conv") and not _dims(kernel, 4):
        return "its kernel_shape is not 4 positive sizes"
    if not _is_count(item.get("params", 0), 0):
        return "its params is not a count"
    if item.get("receptive_field") is not None and not _is_count(item["receptive_field"], 1):
        return "its receptive_field is not a number of pixels"
    return None if version < 2 else _v2_layer_problem(item)


def _v2_layer_problem(item: dict[str, Any]) -> str | None:
    """The fields version 2 added: present (possibly null) and of their types."""
    if "key" in item and item["key"] != array_key(item["name"]):
        return "its key is not the encoding of its name"
    for key in ("module", "module_type", "parent", "weights"):
        if not (item.get(key) is None or _is_text(item[key])):
            return f"its {key} is not a module path or null"
    if not _is_count(item.get("groups", 1), 1):
        return "its groups is not a positive count"
    for key in ("stride", "dilation"):
        if item.get(key) is not None and not _dims(item[key], 2):
            return f"its {key} is not 2 positive sizes"
    padding = item.get("padding")
    if padding is not None and not (
        isinstance(padding, list) and len(padding) == 2 and all(_is_count(p, 0) for p in padding)
    ):
        return "its padding is not 2 sizes"
    kernel = item.get("kernel_shape")
    if kernel and item.get("groups", 1) > 1 and kernel[0] % item["groups"]:
        return "its groups does not divide its output channels"
    return None


def _name_problem(name: Any, *, version: int) -> str | None:
    """Version 1 names were plain folder names; version 2 takes any module path, escaped."""
    if not isinstance(name, str) or not name:
        return "its name is not a text"
    if version < 2:
        ok = V1_LAYER_NAME.match(name) and array_key(name) == name
        return None if ok else "its name is not a plain name"
    if not _is_text(name) or len(name) > MAX_NAME_LENGTH:
        return f"its name is not a module path of at most {MAX_NAME_LENGTH} printable characters"
    if len(array_key(name)) > MAX_KEY_LENGTH:
        return f"its name is longer than {MAX_KEY_LENGTH} characters once escaped"
    return None


def check_layers(store: Path | str, layers: Sequence[LayerSpec]) -> None:
    """Refuse, before writing, layers a reader would refuse (names, shapes, repeats)."""
    problem = layers_problem([layer.to_json() for layer in layers], version=SCHEMA_VERSION)
    if problem:
        raise StoreError(f"{store}: cannot record these layers: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any, least: int) -> bool:
    return _is_int(value) and least <= value <= 2**53


def _is_text(value: Any) -> bool:
    """A string without control characters (it ends up in messages and on pages)."""
    return isinstance(value, str) and not any(
        unicodedata.category(char) in ("Cc", "Cs") for char in value
    )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _dims(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(_is_int(v) and 1 <= v <= MAX_SIZE for v in value)
    )


def short(value: Any, limit: int = 60) -> str:
    """A value in a message: its JSON, cut to fit one line."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
