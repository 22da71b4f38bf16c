"""The local server: serves the site folder only, answers byte ranges, prints its URL."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from generator import serve as serve_module
from generator.errors import OptionError
from generator.serve import QuietHandler, make_server, serve, site_url

BODY = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text("outside the site")
    root = tmp_path / "site"
    (root / "runs").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "runs" / "clip.mp4").write_bytes(BODY)
    return root


@pytest.fixture
def server(site: Path) -> Iterator[ThreadingHTTPServer]:
    server = make_server(site, port=0, handler=QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def get(
    server: ThreadingHTTPServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_serves_pages_and_media(server: ThreadingHTTPServer) -> None:
    status, headers, body = get(server, "/index.html")
    assert status == 200 and b"<title>home</title>" in body
    status, headers, body = get(server, "/runs/clip.mp4")
    assert status == 200 and body == BODY
    assert headers["Content-type"] == "video/mp4" and headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/%2e%2e/secret.txt", "/runs/../../secret.txt", "//secret.txt"]
)
def test_cannot_leave_the_site(server: ThreadingHTTPServer, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404 and b"outside the site" not in body


def test_byte_ranges_make_videos_seekable(server: ThreadingHTTPServer) -> None:
    status, headers, body = get(server, "/runs/clip.mp4", {"Range": "bytes=100-199"})
    assert status == 206 and body == BODY[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(BODY)}"
    status, headers, body = get(server, "/runs/clip.mp4", {"Range": "bytes=10000-"})
    assert status == 206 and body == BODY[10000:]
    status, _, body = get(server, "/runs/clip.mp4", {"Range": "bytes=-40"})
    assert status == 206 and body == BODY[-40:]
    status, headers, _ = get(server, "/runs/clip.mp4", {"Range": "bytes=99999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(BODY)}"


def test_unsupported_range_falls_back_to_the_whole_file(server: ThreadingHTTPServer) -> None:
    status, _, body = get(server, "/runs/clip.mp4", {"Range": "bytes=0-1,5-6"})
    assert status == 200 and body == BODY


def test_missing_site_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="no such site folder"):
        make_server(tmp_path / "nope", port=0)


def test_serve_prints_the_url_and_stops_on_interrupt(
    site: Path, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    made: list[ThreadingHTTPServer] = []

    def fake_make_server(path: Path, port: int, host: str) -> ThreadingHTTPServer:
        server = make_server(path, 0, host, handler=QuietHandler)
        made.append(server)

        def interrupted() -> None:
            raise KeyboardInterrupt

        server.serve_forever = interrupted  # type: ignore[method-assign]
        return server

    monkeypatch.setattr(serve_module, "make_server", fake_make_server)
    serve(site, port=8123)
    out = capsys.readouterr().out
    assert site_url(made[0]) in out and out.startswith(f"serving {site} at http://127.0.0.1:")
    assert "stopped" in out
