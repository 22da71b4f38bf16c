"""The one exception hierarchy of netlapse.

Every failure a user can cause (bad data, a broken store, a bad option) is raised as a
``NetlapseError`` subclass with a one-line message that names the file or option and says
what to do. ``generator.__main__`` turns these into that line on stderr and an exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NetlapseError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = 2


class OptionError(NetlapseError):
    """A command-line option has a value the command cannot use."""


class DataError(NetlapseError):
    """The dataset folder, an image or a video cannot be used."""


class StoreError(NetlapseError):
    """A run store is missing, unreadable, of another schema or refuses a write."""


class EncodeError(NetlapseError):
    """An animation could not be written (encoder missing or failed, disk full)."""

    exit_code = 3
