"""How user-supplied text and settings are shown on a public page.

Two decisions made once here. Names that are not valid UTF-8 (a class folder or store
named with bytes that ``os.fsdecode`` turned into lone surrogates such as ``\\udcff``) are
shown with the bytes escaped (``\\xff``), so a page always encodes and the name stays
recognisable. And the site never publishes the author's file system: a setting that is a
local path (the ``--data`` folder, probe image files) is shown by its last part only,
and a URL without its user info or signed-query tokens (``errors.redact``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from generator.errors import redact

PATH_SEPARATORS = re.compile(r"[\\/]+")


def shown(text: str) -> str:
    """``text`` safe to write as UTF-8: undecodable bytes become visible ``\\xNN``, a
    URL's secrets ``***``."""
    text = redact(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate os.fsdecode never makes: escape it as is
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def public_name(text: str) -> str:
    """A path's last part ('/home/me/data/cats' -> 'cats'); other text unchanged."""
    parts = [p for p in PATH_SEPARATORS.split(redact(text)) if p]
    return shown(parts[-1] if parts else text)


def format_setting(value: Any) -> str:
    """One setting for the footer: lists joined, floats short, paths by their last part,
    at any depth (a user's ``training=`` dict may nest paths)."""
    if isinstance(value, Mapping):
        items = (f"{shown(str(k))}: {format_setting(v)}" for k, v in sorted(value.items()))
        return "; ".join(items) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_setting(v) for v in value) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return public_name(value)
    return "—" if value is None else shown(str(value))


def format_settings(settings: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(key, shown value) pairs, sorted by key, for a footer."""
    return tuple((shown(str(k)), format_setting(v)) for k, v in sorted(settings.items()))


def format_percent(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value * 100:.1f}%"
