"""netlapse: watch a convolutional network learn.

Data flows ``data`` -> ``model`` -> ``record``/``train`` -> ``store`` -> ``analysis`` ->
``render`` -> ``encode`` -> ``build`` -> ``site``; each stage is a folder (or one module),
and which may import which is written once in ``tests/test_imports.py`` and checked there.
``__main__`` is the only module that knows them all.

This is the API for a user's own training loop and notebook:

- ``Recorder``: records a model on fixed probe images into a run store, once per epoch;
- ``open_run``: reads a run store (a folder or an object-storage URL) as a ``RunReader``;
- ``animation``: one layer's (or channel's) animation shown inline in a notebook;
- ``build_model``: the reference CNN or a torchvision/timm classifier by name;
- ``NetlapseError``: the base of every error a user can fix (``generator.errors``).

They are imported on first use (``__getattr__``), so ``import generator`` and the CLI stay
light: torch and zarr load only when a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from generator.errors import NetlapseError

if TYPE_CHECKING:
    from generator.model import build_model
    from generator.notebook import animation
    from generator.record import Recorder
    from generator.store import RunReader, open_run

__version__ = "0.1.0"
__all__ = [
    "NetlapseError",
    "Recorder",
    "RunReader",
    "__version__",
    "animation",
    "build_model",
    "open_run",
]

# name -> the stage's face that defines it
_LAZY = {
    "Recorder": "generator.record",
    "RunReader": "generator.store",
    "open_run": "generator.store",
    "build_model": "generator.model",
    "animation": "generator.notebook",
}


def __getattr__(name: str) -> Any:
    """Lazy exports: torch and zarr are imported only when a name that needs them is used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'generator' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
