"""The object-storage settings obstore would panic on, refused first in one line.

obstore's Rust client parses the endpoint and signs its headers only when it sends a
request; a value it cannot use there (a port above 65535, an unclosed ``[``, an IPv4
address out of range, a token with a newline) is a Rust panic, raised in Python as
``pyo3_runtime.PanicException``, a ``BaseException`` that ``except Exception`` misses, and
printed with a backtrace. ``check_settings`` refuses such values from ``--storage-option``
and the store's cloud's environment variables before any client exists.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from generator.errors import OptionError

# Settings that hold a URL obstore's HTTP client parses when it sends a request (where a
# bad one panics): the endpoint of each cloud, a proxy, a credentials server.
_URL_SETTING = re.compile(r"endpoint|_url$|^url$|_uri$", re.IGNORECASE)
_ENVIRONMENT = {"s3": "AWS_", "gs": "GOOGLE_", "az": "AZURE_"}
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_FILE_SETTING = re.compile(r"(file|path|dir)$", re.IGNORECASE)  # a local path, not sent
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")  # what an HTTP header value can carry


def check_settings(family: str, options: Mapping[str, str]) -> None:
    """Refuse a malformed setting in ``--storage-option`` or the cloud's environment
    variables before obstore sees it: its client panics at the first request
    (``pyo3_runtime.PanicException``, which ``except Exception`` misses) on an endpoint it
    cannot parse, an IPv4 address out of range, or a key, token or region that holds a
    newline or other byte an HTTP header cannot carry."""
    prefix = _ENVIRONMENT.get(family)  # s3, gs, az: whose variables obstore reads
    named = {f"--storage-option {key}": value for key, value in options.items()}
    if prefix is not None:
        named.update({k: v for k, v in os.environ.items() if k.startswith(prefix)})
    for name, value in named.items():
        key = name.rsplit(" ", 1)[-1]
        if _URL_SETTING.search(key) and value:
            _check_url_setting(name, value, endpoint="ENDPOINT" in name.upper())
        elif not _FILE_SETTING.search(key) and not _HEADER_SAFE.fullmatch(value):
            raise OptionError(
                f"{name}: holds a newline, a control or a non-ASCII character, which an "
                "HTTP request cannot carry; set it again without them"
            )


def _check_url_setting(name: str, value: str, *, endpoint: bool) -> None:
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError when out of 0..65535 or not a number
    except ValueError as exc:
        why = str(exc)
    else:
        schemes = ("http", "https") if endpoint else (parts.scheme.lower(),)
        why = (
            "characters a URL cannot hold"
            if not _URL_CHARS.fullmatch(value)
            else "no http:// or https:// scheme"
            if parts.scheme.lower() not in schemes or not parts.scheme
            else "no host"
            if not parts.hostname
            else "an IP address out of range"
            if not _host_is_valid(parts.hostname)
            else "port 0"
            if port == 0
            else ""
        )
    if why:
        raise OptionError(
            f"{name}={value}: not a valid URL ({why}); use e.g. http://HOST:9000 "
            "(a port from 1 to 65535, brackets around an IPv6 address)"
        )


def _host_is_valid(host: str) -> bool:
    """An address literal must parse (``256.1.1.1`` does not); a name may be anything the
    character check let through."""
    if ":" not in host and not re.fullmatch(r"[0-9.]+", host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
