"""Checks on a dask ``--scheduler`` that dask itself does not make in bounded time.

Before a ``Client`` exists, :func:`probe` connects to the address with a timeout and reads
the greeting a dask scheduler sends first on every connection (an 8-byte length, then a
small msgpack map naming its ``compression`` and ``pickle-protocol``). Anything else
there (a silent socket, a web server, random bytes, a length of 2**60 that dask would try
to allocate) is refused in one line within ``jobs.CONNECT_TIMEOUT`` seconds; so is every
scheme but ``tcp://`` (``tls://`` needs certificates netlapse does not pass, ``ws://``
and the rest are not what ``dask scheduler`` prints).

While a build runs, :func:`wait_for_some` waits for finished jobs in rounds of
``defaults.WORKER_POLL`` seconds: with no worker left on the cluster for
``defaults.WORKERLESS_TIMEOUT`` seconds (all killed), the build stops with one line
instead of waiting forever.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Collection
from typing import Any

from generator import defaults
from generator.errors import NetlapseError, OptionError, one_line

GREETING_MAX = 64 * 1024  # bytes: a scheduler's greeting is a few dozen

log = logging.getLogger(__name__)


def probe(address: str, *, timeout: float) -> None:
    """Refuse ``address`` unless a dask scheduler greets on it within ``timeout`` s."""
    scheme, _, where = address.rpartition("://")
    if scheme not in ("", "tcp"):
        raise OptionError(
            f"--scheduler {address}: only tcp:// schedulers are supported, not {scheme}://; "
            "use tcp://HOST:PORT, as `dask scheduler` prints it"
        )
    host, _, port = where.rpartition(":")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            (size,) = struct.unpack("<Q", _read(conn, 8, deadline))
            if not 0 < size <= GREETING_MAX:
                raise _NotDask(f"it announced {size} bytes")
            if b"pickle-protocol" not in _read(conn, size, deadline):
                raise _NotDask("its greeting is not dask's")
    except _NotDask as exc:
        raise OptionError(
            f"--scheduler {address}: what listens there is not a dask scheduler ({exc}); "
            "start one (`dask scheduler`) or fix the address"
        ) from None
    except (OSError, ValueError) as exc:  # refused, timed out, closed, a bad port
        why = "it sent nothing" if isinstance(exc, TimeoutError) else str(exc)
        raise OptionError(
            f"--scheduler {address}: no dask scheduler answered within {timeout:g} s "
            f"({why}); start one (`dask scheduler`) or fix the address"
        ) from None


class _NotDask(Exception):
    """The peer answered, but not as a dask scheduler does."""


def _read(conn: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        conn.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = conn.recv(min(size - len(data), GREETING_MAX))
        if not chunk:
            raise _NotDask("it closed the connection")
        data += chunk
    return data


def wait_for_some(client: Any, pending: Collection[Any], address: str) -> set[Any]:
    """The futures of ``pending`` that are done, waiting as long as it takes while the
    cluster has workers; with none for ``defaults.WORKERLESS_TIMEOUT`` s, one line."""
    from distributed.client import _wait  # ``wait`` itself needs a default client

    since = time.monotonic()
    while True:
        try:
            done = client.sync(
                _wait, list(pending), timeout=defaults.WORKER_POLL, return_when="FIRST_COMPLETED"
            )
            return set(done.done)
        except TimeoutError:
            pass
        except Exception as exc:  # the scheduler went away and the futures with it
            raise _gone(address, exc) from exc
        if _workers(client, address):
            since = time.monotonic()
            continue
        waited = time.monotonic() - since
        if waited >= defaults.WORKERLESS_TIMEOUT:
            raise NetlapseError(
                f"--scheduler {address}: no dask worker for {waited:.0f} s with {len(pending)} "
                "jobs left (all gone?); start workers (`dask worker ADDRESS`) and build again, "
                "which keeps what was made"
            )
        log.info("waiting for a dask worker: %d jobs left, none for %.0f s", len(pending), waited)


def _workers(client: Any, address: str) -> int:
    try:
        return len(client.nthreads())  # asks the scheduler now
    except Exception as exc:  # the scheduler itself went away
        raise _gone(address, exc) from exc


def _gone(address: str, exc: Exception) -> NetlapseError:
    return NetlapseError(
        f"--scheduler {address}: the scheduler stopped answering ({one_line(exc)}); "
        "build again once it runs, which keeps what was made"
    )
