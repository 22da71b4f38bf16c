"""``serve``: a local static server for a built site, so videos and links work as deployed.

Pages work from ``file://`` too; the server is for checking the site the way GitHub Pages
serves it, and it serves nothing else: only regular files whose real path (symlinks
resolved) lies inside the real site folder, a folder only through its ``index.html``, and
every other path gets the site's own ``404.html``. No directory listings, no special files
(opening a FIFO would block the thread), nothing reached through a link out of the site.
``ThreadingHTTPServer`` keeps one slow video download from blocking the page's other
requests. The handler adds HTTP range requests, which the standard one lacks: without them
Chrome treats an MP4 as unseekable until it is fully buffered and clamps every seek to 0,
so the epoch scrubber would not move the videos (GitHub Pages and ``file://`` both allow
seeking). A request the handler cannot answer is one log line, never a traceback.

A page on another site must not read the gallery (its probe images come from the user's
data) by pointing its own DNS name at 127.0.0.1 (DNS rebinding): only requests whose
``Host`` names this server are answered (:func:`host_allowed`), others get 421. A client
has ``SERVE_REQUEST_TIMEOUT`` seconds to send its request, at most ``SERVE_CONNECTIONS``
connections are served at once, so half-sent requests cannot pile up threads.
"""

from __future__ import annotations

import email.utils
import functools
import io
import ipaddress
import logging
import os
import re
import socket
import stat
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from generator import defaults
from generator.errors import OptionError

RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
CHUNK = 64 * 1024
# Byte offsets longer than this are beyond any file (and int() refuses > 4300 digits).
MAX_DIGITS = 18
NOT_FOUND_PAGE = "404.html"
READ_ONLY = "GET, HEAD"

log = logging.getLogger(__name__)
# What a user of ``serve`` reads on the terminal: the URL once it listens, and "stopped".
# The CLI prints this logger's records on stdout; the library itself prints nothing.
STATUS_LOG = f"{__name__}.status"
status = logging.getLogger(STATUS_LOG)


class Redirect(str):
    """The URL a folder request without its trailing slash is sent to (so the folder's
    ``index.html`` resolves its relative links against the folder)."""


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves the site's regular files (whole, or one byte range ``Range: bytes=a-b``)."""

    _remaining: int | None = None
    timeout = defaults.SERVE_REQUEST_TIMEOUT  # for the request line and headers, in all

    def setup(self) -> None:
        super().setup()
        self._reading = Deadline(self.connection)
        self.rfile = io.BufferedReader(self._reading)

    def handle_one_request(self) -> None:
        # the whole request within the timeout: a byte a second does not keep it open
        self._reading.deadline = time.monotonic() + float(self.timeout or 0)
        super().handle_one_request()

    def parse_request(self) -> bool:
        """The stock parser, then the ``Host`` check (421 for another name, 400 for an
        HTTP/1.1 request without one); an accepted request may take longer to send."""
        if not super().parse_request():
            return False
        host = self.headers.get("Host")
        if host is None and self.request_version < "HTTP/1.1":
            pass  # HTTP/1.0 tools may leave it out; browsers never do
        elif host is None or not host_allowed(host, self.server.server_address):
            self.send_error(
                HTTPStatus.BAD_REQUEST if host is None else HTTPStatus.MISDIRECTED_REQUEST,
                "Host header names no address of this server",
            )
            return False
        self._reading.deadline = None
        self.connection.settimeout(defaults.SERVE_SEND_TIMEOUT)
        return True

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    # -- which file a request names ------------------------------------------------------
    def site_root(self) -> Path:
        return Path(self.directory).resolve()

    def site_file(self, url_path: str) -> Path | Redirect | None:
        """The regular file inside the site that ``url_path`` names, a redirect for a
        folder URL without its slash, or None (answered with the site's 404)."""
        try:
            relative = urllib.parse.unquote(url_path, errors="strict")
        except UnicodeDecodeError:  # %-escapes that are not UTF-8 name no file of ours
            return None
        if "\x00" in relative:
            return None
        parts = [part for part in relative.split("/") if part not in ("", ".", "..")]
        root = self.site_root()
        target = inside_regular(root, root.joinpath(*parts))
        if target is None or not target.is_dir():
            return None if url_path.endswith("/") else target
        index = inside_regular(root, target / "index.html")
        if index is None or index.is_dir():
            return None
        return index if url_path.endswith("/") else Redirect("/" + url_path.lstrip("/") + "/")

    # -- answers --------------------------------------------------------------------------
    def send_head(self) -> BinaryIO | None:
        self._remaining = None
        url_path, query = self.path.split("#", 1)[0].partition("?")[::2]
        found = self.site_file(url_path)
        if isinstance(found, Redirect):
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", found + ("?" + query if query else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        source = open_regular(found) if found is not None else None
        if found is None or source is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        info = os.fstat(source.fileno())
        match = RANGE.fullmatch(self.headers.get("Range", "").strip())
        if not match or not any(match.groups()):
            self.send_response(HTTPStatus.OK)
            self.send_file_headers(found, info, str(info.st_size))
            return source
        start, end = byte_range(match, info.st_size)
        if start is None:
            source.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{info.st_size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Range", f"bytes {start}-{end}/{info.st_size}")
        self.send_file_headers(found, info, str(end - start + 1))
        source.seek(start)
        self._remaining = end - start + 1
        return source

    def send_file_headers(self, path: Path, info: os.stat_result, length: str) -> None:
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", length)
        self.send_header("Last-Modified", email.utils.formatdate(info.st_mtime, usegmt=True))
        self.end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A 404 is the site's own ``404.html`` (as GitHub Pages answers); other errors
        are the standard short page."""
        page = None
        if code == HTTPStatus.NOT_FOUND:
            found = inside_regular(self.site_root(), self.site_root() / NOT_FOUND_PAGE)
            page = open_regular(found) if found is not None else None
        if page is None:
            super().send_error(code, message, explain)
            return
        with page:
            body = page.read()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def refuse_method(self) -> None:
        """Writing methods on a read-only site: 405 with the methods that do work."""
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", READ_ONLY)
        self.send_header("Connection", "close")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:  # type: ignore[override]
        if self._remaining is None:
            super().copyfile(source, outputfile)
            return
        remaining = self._remaining
        while remaining > 0:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


class Deadline(io.RawIOBase):
    """A connection's bytes, each read given only what is left of a deadline (None: the
    socket's own timeout), so a request trickled in slowly times out as a whole."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request took too long")
            self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


def host_allowed(header: str, bound: Any) -> bool:
    """Whether ``Host: header`` names the server bound to ``bound`` (address, port): a
    loopback address or ``localhost``, the bound address, and, bound to every interface,
    any address literal or this machine's name. A port, if given, must be the bound one.
    An address literal cannot be rebound by DNS; any other name could be an attacker's."""
    address, port = str(bound[0]), int(bound[1])
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?", header.strip())
    if match is None or (match.group(2) is not None and int(match.group(2)) != port):
        return False
    name = match.group(1).strip("[]").lower().rstrip(".")
    wildcard = address in ("0.0.0.0", "::", "")
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        names = {"localhost"}
        if wildcard:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return name in names
    return literal.is_loopback or wildcard or literal == ipaddress.ip_address(address)


def inside_regular(root: Path, candidate: Path) -> Path | None:
    """``candidate`` with its symlinks resolved, if it exists, lies inside ``root`` (itself
    resolved) and is a regular file or a folder; else None."""
    try:
        resolved = candidate.resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError, ValueError):  # missing, a loop, too long, a NUL
        return None
    if resolved != root and root not in resolved.parents:
        return None
    return resolved if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else None


def open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for reading if it is (still) a regular file; non-blocking, so a file
    swapped for a FIFO after the check cannot hang the server."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def byte_offset(digits: str) -> int:
    """A range offset; absurdly long numbers count as beyond any file."""
    return int(digits) if len(digits) <= MAX_DIGITS else 10**MAX_DIGITS


def byte_range(match: re.Match[str], size: int) -> tuple[int | None, int]:
    """(first, last) byte of a ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range, or
    (None, 0) when it is not satisfiable for a file of ``size`` bytes."""
    first, last = match.groups()
    if not first:
        start, end = max(0, size - byte_offset(last)), size - 1
    else:
        start = byte_offset(first)
        end = min(byte_offset(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return None, 0
    return start, end


class QuietHandler(RangeHandler):
    """The range-capable static handler without a log line per request (for tests)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
        return


class SiteServer(ThreadingHTTPServer):
    """A threading server that treats a browser hanging up mid-file as normal and turns
    any other failure to answer a request into one log line, never a traceback.

    Browsers abort video downloads they no longer need (seeking, leaving the page); the
    stock server prints a traceback for each such reset pipe.
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(defaults.SERVE_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread while fewer than ``SERVE_CONNECTIONS`` are; a connection that
        finds every slot taken for ``SERVE_REQUEST_TIMEOUT`` seconds is closed."""
        if not self.slots.acquire(timeout=defaults.SERVE_REQUEST_TIMEOUT):
            log.warning("serve: %d connections open; closed one more", defaults.SERVE_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: object, client_address: tuple) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        # one line, as the stock server reports it, without its traceback
        log.warning(
            "serve: could not answer %s: %s: %s", client_address[0], type(error).__name__, error
        )


def make_server(
    site: Path,
    port: int = defaults.PORT,
    host: str = "127.0.0.1",
    handler: type[SimpleHTTPRequestHandler] = RangeHandler,
) -> ThreadingHTTPServer:
    """A server for the files under ``site`` (port 0 picks a free port)."""
    site = Path(site)
    if not site.is_dir():
        raise OptionError(
            f"{site}: no such site folder; build one with `python -m generator build --out SITE`"
        )
    bound = functools.partial(handler, directory=str(site.resolve()))
    try:
        return SiteServer((host, port), bound)
    except OSError as exc:
        raise OptionError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port"
        ) from exc


def site_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    if not isinstance(host, str):  # the stubs allow bytes (as given); a bound address is str
        host = bytes(host).decode()
    return f"http://{host}:{port}/"


def serve(site: Path, port: int = defaults.PORT, host: str = "127.0.0.1") -> None:
    """Serve ``site`` until interrupted. Its URL, once it listens, and "stopped" after the
    interrupt are logged at INFO to ``STATUS_LOG`` (the CLI prints them)."""
    with make_server(site, port, host) as server:
        status.info("serving %s at %s (Ctrl+C to stop)", site, site_url(server))
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            status.info("stopped")
