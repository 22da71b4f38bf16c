"""What the CLI writes on the terminal, and what it does when nobody reads it any more.

``info a.zarr | head -5`` closes the pipe after five lines; the next write raises
``BrokenPipeError``, and the interpreter's own last flush of stdout would raise it again at
exit as a traceback. ``generator.__main__`` ends such a command as a shell ends one killed
by SIGPIPE: quietly, with exit code 141, stdout pointed at ``/dev/null``
(:func:`discard_stdout`).

Every line the CLI writes goes through :class:`Redacting`, so no URL it shows carries a
password or a signature (``errors.redact``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from generator.errors import redact

CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`'s writer


class Redacting(logging.Formatter):
    """A formatter whose lines have URLs' user info and signatures redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def redact_logs() -> None:
    """Redact what the root logger's handlers (set up by the CLI) write."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(Redacting(handler.formatter._fmt if handler.formatter else None))


class _Output(logging.StreamHandler):
    """Output that ends the command when its reader is gone (not a "logging error")."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - base name
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise
        super().handleError(record)


@contextlib.contextmanager
def printing(name: str) -> Iterator[None]:
    """The records of logger ``name`` printed on stdout while the block runs, whatever
    --quiet says: they are the command's output (as ``info``'s summary is), not progress."""
    handler = _Output(sys.stdout)
    handler.setFormatter(Redacting("%(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def discard_stdout() -> int:
    """Point stdout at ``/dev/null`` (its reader closed the pipe), so the interpreter's last
    flush goes nowhere; returns the exit code for the command."""
    null = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # a test's stdout has no descriptor
        os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return CLOSED_PIPE
