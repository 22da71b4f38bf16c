"""The one exception hierarchy of netlapse, every class of it in this file.

Every failure a user can cause (bad data, a broken store, a bad option) is raised as a
``NetlapseError`` subclass with a one-line message that names the file or option and says
what to do. ``generator.__main__`` turns these into that line on stderr and an exit code;
anything else is a bug and keeps its traceback.

Each class is also the built-in a caller would catch without knowing netlapse (as zarr's
``errors.py`` does): a bad option or bad data is a ``ValueError``, a store that is not there
a ``FileNotFoundError``, a misuse of an object's lifetime a ``RuntimeError``.
"""

from __future__ import annotations

import re

__all__ = [
    "DataError",
    "EncodeError",
    "ExamplePoolError",
    "FeatvizLayerError",
    "LayerChoiceError",
    "LiveSiteError",
    "ModelOutputError",
    "NetlapseError",
    "OptionError",
    "OtherRankFailedError",
    "ProbeError",
    "RecorderClosedError",
    "StoreError",
    "StoreNotFoundError",
    "one_line",
    "redact",
]

# ``scheme://user:password@host``: everything between ``://`` and the last ``@`` of the
# authority is user info.
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
# Query parameters that carry a secret: S3/GCS presigned URLs (X-Amz-Signature,
# X-Amz-Credential, X-Amz-Security-Token, X-Goog-Signature, Signature, AWSAccessKeyId),
# Azure SAS (sig=), OAuth (access_token=, code=), API keys, passwords, CloudFront's Policy.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:[^=&#\s]*(?:sig|token|credential|secret|passw|pwd|key|auth|session"
    r"|policy)[^=&#\s]*|code|se|st|sp|sv)=)[^&#\s]*?(?=[:,;.)'\"]{0,2}(?:[&#\s]|$))",
    re.IGNORECASE,
)
REDACTED = "***"


class NetlapseError(Exception):
    """Base class: a problem the user can fix, reported as one line. Its message never
    holds a URL's password or signature (:func:`redact`), whoever prints it."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


# -- options --------------------------------------------------------------------------------
class OptionError(NetlapseError, ValueError):
    """A command-line option or an API argument has a value the command cannot use."""


class LayerChoiceError(OptionError):
    """``layers=`` names no module, or the model has nothing netlapse can record."""


class FeatvizLayerError(OptionError):
    """``featviz_layers`` names a layer that is not recorded or not a conv layer."""


class ModelOutputError(OptionError):
    """The model does not return logits (N, classes) for the probes."""


# -- data -----------------------------------------------------------------------------------
class DataError(NetlapseError, ValueError):
    """The dataset folder, an image or a video cannot be used."""


class ProbeError(DataError):
    """The probes cannot be used: wrong shape, dtype, count or source."""


class ExamplePoolError(DataError):
    """The example pool cannot be used: wrong images, size or top-k."""


# -- stores ---------------------------------------------------------------------------------
class StoreError(NetlapseError):
    """A run store is unreadable, of another schema or refuses a write."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """There is no run store where one was asked for."""


# -- lifetimes and processes ----------------------------------------------------------------
class RecorderClosedError(NetlapseError, RuntimeError):
    """The Recorder was used after ``close()``."""


class OtherRankFailedError(NetlapseError, RuntimeError):
    """Rank 0 stopped with its own one-line error; the other ranks stop with this one."""


class LiveSiteError(NetlapseError, RuntimeError):
    """The final build of a live site failed."""


# -- output ---------------------------------------------------------------------------------
class EncodeError(NetlapseError):
    """An animation could not be written (encoder missing or failed, disk full)."""

    exit_code = 3


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line, cut at a word: libraries put whole logs,
    tracebacks and XML bodies in theirs."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."  # at a word if it can


def redact(text: str) -> str:
    """``text`` with every URL's user info (``KEY:SECRET@``) and secret-bearing query
    values (``X-Amz-Signature=``, ``sig=``, ``token=``...) replaced by ``***``: the one
    helper for every message, log line, summary and page that may show a URL."""
    text = _USER_INFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<name>{REDACTED}", text)
