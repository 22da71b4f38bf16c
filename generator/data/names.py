"""How a file or folder name that is not valid UTF-8 is stored: escaped, decided here once.

POSIX names are bytes. Python hands an undecodable byte over as a lone surrogate
(``b"caf\\xe9"`` -> ``"caf\\udce9"``), which no UTF-8 writer accepts: not a JSON file, not
an HTML page, not a strict terminal. Every name that goes into a store (class folders,
probe files, the ``--data`` path) passes through :func:`storable_text`, which keeps valid
UTF-8 as it is and writes each undecodable byte as the four characters ``\\xNN``. A store
then holds only valid UTF-8, and the escape stays readable. Files are still opened by their
real (byte) names; only what is stored and shown is escaped.
"""

from __future__ import annotations

from typing import Any


def storable_text(name: str) -> str:
    """``"caf\\udce9"`` (from the bytes ``caf\\xe9``) -> ``"caf\\\\xe9"``; valid text as is."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system produced: escape it as such
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def storable(value: Any) -> Any:
    """:func:`storable_text` applied to every string in nested dicts and lists (JSON)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
