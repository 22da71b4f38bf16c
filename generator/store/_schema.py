"""The run store's contract: versions, layer descriptions, root attributes, array plan.

Everything that knows the store's shape imports this module and not the writer, so the
writer (``_writer``) and the reader (``_reader``) never need each other. It is pure
description: no torch, no zarr, no file I/O; ``docs/store.md`` is its human copy.

The contract is kept in small modules and gathered here:

- ``_keys``: group, metric and statistic names, and a layer name as a key (``array_key``).
- ``_layers``: one recorded layer (``LayerSpec``) and the checks of its stored entry.
- ``_attrs``: the versions and the root attributes (``RootAttrs``, ``parse_root_attrs``),
  with the optional feature-visualization and dataset-example descriptions.
- here: the array plan, every array a store holds (``array_plan_of``), with the names of
  each array's axes (``ArraySpec.dims``, zarr v3 ``dimension_names``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from generator.store._attrs import (
    ACTIVATION_BYTES,
    ACTIVATION_DTYPES,
    FEATVIZ_KINDS,
    PROBE_SHAPE,
    READABLE_VERSIONS,
    REQUIRED_ATTRS,
    SCHEMA_VERSION,
    ExampleSettings,
    FeatvizSpec,
    RootAttrs,
    check_layers,
    input_size_of,
    parse_root_attrs,
)
from generator.store._checks import short
from generator.store._gradients import (
    GRADIENT_FIELDS,
    GRADIENTS,
    HISTOGRAM_KINDS,
    HISTOGRAMS,
    LAYER,
    GradientSpec,
    gradient_arrays,
    gradient_layers,
    gradient_path,
    histogram_layers,
    histogram_path,
)
from generator.store._keys import (
    ACTIVATIONS,
    CHANNEL_STATS,
    CONFUSION,
    EXAMPLE_FIELDS,
    EXAMPLE_POOL,
    EXAMPLES,
    EXTRA_METRICS,
    FEATVIZ,
    GROUPS,
    KERNELS,
    KEY_CHARACTERS,
    MAX_KEY_LENGTH,
    METRICS,
    PROBE_DISPLAY,
    PROBE_PROBS,
    PROBES,
    SCALAR_METRICS,
    STAT_FIELDS,
    WEIGHT_CHANGE,
    activation_path,
    array_key,
    channel_stat_path,
    channel_stats_path,
    example_path,
    example_pool_path,
    featviz_path,
    file_stem,
    kernel_path,
    layer_name,
    metric_path,
    probe_path,
    weight_change_path,
    written_once,
)
from generator.store._layers import LAYER_KINDS, MAX_NAME_LENGTH, LayerSpec, layers_problem

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DTYPES",
    "CHANNEL_STATS",
    "CONFUSION",
    "EXAMPLES",
    "EXAMPLE_FIELDS",
    "EXAMPLE_POOL",
    "EXTRA_METRICS",
    "FEATVIZ",
    "FEATVIZ_KINDS",
    "GRADIENTS",
    "GRADIENT_FIELDS",
    "HISTOGRAMS",
    "HISTOGRAM_KINDS",
    "GROUPS",
    "KERNELS",
    "KEY_CHARACTERS",
    "LAYER_KINDS",
    "MAX_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "METRICS",
    "PROBES",
    "PROBE_DISPLAY",
    "PROBE_PROBS",
    "PROBE_SHAPE",
    "READABLE_VERSIONS",
    "REQUIRED_ATTRS",
    "SCALAR_METRICS",
    "SCHEMA_VERSION",
    "STACKED_FROM",
    "STAT_FIELDS",
    "WEIGHT_CHANGE",
    "ArraySpec",
    "CHANNEL",
    "EPOCH",
    "IN_CHANNEL",
    "PROBE",
    "RGB",
    "X",
    "Y",
    "ExampleSettings",
    "FeatvizSpec",
    "GradientSpec",
    "LayerSpec",
    "RootAttrs",
    "activation_path",
    "array_key",
    "array_plan",
    "array_plan_of",
    "channel_stat_path",
    "channel_stats_path",
    "check_layers",
    "example_layers",
    "example_path",
    "example_plan",
    "example_pool_path",
    "example_pool_plan",
    "featviz_path",
    "gradient_layers",
    "gradient_path",
    "histogram_layers",
    "histogram_path",
    "dimension_names",
    "has_display",
    "input_size_of",
    "file_stem",
    "kernel_path",
    "layer_name",
    "map_dims",
    "layers_problem",
    "metric_path",
    "parse_root_attrs",
    "probe_path",
    "probe_plan",
    "short",
    "weight_change_path",
    "written_once",
]


# -- the arrays -------------------------------------------------------------------------------
# Axis names every array carries as zarr v3 ``dimension_names`` (xarray labels its arrays
# with them); the same quantity has the same name in every array, so a layer's activations,
# its channel statistics and its kernels line up by ``channel``. Others used below: ``class``
# and ``true_class`` (confusion rows), ``ky``/``kx`` (a kernel's window), ``rank``
# (top-k, best first), ``yx`` (a position's two coordinates), ``image`` (the example pool).
# ``in_channel`` is the input's channels: a probe's, and a first conv kernel's input axis.
EPOCH, PROBE, CHANNEL, Y, X = "epoch", "probe", "channel", "y", "x"
IN_CHANNEL, RGB = "in_channel", "rgb"
STAT = "stat"  # v5 channel statistics: the STAT_FIELDS, in their order
STACKED_FROM = 5  # the first schema version whose per-layer statistics are stacked
# An activation chunk's size: a build reads one probe's chunk, so a chunk of 1 MB keeps
# that read cheap while a small layer's 8 probes share one file (a file costs the write
# about 1 ms whatever its size)
ACTIVATION_CHUNK_BYTES = 1 << 20


class ArraySpec(NamedTuple):
    """One array of the store: the shape of one epoch (or the whole array for the probes),
    the chunk of that shape, the dtype, and the names of the axes of ``shape`` (``dims``;
    ``dimension_names`` adds ``epoch`` in front of an epoch-indexed array's)."""

    shape: tuple[int, ...]
    chunk: tuple[int, ...]
    dtype: str
    dims: tuple[str, ...] | None = None


def probes_per_chunk(shape: Sequence[int], n_probes: int, dtype: str) -> int:
    """How many probes one activation chunk holds: as many as fit in
    ``ACTIVATION_CHUNK_BYTES``, at least one, at most all."""
    per_probe = math.prod(shape) * ACTIVATION_BYTES[dtype]
    return max(1, min(n_probes, ACTIVATION_CHUNK_BYTES // max(per_probe, 1)))


def dimension_names(path: str, spec: ArraySpec) -> tuple[str, ...] | None:
    """The zarr v3 ``dimension_names`` of the array at ``path``: ``spec.dims``, after
    ``epoch`` unless the array is written once. None (unnamed) only for a spec without
    names; a count that does not match the shape is a programming error, refused here
    rather than written into every store."""
    if spec.dims is None:
        return None
    if len(spec.dims) != len(spec.shape):
        raise ValueError(f"{path}: axis names {spec.dims} do not fit shape {spec.shape}")
    return spec.dims if written_once(path) else (EPOCH, *spec.dims)


def map_dims(shape: Sequence[int]) -> tuple[str, ...]:
    """Axis names of one probe's output of a layer: (channel, y, x) for a (C, H, W) map,
    (channel,) for a vector (a linear layer's units count as channels)."""
    return (CHANNEL, Y, X) if len(shape) == 3 else (CHANNEL,)


def array_plan(
    layers: Sequence[LayerSpec],
    n_probes: int,
    n_classes: int,
    activation_dtype: str,
    *,
    featviz: FeatvizSpec | None = None,
    example_top_k: int = 0,
    kernel_dtype: str = "float32",
    version: int = SCHEMA_VERSION,
) -> dict[str, ArraySpec]:
    """Every epoch-indexed array: path -> one epoch's shape, chunk, dtype and axis names.

    Activation chunks hold all channels of a layer for as many probes as fit in
    ``ACTIVATION_CHUNK_BYTES`` (at least one): a whole layer of one probe across epochs is
    E reads, and a small layer's probes are one file an epoch, not one each (a resnet18 at
    32 px wrote 225 activation files an epoch, most of its write time). A feature
    visualization is one chunk per layer and epoch (a layer's sheet is one read).
    ``example_top_k`` > 0 adds the dataset-example arrays (``example_plan``). ``version``:
    the layout of the per-layer statistics (``layer_metric_plan``).
    """
    plan: dict[str, ArraySpec] = {}
    kernel_dims = (CHANNEL, IN_CHANNEL, "ky", "kx")
    for layer in layers:
        per_epoch = (n_probes, *layer.shape)
        chunk = (probes_per_chunk(layer.shape, n_probes, activation_dtype), *layer.shape)
        dims = (PROBE, *map_dims(layer.shape))
        plan[activation_path(layer.name)] = ArraySpec(per_epoch, chunk, activation_dtype, dims)
        if layer.kernel_shape is not None:
            kernel = layer.kernel_shape
            plan[kernel_path(layer.name)] = ArraySpec(kernel, kernel, kernel_dtype, kernel_dims)
    plan.update(layer_metric_plan(layers, n_probes, version=version))
    for name in SCALAR_METRICS:
        plan[metric_path(name)] = ArraySpec((), (), "float32", ())
    square = (n_classes, n_classes)
    plan[metric_path(CONFUSION)] = ArraySpec(square, square, "int64", ("true_class", "class"))
    probs = (n_probes, n_classes)
    plan[metric_path(PROBE_PROBS)] = ArraySpec(probs, probs, "float32", (PROBE, "class"))
    if featviz is not None:
        plan.update(featviz_plan(featviz))
    if example_top_k:
        plan.update(example_plan(layers, example_top_k))
    return plan


def layer_metric_plan(
    layers: Sequence[LayerSpec], n_probes: int, *, version: int
) -> dict[str, ArraySpec]:
    """Per-layer statistics and weight changes. From v5 (``STACKED_FROM``) each layer's
    ``STAT_FIELDS`` are one (stat, probe, channel) array and the weight changes one array
    over the layers with parameters: an epoch is then ~60 array writes for a resnet18, not
    ~230, and each write costs about as much as its bytes (bench/record.py --cost)."""
    plan: dict[str, ArraySpec] = {}
    stacked = version >= STACKED_FROM
    for layer in layers:
        shape = (n_probes, layer.channels)
        if stacked:
            stats = (len(STAT_FIELDS), *shape)
            dims = (STAT, PROBE, CHANNEL)
            plan[channel_stats_path(layer.name)] = ArraySpec(stats, stats, "float32", dims)
            continue
        for stat in STAT_FIELDS:
            path = channel_stat_path(layer.name, stat)
            plan[path] = ArraySpec(shape, shape, "float32", (PROBE, CHANNEL))
        if layer.params:
            plan[weight_change_path(layer.name)] = ArraySpec((), (), "float32", ())
    changed = len(gradient_layers(layers))
    if stacked and changed:
        plan[metric_path(WEIGHT_CHANGE)] = ArraySpec((changed,), (changed,), "float32", (LAYER,))
    return plan


def featviz_plan(featviz: FeatvizSpec) -> dict[str, ArraySpec]:
    """Per visualised layer and epoch: (C, S, S, 3) uint8 images, one chunk (a layer's
    sheet is one read)."""
    plan: dict[str, ArraySpec] = {}
    for name, channels in featviz.channels.items():
        image = (channels, featviz.size, featviz.size, 3)
        plan[featviz_path(name)] = ArraySpec(image, image, "uint8", (CHANNEL, Y, X, RGB))
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
            dims = (CHANNEL, "rank", "yx")[: len(shape)]
            plan[example_path(layer.name, field)] = ArraySpec(shape, shape, dtype, dims)
    return plan


def example_pool_plan(n_pool: int, input_shape: Sequence[int]) -> dict[str, ArraySpec]:
    """The example pool, written once: images (N, H, W, C) uint8 (the probes' shape, colour
    last), in chunks of 64 images (one chunk per image would be hundreds of small files),
    and labels (N,)."""
    channels, height, width = input_shape
    image = (height, width, channels)
    return {
        example_pool_path("images"): ArraySpec(
            (n_pool, *image), (min(n_pool, 64), *image), "uint8", ("image", Y, X, IN_CHANNEL)
        ),
        example_pool_path("labels"): ArraySpec((n_pool,), (n_pool,), "int64", ("image",)),
    }


def has_display(input_shape: Sequence[int]) -> bool:
    """Whether probes of ``input_shape`` (C, H, W) keep a ``probes/display`` array: only
    when C is neither grey (1) nor RGB (3), which show as they are."""
    return input_shape[0] not in (1, 3)


def probe_plan(n_probes: int, input_shape: Sequence[int]) -> dict[str, ArraySpec]:
    """The arrays written once, not per epoch: the probe images (P, C, H, W) as the model
    saw them, their labels and, for C other than 1 and 3, the RGB pictures to show
    (P, 3, H, W), mapped at record time (the builder runs in another process)."""
    image = tuple(int(v) for v in input_shape)
    plan = {
        probe_path("images"): ArraySpec(
            (n_probes, *image), (1, *image), "uint8", (PROBE, IN_CHANNEL, Y, X)
        ),
        probe_path("labels"): ArraySpec((n_probes,), (n_probes,), "int64", (PROBE,)),
    }
    if has_display(image):
        shown = (3, *image[1:])
        plan[probe_path(PROBE_DISPLAY)] = ArraySpec(
            (n_probes, *shown), (1, *shown), "uint8", (PROBE, RGB, Y, X)
        )
    return plan


def array_plan_of(attrs: RootAttrs, probes: int) -> dict[str, ArraySpec]:
    """Every array of the store described by ``attrs`` with ``probes`` probe images: the
    ones written once (``written_once``: the probes, the example pool) with their whole
    shape, then the epoch-indexed ones with the shape of one epoch. The writer creates and
    grows exactly these; the reader checks exactly these."""
    examples = attrs.examples
    pool = example_pool_plan(examples.pool, attrs.input_shape) if examples else {}
    per_epoch = array_plan(
        attrs.layers,
        probes,
        len(attrs.class_names),
        attrs.activation_dtype,
        featviz=attrs.featviz,
        example_top_k=examples.top_k if examples else 0,
        kernel_dtype=attrs.kernel_dtype,
        version=attrs.schema_version,
    )
    if attrs.gradients is not None:  # one chunk per epoch: the layers stacked
        arrays = gradient_arrays(attrs.layers, attrs.gradients)
        per_epoch.update((p, ArraySpec(s, s, d, dims)) for p, (s, d, dims) in arrays.items())
    return {**probe_plan(probes, attrs.input_shape), **pool, **per_epoch}
