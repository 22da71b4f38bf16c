"""The local server: serves the site's regular files only, answers byte ranges, prints its
URL, and answers any raw request (fuzzed with hypothesis) with a status, never a traceback."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from generator.__main__ import main
from generator.errors import OptionError
from generator.site import server as serve_module
from generator.site.server import STATUS_LOG, QuietHandler, make_server, serve, site_url

BODY = bytes(range(256)) * 40  # 10,240 bytes
SECRET = b"outside the site"
NOT_FOUND = b"<!doctype html><title>lost</title>"


def make_site(base: Path) -> Path:
    """A site beside a secret, with links out of it (a folder, a file, a loop), a link
    that stays inside, a folder without an index, one with, and a FIFO."""
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "passwd").write_bytes(SECRET)
    root = base / "site"
    (root / "runs" / "deep").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>home</title>")
    (root / "404.html").write_bytes(NOT_FOUND)
    (root / "runs" / "clip.mp4").write_bytes(BODY)
    (root / "runs" / "deep" / "index.html").write_text("<!doctype html><title>deep</title>")
    (root / "etclink").symlink_to(base / "outside")
    (root / "secretlink.txt").symlink_to(base / "secret.txt")
    (root / "cliplink.mp4").symlink_to(root / "runs" / "clip.mp4")
    (root / "loop").symlink_to(root / "loop")
    os.mkfifo(root / "fifo.mp4")
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


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
) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def test_serves_pages_and_media(server: ThreadingHTTPServer) -> None:
    status, headers, body = get(server, "/index.html")
    assert status == 200 and b"<title>home</title>" in body
    status, headers, body = get(server, "/runs/clip.mp4")
    assert status == 200 and body == BODY
    assert headers["Content-Type"] == "video/mp4" and headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "path", ["/../secret.txt", "/%2e%2e/secret.txt", "/runs/../../secret.txt", "//secret.txt"]
)
def test_cannot_leave_the_site(server: ThreadingHTTPServer, path: str) -> None:
    status, _, body = get(server, path)
    assert status == 404 and SECRET not in body


@pytest.mark.parametrize(
    "path", ["/etclink/passwd", "/etclink/", "/etclink", "/secretlink.txt", "/loop", "/fifo.mp4"]
)
def test_links_out_of_the_site_and_special_files_are_not_found(
    server: ThreadingHTTPServer, path: str
) -> None:
    """A symlink may point anywhere; only what really lies inside the site is served, and
    a FIFO is refused at once instead of blocking the thread that opens it."""
    status, _, body = get(server, path)
    assert status == 404 and body == NOT_FOUND


def test_links_within_the_site_are_served(server: ThreadingHTTPServer) -> None:
    assert get(server, "/cliplink.mp4")[::2] == (200, BODY)


@pytest.mark.parametrize("path", ["/runs/", "/runs", "/nope.html", "/runs/clip.mp4/", "/%ff"])
def test_folders_without_index_and_unknown_paths_get_the_sites_404(
    server: ThreadingHTTPServer, path: str
) -> None:
    status, headers, body = get(server, path)
    assert status == 404 and body == NOT_FOUND and headers["Content-Type"].startswith("text/html")


def test_a_folder_with_an_index_serves_it(server: ThreadingHTTPServer) -> None:
    status, headers, _ = get(server, "/runs/deep?x=1")
    assert status == 301 and headers["Location"] == "/runs/deep/?x=1"
    assert get(server, "/runs/deep/")[::2] == (200, b"<!doctype html><title>deep</title>")
    assert get(server, "/")[0] == 200


def test_writing_methods_are_not_allowed(server: ThreadingHTTPServer) -> None:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("POST", "/index.html", body=b"x")
    response = conn.getresponse()
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    conn.close()


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


def test_absurd_range_numbers_are_answered(server: ThreadingHTTPServer) -> None:
    status, _, _ = get(server, "/runs/clip.mp4", {"Range": "bytes=" + "9" * 5000 + "-"})
    assert status == 416
    status, _, body = get(server, "/runs/clip.mp4", {"Range": "bytes=10-" + "9" * 5000})
    assert status == 206 and body == BODY[10:]


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
    # the library logs these lines (it prints nothing); the command prints them
    main(["serve", "--site", str(site), "--port", "8123"])
    out = capsys.readouterr().out
    assert site_url(made[0]) in out and out.startswith(f"serving {site} at http://127.0.0.1:")
    assert "stopped" in out


def test_serve_as_a_library_logs_its_url_and_prints_nothing(
    site: Path, monkeypatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    def fake_make_server(path: Path, port: int, host: str) -> ThreadingHTTPServer:
        server = make_server(path, 0, host, handler=QuietHandler)

        def interrupted() -> None:
            raise KeyboardInterrupt

        server.serve_forever = interrupted  # type: ignore[method-assign]
        return server

    monkeypatch.setattr(serve_module, "make_server", fake_make_server)
    with caplog.at_level("INFO", logger=STATUS_LOG):
        serve(site, port=8123)
    assert capsys.readouterr().out == ""
    lines = [r.getMessage() for r in caplog.records if r.name == STATUS_LOG]
    assert lines[0].startswith(f"serving {site} at http://127.0.0.1:") and lines[1] == "stopped"


# -- hostile raw requests to a running `serve` (hypothesis) -------------------------------
ALLOWED = {200, 206, 301, 400, 404, 405, 414, 416, 431, 501, 505}
SEGMENTS = st.sampled_from(
    [
        "",
        ".",
        "..",
        "%2e%2e",
        "%2E%2e%2f",
        "%2f",
        "%00",
        "%ff",
        "%c0%ae",
        "\x00",
        "runs",
        "clip.mp4",
        "deep",
        "index.html",
        "etclink",
        "passwd",
        "secret.txt",
        "secretlink.txt",
        "cliplink.mp4",
        "loop",
        "fifo.mp4",
        "404.html",
        "?",
        "#",
        "%",
        "%%",
        "~",
        "\\",
        ";",
    ]
)
PATHS = st.one_of(
    st.lists(st.one_of(SEGMENTS, st.text(max_size=12)), max_size=8).map(
        lambda parts: "/" + "/".join(parts)
    ),
    st.integers(200, 70_000).map(lambda n: "/" + "a" * n),
    st.binary(max_size=40).map(lambda raw: "/" + raw.decode("latin-1")),
)
NUMBER = st.one_of(st.integers(0, 20_000).map(str), st.just("9" * 60), st.just(""), st.just("-1"))
RANGES = st.one_of(
    st.none(),
    st.builds(lambda a, b: f"bytes={a}-{b}", NUMBER, NUMBER),
    st.lists(st.builds(lambda a, b: f"{a}-{b}", NUMBER, NUMBER), min_size=2, max_size=4).map(
        lambda parts: "bytes=" + ",".join(parts)
    ),
    st.text(max_size=30),
    st.sampled_from(["bytes=\u0663-", "items=0-1", "bytes=", "bytes=--", "bytes=1-0"]),
)
METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "get", "BREW"]
)
LENGTHS = st.one_of(
    st.none(), st.sampled_from(["0", "5", "-1", "abc", "9" * 40, "1e3", " 7 ", "0x10"])
)
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "FOO", ""])
SERVE = settings(
    max_examples=150,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def running_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """`python -m generator serve` in its own process, as a user runs it; its stderr goes
    to a file (a pipe nobody reads would fill and stall the server)."""
    base = tmp_path_factory.mktemp("serve")
    site = make_site(base)
    log = base / "stderr.txt"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "generator", "serve", "--site", str(site), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert process.stdout is not None
    first = process.stdout.readline().decode()
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", first).group(1))  # type: ignore[union-attr]
    yield port, log
    process.terminate()
    process.wait(timeout=10)
    printed = log.read_text(errors="replace")
    assert "Traceback" not in printed and "could not answer" not in printed, printed[-3000:]


def raw_request(port: int, request: bytes) -> tuple[int | None, bytes]:
    """Send ``request`` and read the whole answer (the server closes each connection; it
    may do so before it has read everything, e.g. after an HTTP/0.9 request line)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        deadline = time.monotonic() + 10
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                assert time.monotonic() < deadline, "the server did not finish its answer"
        except ConnectionResetError:  # it closed with our unread bytes still queued
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    if match:
        return int(match.group(1)), answer
    # A request line without a version (or a raw newline in the path, which ends it) is
    # HTTP/0.9, answered with the body alone: an error page, or the site's 404 page.
    error = re.search(rb"<p>Error code: (\d{3})</p>", answer)
    return (int(error.group(1)) if error else 404 if answer == NOT_FOUND else None), answer


@SERVE
@given(method=METHODS, path=PATHS, version=VERSIONS, byte_range=RANGES, length=LENGTHS)
@example(method="GET", path="/%ff", version="HTTP/1.1", byte_range=None, length=None)
@example(method="HEAD", path="/", version="HTTP/1.0", byte_range="bytes=1-" + "9" * 60, length=None)
@example(method="GET", path="/a%00b", version="HTTP/1.1", byte_range=None, length=None)
@example(method="GET", path="/etclink/passwd", version="HTTP/1.1", byte_range=None, length=None)
@example(
    method="GET",
    path="/runs/clip.mp4",
    version="HTTP/1.1",
    byte_range="bytes=" + "9" * 5000 + "-",
    length=None,
)
def test_any_request_gets_a_sane_answer_and_nothing_from_outside(
    running_serve: tuple[int, Path],
    method: str,
    path: str,
    version: str,
    byte_range: str | None,
    length: str | None,
) -> None:
    port, _ = running_serve
    lines = [f"{method} {path} {version}".rstrip(), "Host: 127.0.0.1"]
    if byte_range is not None:
        lines.append(f"Range: {byte_range}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + b"hello"
    note(repr(request[:300]))
    status, answer = raw_request(port, request)
    assert status in ALLOWED, answer[:300]
    assert SECRET not in answer
    head, _, body = answer.partition(b"\r\n\r\n")
    if status == 206:
        first, last, size = map(int, re.search(rb"bytes (\d+)-(\d+)/(\d+)", head).groups())  # type: ignore[union-attr]
        assert 0 <= first <= last < size
        if method == "GET":  # HEAD answers the same headers with no body
            assert len(body) == last - first + 1
        if method == "GET" and b"video/mp4" in head:
            assert size == len(BODY) and body == BODY[first : last + 1]
    if status == 200 and method == "GET" and b"video/mp4" in head:
        assert body == BODY


def test_the_fuzzed_server_is_still_answering(running_serve: tuple[int, Path]) -> None:
    """After the fuzzing (this runs later in the module) the same process still serves."""
    status, answer = raw_request(running_serve[0], b"GET /runs/clip.mp4 HTTP/1.0\r\n\r\n")
    assert status == 200 and answer.endswith(BODY)


def request_with_host(server: ThreadingHTTPServer, host: str | None, version: str = "1.1") -> int:
    """The status of ``GET /`` sent with ``Host: host`` (none when None)."""
    port = server.server_address[1]
    header = "" if host is None else f"Host: {host}\r\n"
    raw = f"GET / HTTP/{version}\r\n{header}Connection: close\r\n\r\n".encode()
    status, _ = raw_request(port, raw)
    assert status is not None
    return status


def test_only_requests_naming_this_server_are_answered(server: ThreadingHTTPServer) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends its
    own name in ``Host``; it gets 421, not the gallery. This server's names get the page."""
    port = server.server_address[1]
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", "[::1]"):
        assert request_with_host(server, host) == 200, host
    assert request_with_host(server, None, version="1.0") == 200  # curl -0, old tools
    for host in ("evil.example", f"evil.example:{port}", f"localhost:{port + 1}", "a@localhost"):
        assert request_with_host(server, host) == 421, host
    for host in ("127.0.0.1.evil.example", f"{socket.gethostname()}", "10.1.2.3", "[fe80::1]"):
        assert request_with_host(server, host) == 421, host
    assert request_with_host(server, None) == 400  # HTTP/1.1 requires Host
    # Bound to every interface, the machine's own name and its addresses name it too.
    wildcard = ("0.0.0.0", port)
    assert serve_module.host_allowed(f"{socket.gethostname()}:{port}", wildcard)
    assert serve_module.host_allowed("10.1.2.3", wildcard)
    assert not serve_module.host_allowed("evil.example", wildcard)
    assert serve_module.host_allowed("192.0.2.7", ("192.0.2.7", port))


def test_half_sent_requests_time_out_and_connections_are_capped(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris: connections that send half a request are closed after the request
    timeout, and no more than ``SERVE_CONNECTIONS`` are served (one thread each) at once;
    the server answers again once they are gone."""
    monkeypatch.setattr(serve_module.defaults, "SERVE_REQUEST_TIMEOUT", 1.0, raising=False)
    monkeypatch.setattr(serve_module.defaults, "SERVE_CONNECTIONS", 4, raising=False)
    monkeypatch.setattr(QuietHandler, "timeout", 1.0)
    server = make_server(site, port=0, handler=QuietHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
    before = threading.active_count()
    port = server.server_address[1]
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=6) for _ in range(12)]
        for conn in held:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        time.sleep(0.5)
        assert threading.active_count() - before <= 4
        started = time.monotonic()
        for conn in held:  # every one is closed by the server, none is left hanging
            with conn:
                assert closed_by_server(conn)
        assert time.monotonic() - started < 6
        assert get(server, "/")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_trickled_in_times_out_as_a_whole(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte every 0.2 s never lets one read wait a full second, yet the request as a
    whole has that second: the server closes the connection soon after it."""
    monkeypatch.setattr(QuietHandler, "timeout", 1.0)
    server = make_server(site, port=0, handler=QuietHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as conn:
            started, closed = time.monotonic(), False
            for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # reset: the server closed it
                    closed = True
                    break
                time.sleep(0.2)
            assert closed or closed_by_server(conn)
            assert time.monotonic() - started < 4
    finally:
        server.shutdown()
        server.server_close()


def closed_by_server(conn: socket.socket) -> bool:
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True
