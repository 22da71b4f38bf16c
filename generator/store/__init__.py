"""The run store: one chunked zarr v3 store per training run, its schema and its two sides.

This is the store's public face; every other stage imports from here and never from the
private modules behind it:

- ``_schema``: the contract, gathered from ``_keys`` (names, a layer name as a key),
  ``_layers`` (``LayerSpec``), ``_attrs`` (versions, ``RootAttrs``: the one typed
  description of a run) and ``_checks`` (value checks), plus the array plan
  (``array_plan_of``). Pure description, no zarr; ``docs/store.md`` is its human copy.
- ``_backends``: where a store lives, a local folder or an object-storage URL
  (``StoreLocation``, ``StoreURL``, ``store_location``), and the one place that opens a URL.
- ``_files``: what both sides check before zarr reads a folder (special files, the root
  document, chunk headers).
- ``_writer``: the one writer (``StoreWriter``), one committed epoch at a time, with its
  collaborators ``_records`` (``EpochRecord``, ``ExamplePoolRecord``), ``_staging``
  (creating a store safely), ``_locks`` (one writer per store) and ``_arrays`` (zarr
  arrays from the plan).
- ``_reader``: the reader (``open_run``, ``RunReader``), clipped to the committed epochs
  (or fewer: ``open_run(..., epochs=N)``); ``run.attrs`` is the run's ``RootAttrs``.

The writer and the reader import zarr; they are loaded on first use (``__getattr__``), so
the model, the config and the CLI's ``--help`` import this package without zarr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from generator.store._backends import (
    StoreLocation,
    StoreURL,
    is_url,
    parse_storage_option,
    store_location,
    total_size,
    use_storage_options,
)
from generator.store._schema import (
    ACTIVATION_DTYPES,
    FEATVIZ_KINDS,
    GRADIENT_FIELDS,
    HISTOGRAM_KINDS,
    READABLE_VERSIONS,
    SCALAR_METRICS,
    SCHEMA_VERSION,
    STAT_FIELDS,
    FeatvizSpec,
    GradientSpec,
    LayerSpec,
    RootAttrs,
    example_layers,
    file_stem,
    gradient_layers,
    gradient_path,
    histogram_layers,
    histogram_path,
)

if TYPE_CHECKING:
    from generator.store._distributions import GradientStats, Histograms
    from generator.store._files import check_remote_out
    from generator.store._reader import RunReader, open_run
    from generator.store._records import EpochRecord, ExamplePoolRecord
    from generator.store._staging import discard_created
    from generator.store._writer import StoreWriter

__all__ = [
    "ACTIVATION_DTYPES",
    "FEATVIZ_KINDS",
    "GRADIENT_FIELDS",
    "HISTOGRAM_KINDS",
    "READABLE_VERSIONS",
    "SCALAR_METRICS",
    "SCHEMA_VERSION",
    "STAT_FIELDS",
    "EpochRecord",
    "ExamplePoolRecord",
    "FeatvizSpec",
    "GradientSpec",
    "GradientStats",
    "Histograms",
    "LayerSpec",
    "RootAttrs",
    "RunReader",
    "StoreLocation",
    "StoreURL",
    "StoreWriter",
    "check_remote_out",
    "discard_created",
    "example_layers",
    "file_stem",
    "gradient_layers",
    "gradient_path",
    "histogram_layers",
    "histogram_path",
    "is_url",
    "open_run",
    "parse_storage_option",
    "store_location",
    "total_size",
    "use_storage_options",
]

# name -> the private module that defines it; imported (with zarr) on first use
_LAZY = {
    "check_remote_out": "_files",
    "discard_created": "_staging",
    "GradientStats": "_distributions",
    "Histograms": "_distributions",
    "RunReader": "_reader",
    "open_run": "_reader",
    "EpochRecord": "_records",
    "ExamplePoolRecord": "_records",
    "StoreWriter": "_writer",
}


def __getattr__(name: str) -> Any:
    """Load the zarr-backed half of the face on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
