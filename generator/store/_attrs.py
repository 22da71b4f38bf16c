"""The root attributes of a store: the one typed description of a run (``RootAttrs``).

The writer builds a ``RootAttrs`` and writes ``to_json()`` as the zarr root attributes; the
reader parses them back with ``parse_root_attrs``, which checks every value first, so a
damaged store fails with one line. The optional parts (feature visualizations, dataset
examples) have their own small descriptions here too. Pure description: no zarr.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generator.errors import StoreError
from generator.store._checks import is_count, is_int, is_str_list, is_text, short
from generator.store._gradients import GRADIENTS, GradientSpec, gradient_spec_problem
from generator.store._keys import (
    BUDGET,
    EXAMPLES,
    EXTRA_METRICS,
    FEATVIZ,
    FEATVIZ_SKIPPED,
    KERNEL_DTYPE,
    STAT_FIELDS,
)
from generator.store._layers import LayerSpec, layers_problem

if TYPE_CHECKING:  # only named in messages; the schema imports no I/O
    from generator.store._backends import StoreLocation

# v4: gradients and distributions (optional arrays, ``_gradients``); v5: per-epoch scalars
# and statistics stacked over layers (``STACKED_FROM``)
SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
PROBE_SHAPE = "probe_shape"  # v3: the probes' (channels, height, width)
ACTIVATION_BYTES = {"float16": 2, "float32": 4}  # the activation dtypes, bytes per value
ACTIVATION_DTYPES = tuple(ACTIVATION_BYTES)
FEATVIZ_KINDS = ("conv", "block")  # layers with a (C, H, W) output a channel can drive
REQUIRED_ATTRS = (
    "schema_version",
    "class_names",
    "layers",
    "input_size",
    "epochs_committed",
    "activation_dtype",
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
    if not isinstance(data, dict) or not is_count(data.get("size"), 1):
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
        if not is_count(item.get("channels"), 1) or item["channels"] > entry["shape"][0]:
            return f"featviz has {short(item)}: channels is not a count up to the layer's"
    if len({item["name"] for item in items}) != len(items):
        return "featviz names a layer twice"
    for key in ("steps", "first_steps", "seed"):
        if not is_count(data.get(key, 0), 0):
            return f"featviz {key} is not a count"
    return None


# -- dataset examples (optional) -------------------------------------------------------------
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
    pool, top_k = value.get("pool", 0), value.get("top_k", 0)
    sources = value.get("sources", [])
    if not (is_count(pool, 1) and is_count(top_k, 1) and top_k <= pool):
        return "needs a pool of at least 1 image and a top_k between 1 and the pool"
    if not (is_str_list(sources) and len(sources) == pool):
        return "needs one source name per pool image"
    return None


# -- the root attributes ----------------------------------------------------------------------
@dataclass(frozen=True)
class RootAttrs:
    """The root attributes of a store, checked and typed (``parse_root_attrs``).

    ``epochs_committed`` is the store's own count; a reader clipped to fewer epochs
    (``open_run(epochs=N)``) says so in its ``epochs``. ``run_id`` binds a run's
    checkpoints to it (None: made before run ids); ``extra_metrics`` is name -> one value
    per committed epoch of any other scalar the loop passed (None: no epoch committed yet).
    """

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
    run_id: str | None = None
    extra_metrics: dict[str, list[float | None]] | None = None
    probe_shape: tuple[int, int, int] | None = None  # (C, H, W); None: (3, S, S), S = input_size
    kernel_dtype: str = "float32"  # how kernels are stored (stores before it: float32)
    featviz_skipped: dict[str, str] | None = None  # layer -> why it has no visualization
    budget: dict[str, Any] | None = None  # the overhead budget and what it left out per epoch
    gradients: GradientSpec | None = None  # v4: gradients and histograms recorded

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The probes' (channels, height, width): stores before v3 held square RGB only."""
        if self.probe_shape is not None:
            return self.probe_shape
        return (3, self.input_size, self.input_size)

    @property
    def conv_layers(self) -> tuple[LayerSpec, ...]:
        return tuple(layer for layer in self.layers if layer.is_conv)

    def to_json(self) -> dict[str, Any]:
        """The root attributes as written, keys in the order stores have always had them;
        the optional ones only when present, so a store reads back as it was written."""
        attrs: dict[str, Any] = {
            "schema_version": self.schema_version,
            "class_names": list(self.class_names),
            "input_size": self.input_size,
            "layers": [layer.to_json() for layer in self.layers],
            "training": dict(self.training),
            "activation_dtype": self.activation_dtype,
            "probe_sources": list(self.probe_sources),
            "stat_fields": list(self.stat_fields),
            "epochs_committed": self.epochs_committed,
        }
        optional = {
            "run_id": self.run_id,
            PROBE_SHAPE: list(self.probe_shape) if self.probe_shape else None,
            KERNEL_DTYPE: None if self.kernel_dtype == "float32" else self.kernel_dtype,
            FEATVIZ_SKIPPED: self.featviz_skipped,
            BUDGET: self.budget,
            FEATVIZ: self.featviz.to_json() if self.featviz else None,
            EXAMPLES: self.examples.to_json() if self.examples else None,
            GRADIENTS: self.gradients.to_json() if self.gradients else None,
            EXTRA_METRICS: self.extra_metrics,
        }
        attrs.update((key, value) for key, value in optional.items() if value is not None)
        return attrs


def parse_root_attrs(store: StoreLocation | str, attrs: Any) -> RootAttrs:
    """The root attributes as ``RootAttrs``, or a one-line ``StoreError`` naming the store
    and what is wrong: missing, of a newer schema, or of the wrong type."""
    if not isinstance(attrs, dict):
        raise StoreError(f"{store}: not a netlapse run store (its attributes are not an object)")
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreError(f"{store}: not a netlapse run store (missing {', '.join(missing)})")
    version = attrs["schema_version"]
    if not is_int(version) or version < 1:
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
        run_id=attrs.get("run_id"),
        extra_metrics=_extra_metrics(attrs.get(EXTRA_METRICS)),
        probe_shape=_probe_shape(attrs.get(PROBE_SHAPE)),
        kernel_dtype=attrs.get(KERNEL_DTYPE, "float32"),
        featviz_skipped=attrs.get(FEATVIZ_SKIPPED),
        budget=attrs.get(BUDGET),
        gradients=GradientSpec.from_json(attrs[GRADIENTS]) if GRADIENTS in attrs else None,
    )


def _probe_shape(value: Sequence[int] | None) -> tuple[int, int, int] | None:
    """The stored ``probe_shape`` (checked first) as a tuple, None when absent."""
    return None if value is None else (int(value[0]), int(value[1]), int(value[2]))


def input_size_of(shape: Sequence[int]) -> int:
    """``input_size`` of probes of ``shape`` (C, H, W): the side of a square input, the
    larger side of another, so readers of the attribute alone still get a bound."""
    return int(max(shape[-2:]))


def probe_shape_problem(value: Any, input_size: Any) -> str | None:
    """What is wrong with a ``probe_shape`` attribute given ``input_size``, or None."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 3 and all(is_count(v, 1) for v in value)):
        return f"{PROBE_SHAPE} is {short(value)}, not [channels, height, width]"
    if is_int(input_size) and input_size_of(value) != input_size:
        return f"{PROBE_SHAPE} {short(value)} does not match input_size {short(input_size)}"
    return None


def _extra_metrics(value: Mapping[str, Any] | None) -> dict[str, list[float | None]] | None:
    return None if value is None else {str(k): list(v) for k, v in value.items()}


def root_attrs_problem(attrs: Mapping[str, Any]) -> str | None:
    """What is wrong with the typed root attributes (version already checked), or None."""
    checks = (
        ("epochs_committed", is_count(attrs["epochs_committed"], 0), "a count of epochs"),
        ("input_size", is_count(attrs["input_size"], 1), "a positive number of pixels"),
        (
            "class_names",
            is_str_list(attrs["class_names"]) and attrs["class_names"],
            "a list of class names",
        ),
        (
            "activation_dtype",
            attrs["activation_dtype"] in ACTIVATION_DTYPES,
            f"one of {', '.join(ACTIVATION_DTYPES)}",
        ),
        ("training", isinstance(attrs.get("training", {}), dict), "an object"),
        ("probe_sources", is_str_list(attrs.get("probe_sources", [])), "a list of paths"),
        ("stat_fields", is_str_list(attrs.get("stat_fields", [])), "a list of names"),
        ("run_id", attrs.get("run_id") is None or is_text(attrs["run_id"]), "a run id"),
        (EXTRA_METRICS, _is_series_map(attrs.get(EXTRA_METRICS, {})), "an object of lists"),
        (
            KERNEL_DTYPE,
            attrs.get(KERNEL_DTYPE, "float32") in ACTIVATION_DTYPES,
            f"one of {', '.join(ACTIVATION_DTYPES)}",
        ),
        (FEATVIZ_SKIPPED, _is_text_map(attrs.get(FEATVIZ_SKIPPED, {})), "an object of texts"),
        (BUDGET, isinstance(attrs.get(BUDGET, {}), dict), "an object"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"{key} is {short(attrs.get(key))}, not {expected}"
    problem = probe_shape_problem(attrs.get(PROBE_SHAPE), attrs["input_size"])
    if problem:
        return problem
    problem = example_settings_problem(attrs[EXAMPLES]) if EXAMPLES in attrs else None
    if problem:
        return f"{EXAMPLES} {problem}"
    problem = gradient_spec_problem(attrs[GRADIENTS]) if GRADIENTS in attrs else None
    if problem:
        return f"{GRADIENTS} {problem}"
    problem = layers_problem(attrs["layers"], version=attrs["schema_version"])
    if problem is None and attrs.get(FEATVIZ) is not None:
        problem = featviz_problem(attrs[FEATVIZ], attrs["layers"])
    return problem


def _is_text_map(value: Any) -> bool:
    """name -> text: the shape of ``featviz_skipped``."""
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_series_map(value: Any) -> bool:
    """name -> list: the shape of ``extra_metrics``."""
    return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())


def check_layers(store: StoreLocation | str, layers: Sequence[LayerSpec]) -> None:
    """Refuse, before writing, layers a reader would refuse (names, shapes, repeats)."""
    problem = layers_problem([layer.to_json() for layer in layers], version=SCHEMA_VERSION)
    if problem:
        raise StoreError(f"{store}: cannot record these layers: {problem}")
