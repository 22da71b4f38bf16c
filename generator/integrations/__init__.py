"""Optional integrations with training frameworks; each is imported only when asked for.

``NetlapseCallback`` (``integrations.lightning``) records a Lightning ``Trainer``'s model
like a ``Recorder``; it needs Lightning (``pip install netlapse[lightning]``), so it is
loaded on first use and ``import generator.integrations`` never imports Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generator.integrations.lightning import NetlapseCallback

__all__ = ["NetlapseCallback"]


def __getattr__(name: str) -> Any:
    """Lazy export: Lightning is imported only when the callback is used (PEP 562)."""
    if name != "NetlapseCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from generator.integrations.lightning import NetlapseCallback

    return NetlapseCallback
