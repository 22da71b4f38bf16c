"""netlapse: watch a convolutional network learn.

Data flows ``data`` -> ``model`` -> ``train`` + ``record`` -> ``store`` -> ``reader`` ->
``render`` -> ``encode`` -> ``artefacts``/``build`` -> ``site``. Which module may import
which is written once, as stages, in ``tests/test_imports.py`` (and checked there);
``__main__`` is the only module that knows them all.

``from generator import Recorder`` is the API for a user's own training loop. It is
imported on first use (``__getattr__``), so ``import generator`` and the CLI stay light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Recorder", "__version__"]


def __getattr__(name: str) -> Any:
    """Lazy exports: torch and the writer are imported only when ``Recorder`` is used."""
    if name == "Recorder":
        from generator.record.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
