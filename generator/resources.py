"""Where the package's non-Python files (Jinja templates, CSS, JS) are found.

The templates live at the repository root (``templates/``), a layout the project keeps.
A wheel ships them inside the package as ``generator/templates`` (pyproject maps the
folder there); an editable install or a checkout finds them beside the package. One
function decides, so no module guesses paths of its own.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def templates_path() -> Path:
    """The folder of Jinja templates and ``static/``: inside the installed package when it
    was installed from a wheel, else ``templates/`` beside the package in a checkout."""
    packaged = _PACKAGE / "templates"
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "templates"
