"""netlapse: watch a convolutional network learn.

Stages, in the order data flows (imports only go down this list): ``data`` -> ``model`` ->
``train`` + ``record`` -> ``store`` -> ``reader`` -> ``render`` -> ``encode`` ->
``artefacts``/``build`` -> ``site``. ``__main__`` is the only module that knows them all.

``from generator import Recorder`` is the API for a user's own training loop; it is
imported on first use, so ``import generator`` (and the CLI's start) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generator.record import Recorder

__version__ = "0.1.0"
__all__ = ["Recorder", "__version__"]


def __getattr__(name: str) -> Any:
    """Lazy exports: torch is imported only when ``Recorder`` is asked for."""
    if name == "Recorder":
        from generator.record import Recorder

        return Recorder
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
