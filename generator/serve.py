"""``serve``: a local static server for a built site, so videos and links work as deployed.

Pages work from ``file://`` too; the server is for checking the site the way GitHub Pages
serves it. ``SimpleHTTPRequestHandler`` with ``directory=site`` maps every URL inside
that folder (``..`` segments are dropped), and ``ThreadingHTTPServer`` keeps one slow
video download from blocking the page's other requests. The handler adds HTTP range
requests, which the standard one lacks: without them Chrome treats an MP4 as unseekable
until it is fully buffered and clamps every seek to 0, so the epoch scrubber would not
move the videos (GitHub Pages and ``file://`` both allow seeking).
"""

from __future__ import annotations

import email.utils
import functools
import os
import re
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

from generator.errors import OptionError

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 64 * 1024


class RangeHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single byte ranges (``Range: bytes=a-b``)."""

    _remaining: int | None = None

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self) -> BinaryIO | None:  # type: ignore[override]
        self._remaining = None
        match = RANGE.fullmatch(self.headers.get("Range", "").strip())
        path = self.translate_path(self.path)
        if not match or not any(match.groups()) or not os.path.isfile(path):
            return super().send_head()
        try:
            source = open(path, "rb")  # noqa: SIM115 - returned to the caller, as the base does
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        size = os.fstat(source.fileno()).st_size
        start, end = byte_range(match, size)
        if start is None:
            source.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header(
            "Last-Modified", email.utils.formatdate(os.fstat(source.fileno()).st_mtime, usegmt=True)
        )
        self.end_headers()
        source.seek(start)
        self._remaining = end - start + 1
        return source

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


def byte_range(match: re.Match[str], size: int) -> tuple[int | None, int]:
    """(first, last) byte of a ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range, or
    (None, 0) when it is not satisfiable for a file of ``size`` bytes."""
    first, last = match.groups()
    if not first:
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return None, 0
    return start, end


class QuietHandler(RangeHandler):
    """The range-capable static handler without a log line per request (for tests)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
        return


class SiteServer(ThreadingHTTPServer):
    """A threading server that treats a browser hanging up mid-file as normal.

    Browsers abort video downloads they no longer need (seeking, leaving the page); the
    stock server prints a traceback for each such reset pipe.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def make_server(
    site: Path,
    port: int = 8000,
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
    return f"http://{host}:{port}/"


def serve(site: Path, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Serve ``site`` until interrupted, after printing its URL."""
    with make_server(site, port, host) as server:
        print(f"serving {site} at {site_url(server)} (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)
