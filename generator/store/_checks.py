"""Checks of single JSON values, shared by every part of the schema that parses a store.

A store's attributes are a user's file: each value is checked for its type and range
before it is trusted, and a bad one is named in a one-line message (``short``).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

MAX_SIZE = 2**31  # any one dimension


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` parses to a Python int subclass)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any, least: int) -> bool:
    """An int from ``least`` up to 2**53 (the largest a JSON reader keeps exact)."""
    return is_int(value) and least <= value <= 2**53


def is_text(value: Any) -> bool:
    """A string without control characters (it ends up in messages and on pages)."""
    return isinstance(value, str) and not any(
        unicodedata.category(char) in ("Cc", "Cs") for char in value
    )


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def dims(value: Any, length: int) -> bool:
    """A list of ``length`` sizes, each from 1 to ``MAX_SIZE``."""
    return (
        isinstance(value, list)
        and len(value) == length
        and all(is_int(v) and 1 <= v <= MAX_SIZE for v in value)
    )


def short(value: Any, limit: int = 60) -> str:
    """A value in a message: its JSON, cut to fit one line."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
