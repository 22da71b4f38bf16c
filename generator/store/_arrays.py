"""How the writer lays arrays out in zarr: codecs, creation, the arrays written once, growth.

The plan of arrays (``_schema.array_plan_of``) says what a store holds; this module turns
a plan into zarr arrays. Only the writer imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import zarr
import zarr.codecs

from generator.errors import StoreError
from generator.store._backends import StoreLocation
from generator.store._keys import KERNELS
from generator.store._schema import ArraySpec, dimension_names, written_once

GROW_EPOCHS = 16
# Blosc's block for kernels: zstd only reaches the entropy of float16 weights (their high
# bytes, sign and exponent, hold ~5.6 of 8 bits) when a block spans many of them.
KERNEL_BLOCK_BYTES = 1 << 20


def compressors(name: str) -> tuple[zarr.codecs.BloscCodec, zarr.codecs.Crc32cCodec]:
    """Blosc, then a CRC-32C of the compressed chunk, for the array at ``name``.

    Chosen by measurement (docs/store.md): lz4 level 1 with byte shuffle for activations and
    everything else, the fastest writer that still shrinks trained activations; zstd level 1
    in 1 MB blocks for kernels, where lz4 saves nothing on float16 weights and zstd stores
    85 % of them as fast (resnet18: 22.3 MB in 0.04 s). The checksum (4 bytes per chunk)
    makes a damaged chunk a read error instead of silently wrong pixels; every zarr reads it.
    """
    if name.startswith(f"{KERNELS}/"):
        blosc = zarr.codecs.BloscCodec(
            cname="zstd", clevel=1, shuffle="shuffle", blocksize=KERNEL_BLOCK_BYTES
        )
    else:
        blosc = zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
    return blosc, zarr.codecs.Crc32cCodec()


def per_epoch(plan: Mapping[str, ArraySpec]) -> dict[str, ArraySpec]:
    """The epoch-indexed arrays of a plan (what ``write_epoch`` grows and fills)."""
    return {name: spec for name, spec in plan.items() if not written_once(name)}


def create_arrays(group: zarr.Group, plan: Mapping[str, ArraySpec]) -> None:
    """Every epoch-indexed array of ``plan`` with zero epochs; ``write_epoch`` grows them."""
    for name, spec in per_epoch(plan).items():
        group.create_array(
            name,
            shape=(0, *spec.shape),
            chunks=(1, *spec.chunk),
            dtype=spec.dtype,
            dimension_names=dimension_names(name, spec),
            compressors=compressors(name),
            fill_value=0,
        )


def write_once(
    group: zarr.Group, plan: Mapping[str, ArraySpec], values: Mapping[str, np.ndarray]
) -> None:
    """Arrays written whole at creation (the probes, the example pool), each in its dtype,
    shape and chunks of ``plan``; a value of another shape is refused."""
    for name, value in values.items():
        spec = plan[name]
        data = np.ascontiguousarray(value, dtype=spec.dtype)
        if data.shape != spec.shape:
            raise StoreError(f"{name} must have shape {spec.shape}, got {data.shape}")
        group.create_array(
            name,
            data=data,
            chunks=spec.chunk,
            compressors=compressors(name),
            dimension_names=dimension_names(name, spec),
        )


def check_shape(
    path: StoreLocation, name: str, value: np.ndarray | float, shape: tuple[int, ...]
) -> None:
    if np.shape(value) != shape:
        raise StoreError(f"{path}: {name} has shape {np.shape(value)}, expected {shape}")


def grown_length(epoch: int) -> int:
    """Arrays grow in blocks of ``GROW_EPOCHS``: rewriting ~90 arrays' metadata for every
    epoch was a third of an epoch's store write. Readers go by ``epochs_committed``."""
    return (epoch // GROW_EPOCHS + 1) * GROW_EPOCHS
