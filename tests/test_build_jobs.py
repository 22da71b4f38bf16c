"""Where build jobs run (generator/jobs.py): a dask cluster's build equals a local one, and
a bad ``--scheduler`` or a missing dask is one line, not a traceback or a hang.

The cluster is a ``LocalCluster`` of two worker processes on 127.0.0.1, started and closed
by this module: the same protocol (tcp), pickling and result transfer as a remote cluster.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import generator.build.jobs as jobs
from generator.__main__ import main
from generator.build import build
from generator.build.artefacts import Job
from generator.config import BuildConfig
from generator.errors import NetlapseError, StoreError
from tests.conftest import make_store, restore_environment
from tests.test_build import one_error_line, unlisted_files


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a 2-worker LocalCluster on loopback, closed after the module."""
    distributed = pytest.importorskip("distributed")
    saved = dict(os.environ)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        restore_environment(saved)  # dask's Nanny wrote OMP_NUM_THREADS=1 & co. into ours
        yield cluster.scheduler_address
    restore_environment(saved)


def site_files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_cluster_build_equals_a_local_build(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same files, same bytes, pages and manifest included, for every artefact kind of a
    store without feature visualizations or dataset examples (grids, per-channel
    animations, contact sheets, kernels, kernel change since epoch 0, class probabilities).
    Each is a pure function of the store and the options; GIF and PNG bytes do not depend
    on the machine, and the MP4s match here because the workers run this machine's ffmpeg
    on its cores (a worker elsewhere may let x264 pick other threads: other, equally valid
    bytes).
    Pages hold no build time or host, and ``--scheduler`` is a local option the site never
    shows. The store is given by a relative path, as a user types it."""
    make_store(tmp_path / "run.zarr")
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "build", "--store", "run.zarr", "--out", "local", "--jobs", "2"]) == 0
    argv = ["-q", "build", "--store", "run.zarr", "--out", "cluster"]
    assert main([*argv, "--scheduler", scheduler]) == 0
    local, made = site_files(tmp_path / "local"), site_files(tmp_path / "cluster")
    kinds = {record["kind"] for record in json.loads(made["manifest.json"])["artefacts"].values()}
    assert kinds == {"grid", "channel", "contact", "kernels", "kernel-change", "probe"}
    assert made.keys() == local.keys()
    assert [name for name, data in made.items() if local[name] != data] == []


@pytest.mark.slow
def test_a_cluster_rebuild_without_changes_sends_no_job(scheduler: str, tmp_path: Path) -> None:
    """The planner, not the runner, decides what is up to date: a second cluster build
    makes nothing and rewrites no file."""
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    config = BuildConfig(stores=(store,), out=site, channel_probes=0, scheduler=scheduler)
    assert build(config).made > 0
    times = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}
    assert build(config).made == 0
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()} == times


def damage_logits(store: Path) -> None:
    """Flip a byte in the body of every ``logits`` chunk: found only when a job reads it."""
    for chunk in (store / "activations" / "logits" / "c").rglob("*"):
        if chunk.is_file():
            data = bytearray(chunk.read_bytes())
            data[len(data) // 2] ^= 0xFF
            chunk.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_job_that_fails_on_a_worker_is_its_own_error_and_every_file_is_owned(
    scheduler: str, tmp_path: Path
) -> None:
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    damage_logits(store)
    config = BuildConfig(stores=(store,), out=site, channel_probes=0, scheduler=scheduler)
    with pytest.raises(StoreError, match="logits"):  # the worker's error, as a local build's
        build(config)
    assert unlisted_files(site) == set() and not (site / "index.html").exists()


@pytest.mark.slow
def test_an_interrupted_cluster_build_owns_every_file_it_wrote(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while results arrive: the files already written are in the manifest left
    behind, and the next build finishes the site."""
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    real, count = jobs._write, {"n": 0}

    def interrupted_after_five(*args: object) -> None:
        count["n"] += 1
        if count["n"] > 5:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(jobs, "_write", interrupted_after_five)
    config = BuildConfig(stores=(store,), out=site, channel_probes=0, scheduler=scheduler)
    with pytest.raises(KeyboardInterrupt):
        build(config)
    assert count["n"] == 6 and list(site.rglob("*.gif"))  # five files were written
    assert unlisted_files(site) == set() and not (site / "index.html").exists()
    monkeypatch.undo()
    assert build(config).made > 0 and unlisted_files(site) == set()
    assert (site / "index.html").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_scheduler_that_is_not_there_is_one_line_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr(jobs, "CONNECT_TIMEOUT", 1.0)  # the default waits 5 s
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    address = f"tcp://127.0.0.1:{free_port()}"
    argv = ["-q", "build", "--store", str(store), "--out", str(site), "--scheduler", address]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"--scheduler {address}: no dask scheduler answered within 1 s" in line
    assert not site.exists()  # refused before anything was written


@pytest.mark.parametrize("address", ["nonsense", "foo://host:1", "tcp://host:port"])
def test_an_address_dask_cannot_parse_is_one_line(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    line = refused_in_one_line(address, tmp_path, capsys)
    assert f"--scheduler {address}: not a scheduler address" in line


def refused_in_one_line(address: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    """``build --scheduler address``'s one error line, checked to come within 6 s and
    before anything is written."""
    pytest.importorskip("distributed")
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    if not store.exists():
        make_store(store)
    argv = ["-q", "build", "--store", str(store), "--out", str(site), "--scheduler", address]
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 6
    assert not site.exists()
    return one_error_line(capsys)


def test_without_dask_scheduler_names_the_extra_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    store = tmp_path / "run.zarr"
    make_store(store)
    argv = ["-q", "build", "--store", str(store), "--out", str(tmp_path / "site")]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    line = one_error_line(capsys)
    assert "--scheduler needs dask.distributed" in line and "netlapse[cluster]" in line


def test_a_local_build_never_imports_dask(tmp_path: Path) -> None:
    """dask is optional: only ``--scheduler`` imports it (a fresh interpreter, since this
    session's other tests may have imported it)."""
    store = tmp_path / "run.zarr"
    make_store(store)
    code = (
        "import sys; from generator.__main__ import main; "
        f"assert main(['-q', 'build', '--store', {str(store)!r}, '--out', "
        f"{str(tmp_path / 'site')!r}, '--jobs', '1', '--channel-probes', '0']) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_job_for_another_machine_names_its_store_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started in another folder opens the same store; a URL is left alone."""
    monkeypatch.chdir(tmp_path)
    job = Job("runs/a.zarr", 3, None, 0, (), None)  # type: ignore[arg-type]
    assert jobs.portable(job).store == str(tmp_path.resolve() / "runs" / "a.zarr")
    url = Job("s3://bucket/runs/a.zarr", 3, None, 0, (), None)  # type: ignore[arg-type]
    assert jobs.portable(url).store == "s3://bucket/runs/a.zarr"


def peer(answer: bytes | None) -> Iterator[str]:
    """A TCP listener on loopback that is not dask: it sends ``answer`` on each connection
    (None: nothing, a silent socket) and keeps the connection open."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if answer is not None:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


NOT_DASK = {
    "silent": None,
    "http": b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\n<html>" + bytes(100),
    "garbage": bytes(range(256)) * 4,
    "huge length": (2**60).to_bytes(8, "little") + b"x" * 100,
}


@pytest.mark.parametrize("kind", NOT_DASK)
def test_a_peer_that_is_not_dask_is_one_line_within_the_timeout(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent socket, a web server, random bytes or a length dask would try to allocate
    (6.75 EiB): refused in one line within the connect timeout, nothing written."""
    monkeypatch.setattr(jobs, "CONNECT_TIMEOUT", 1.0)
    for address in peer(NOT_DASK[kind]):
        assert f"--scheduler {address}: " in refused_in_one_line(address, tmp_path, capsys)


@pytest.mark.parametrize("scheme", ["tls", "ws", "wss", "inproc", "ucx"])
def test_a_scheme_other_than_tcp_is_one_line(
    scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    address = f"{scheme}://127.0.0.1:{free_port()}"
    assert f"--scheduler {address}: " in refused_in_one_line(address, tmp_path, capsys)


def test_a_cluster_without_workers_fails_the_build_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker gone (here: none ever came): the build does not wait forever; after
    ``WORKERLESS_TIMEOUT`` it stops with one line, and every file it wrote is owned."""
    import threading

    from generator import defaults

    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(defaults, "WORKER_POLL", 0.5, raising=False)
    monkeypatch.setattr(defaults, "WORKERLESS_TIMEOUT", 1.0, raising=False)
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    errors: list[BaseException] = []

    def run(address: str) -> None:
        try:
            build(BuildConfig(stores=(store,), out=site, channel_probes=0, scheduler=address))
        except BaseException as exc:
            errors.append(exc)

    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster:
        thread = threading.Thread(target=run, args=(cluster.scheduler_address,), daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the build waited for workers forever"
    assert len(errors) == 1 and isinstance(errors[0], NetlapseError)
    assert "no dask worker for" in str(errors[0]) and "\n" not in str(errors[0])
    assert unlisted_files(site) == set()


@pytest.mark.slow
def test_every_worker_killed_mid_build_stops_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only worker goes away once the first files are back: the remaining jobs have no
    worker, and the build stops with one line after ``WORKERLESS_TIMEOUT`` instead of
    waiting forever; the files it wrote are in the manifest it leaves."""
    from generator import defaults

    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(defaults, "WORKER_POLL", 0.5, raising=False)
    monkeypatch.setattr(defaults, "WORKERLESS_TIMEOUT", 2.0, raising=False)
    store, site = tmp_path / "run.zarr", tmp_path / "site"
    make_store(store)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        real = jobs._write

        def kill_the_workers_then_write(*args: object) -> None:
            cluster.scale(0)  # every worker gone, mid-build
            real(*args)

        monkeypatch.setattr(jobs, "_write", kill_the_workers_then_write)
        config = BuildConfig(
            stores=(store,), out=site, channel_probes=0, scheduler=cluster.scheduler_address
        )
        with pytest.raises(NetlapseError, match="no dask worker for"):
            build(config)
    assert list(site.rglob("*.gif")) and unlisted_files(site) == set()
