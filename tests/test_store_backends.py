"""Run stores on object storage, against a real S3-compatible server on 127.0.0.1.

moto's server mode (``moto[server]``) is started by the tests on a free loopback port and
stopped after; credentials and the endpoint reach netlapse only through the standard
``AWS_*`` environment variables, as they would for a user. No test talks to anything but
127.0.0.1. Covered: URL parsing, the writer and reader on S3, a second process reading the
store with plain zarr, the lock object, a creation that was interrupted, bad input (an
unreachable endpoint, a missing bucket, wrong credentials, an unknown scheme) and an
endpoint that goes away mid-run; the slow test trains, kills, resumes and builds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from generator.__main__ import main
from generator.errors import OptionError, StoreError
from generator.store import StoreWriter, open_run
from generator.store._backends import OPTIONS_ENV, StoreURL, store_location, zarr_store
from generator.store._files import CREATING, remote_state
from generator.train.checkpoint import checkpoint_dir
from tests.conftest import make_store, synthetic_record
from tests.test_faults import TINY_TRAIN, one_line_error, reference_arrays

moto_server = pytest.importorskip("moto.server")
ROOT = Path(__file__).resolve().parents[1]
AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def start_server() -> tuple[object, str]:
    """A moto S3 server on a free loopback port, without its request log on stderr."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 on a free loopback port, for this module; its endpoint URL."""
    server, endpoint = start_server()
    yield endpoint
    server.stop()


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, *, key: str = "testing") -> None:
    """The environment a user sets for an S3-compatible server, and nothing else."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(OPTIONS_ENV, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")


def create_bucket(endpoint: str) -> str:
    import boto3

    name = f"netlapse-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the module's server, with the AWS_* variables pointing at it."""
    use_endpoint(monkeypatch, s3_server)
    return create_bucket(s3_server)


@pytest.fixture(scope="module")
def shared_store(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One synthetic store written to S3 and the same store on disk, made once for the
    tests that only read (a store on moto takes seconds to write)."""
    with pytest.MonkeyPatch.context() as patch:
        use_endpoint(patch, s3_server)
        url = f"s3://{create_bucket(s3_server)}/runs/synthetic.zarr"
        make_store(store_location(url)).close()
    local = tmp_path_factory.mktemp("local") / "local.zarr"
    make_store(local).close()
    return url, local


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- locations ---------------------------------------------------------------------------------
def test_urls_and_paths_are_told_apart() -> None:
    url = store_location("s3://bucket/runs/demo.zarr/")
    assert isinstance(url, StoreURL)
    assert (url.url, url.name, url.family) == ("s3://bucket/runs/demo.zarr", "demo.zarr", "s3")
    assert str(url.with_name("other.zarr")) == "s3://bucket/runs/other.zarr"
    assert store_location("runs/demo.zarr") == Path("runs/demo.zarr")
    assert store_location("file:///tmp/demo.zarr") == Path("/tmp/demo.zarr")
    with pytest.raises(OptionError, match="name a store inside the bucket"):
        store_location("s3://bucket")


def test_checkpoints_of_a_url_store_are_local(tmp_path: Path, monkeypatch) -> None:
    from generator.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(out=store_location("s3://b/runs/x.zarr"))
    assert checkpoint_dir(config.out) == tmp_path / "x.zarr.ckpt"
    chosen = TrainConfig(out=store_location("s3://b/runs/x.zarr"), checkpoints=Path("ck"))
    assert checkpoint_dir(chosen.out) == tmp_path / "ck" / "x.zarr.ckpt"
    with pytest.raises(OptionError, match="--checkpoints"):
        TrainConfig(out=tmp_path / "x.zarr", checkpoints=tmp_path)


# -- the store on S3 ---------------------------------------------------------------------------
def test_a_store_on_s3_reads_like_the_same_store_on_disk(bucket: str, shared_store) -> None:
    url, path = shared_store
    remote, local = open_run(url), open_run(path)
    assert remote.epochs == local.epochs == 3
    assert remote.name == "synthetic"
    for layer in local.layers:
        np.testing.assert_array_equal(
            remote.layer_activations(layer.name), local.layer_activations(layer.name)
        )
    np.testing.assert_array_equal(remote.confusion(), local.confusion())


READ_WITH_PLAIN_ZARR = """
import json, sys, zarr, zarr.storage
from obstore.store import from_url
group = zarr.open_group(zarr.storage.ObjectStore(from_url(sys.argv[1]), read_only=True), mode="r")
print(json.dumps({"epochs": group.attrs["epochs_committed"],
                  "block1": group["activations/block1"][:3].astype(float).sum()}))
"""


def read_in_another_process(url: str) -> dict:
    """What a second process that knows only zarr, obstore and the AWS_* variables reads."""
    done = subprocess.run(
        [sys.executable, "-c", READ_WITH_PLAIN_ZARR, url],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_another_process_reads_the_store_with_plain_zarr(bucket: str, shared_store) -> None:
    url, path = shared_store
    expected = zarr.open_group(str(path), mode="r")
    seen = read_in_another_process(url)
    assert seen["epochs"] == 3
    assert seen["block1"] == pytest.approx(
        float(expected["activations/block1"][:3].astype(float).sum())
    )


def test_info_names_the_url_and_the_size_of_its_objects(bucket: str, shared_store, capsys) -> None:
    url, _ = shared_store
    assert main(["info", url]) == 0
    out = capsys.readouterr().out
    assert f"store      {url}" in out
    assert "3 committed" in out
    assert " KB on disk" in out


@pytest.mark.slow  # writes a store to moto: seconds
def test_the_recorder_api_records_into_a_url_and_resumes_there(bucket: str) -> None:
    from generator import Recorder
    from tests.test_record_recorder import CLASSES, probe_images, reference_cnn

    model, url = reference_cnn(), f"s3://{bucket}/runs/mine.zarr"
    with Recorder(model, probes=probe_images(), out=url, class_names=CLASSES) as rec:
        rec.epoch(train_loss=1.0)
    with Recorder(model, probes=probe_images(), out=url, class_names=CLASSES, resume=True) as rec:
        assert rec.epochs_committed == 2
        rec.epoch(train_loss=0.5)
    assert open_run(url).scalar_metric("train_loss")[1:].tolist() == [1.0, 0.5]


# -- the lock object ---------------------------------------------------------------------------
def test_one_store_on_s3_has_one_writer(bucket: str) -> None:
    url = store_location(f"s3://{bucket}/runs/locked.zarr")
    writer = make_store(url, epochs=1)
    with pytest.raises(StoreError, match=r"another process is writing.*\.lock"):
        StoreWriter.open_for_resume(url)
    writer.close()
    StoreWriter.open_for_resume(url).close()  # the lock went with close()


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(bucket: str) -> None:
    url = store_location(f"s3://{bucket}/runs/stale.zarr")
    make_store(url, epochs=1).close()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    plant_lock(url, {"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0})
    StoreWriter.open_for_resume(url).close()


def test_a_lock_of_another_host_is_refused_naming_the_object_to_delete(bucket: str) -> None:
    url = store_location(f"s3://{bucket}/runs/elsewhere.zarr")
    make_store(url, epochs=1).close()
    plant_lock(url, {"host": "gpu-node-7", "pid": 4242, "since": 0})
    with pytest.raises(StoreError) as refused:
        StoreWriter.open_for_resume(url)
    message = str(refused.value)
    assert "pid 4242 on gpu-node-7" in message
    assert f"delete the lock object {url}.lock" in message


def plant_lock(url: StoreURL, holder: dict) -> None:
    import obstore

    from generator.store._backends import object_store

    obstore.put(object_store(url.parent), url.name + ".lock", json.dumps(holder).encode())


# -- creation without rename -------------------------------------------------------------------
class Interrupted(Exception):
    pass


@pytest.mark.slow  # writes a store to moto: seconds
def test_a_store_whose_creation_was_interrupted_is_not_there_and_is_made_again(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_location(f"s3://{bucket}/runs/halfmade.zarr")

    def die(point: str, *_args) -> None:
        if point == "store.create":
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr("generator.store._staging.maybe_die", die)
        with pytest.raises(Interrupted):
            make_store(url, epochs=1)
    assert remote_state(url) == CREATING  # arrays are there, the root says "creating"
    with pytest.raises(StoreError, match="still being created"):
        open_run(url)
    with pytest.raises(StoreError, match="no run store to resume"):
        from generator.store import check_remote_out

        check_remote_out(url, resume=True)
    make_store(url, epochs=1).close()  # the same --out again: made from scratch
    assert open_run(url).epochs == 1


@pytest.mark.slow  # writes a store to moto: seconds
def test_a_new_run_never_overwrites_a_store_on_s3(bucket: str) -> None:
    url = store_location(f"s3://{bucket}/runs/kept.zarr")
    make_store(url, epochs=1).close()
    with pytest.raises(StoreError, match="already exists"):
        make_store(url, epochs=1)
    assert open_run(url).epochs == 1


# -- bad input: one line each, naming what to fix ----------------------------------------------
def test_an_unreachable_endpoint_is_one_line_and_quick(monkeypatch, capsys) -> None:
    use_endpoint(monkeypatch, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert main(["info", "s3://bucket/runs/x.zarr"]) == 2
    # Bounded retries: object_store's defaults would retry for 3 minutes.
    assert time.monotonic() - started < 60
    assert "cannot reach the endpoint; check AWS_ENDPOINT_URL" in one_line_error(capsys)


def test_a_missing_bucket_is_one_line_naming_it(s3_server: str, monkeypatch, capsys) -> None:
    use_endpoint(monkeypatch, s3_server)
    assert main(["-q", "train", "--out", "s3://no-such-bucket/runs/x.zarr"]) == 2
    error = one_line_error(capsys)
    assert "the bucket 'no-such-bucket' does not exist" in error
    assert "--out" in error


def test_an_unknown_scheme_is_one_line_naming_the_option(capsys) -> None:
    assert main(["info", "nosuchfs://bucket/runs/x.zarr"]) == 2
    error = one_line_error(capsys)
    assert "no object store for nosuchfs:// URLs" in error
    assert "--out / --store" in error


def test_a_storage_option_overrides_the_environment(
    bucket: str, shared_store, monkeypatch, capsys
) -> None:
    url, _ = shared_store
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["info", url, "--storage-option", f"endpoint={endpoint}"]) == 0
    assert "3 committed" in capsys.readouterr().out


def test_a_bad_storage_option_is_one_line(capsys) -> None:
    assert main(["info", "s3://b/x.zarr", "--storage-option", "novalue"]) == 2
    assert "expected KEY=VALUE" in one_line_error(capsys)


MALFORMED_ENDPOINTS = (
    "http://127.0.0.1:99999",
    "http://[::1",
    "http://127.0.0.1:-1",
    "http://a b",
    "http://256.1.1.1:9000",
)


@pytest.mark.parametrize("endpoint", MALFORMED_ENDPOINTS)
@pytest.mark.parametrize("given", ["environment", "option"])
def test_a_malformed_endpoint_is_one_line_never_a_panic(
    endpoint: str, given: str, monkeypatch, capsys
) -> None:
    """obstore's client panics on such URLs at its first request (a ``BaseException``
    that ``except Exception`` misses): they are refused first, naming where they came
    from, and a panic that still happens is a one-line ``StoreError``."""
    use_endpoint(monkeypatch, "http://127.0.0.1:9")
    argv = ["info", "s3://bucket/runs/x.zarr"]
    if given == "option":
        argv += ["--storage-option", f"endpoint={endpoint}"]
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert main(argv) == 2
    error = one_line_error(capsys)
    named = "--storage-option endpoint" if given == "option" else "AWS_ENDPOINT_URL"
    assert f"{named}={endpoint}: not a valid URL" in error


@pytest.mark.parametrize("name", ["AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_REGION"])
def test_a_credential_a_request_cannot_carry_is_one_line(name: str, monkeypatch, capsys) -> None:
    """A newline in a token (a paste gone wrong) would make obstore panic when it signs."""
    use_endpoint(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setenv(name, "abc\ndef")
    assert main(["info", "s3://bucket/runs/x.zarr"]) == 2
    assert f"{name}: holds a newline" in one_line_error(capsys)


def test_a_panic_of_the_object_store_client_is_a_store_error() -> None:
    from generator.store._backends import remote_call

    class PanicException(BaseException):  # as pyo3_runtime names it
        pass

    url = StoreURL("s3://b/x.zarr")
    with pytest.raises(StoreError, match="object-storage client failed"), remote_call(url):
        raise PanicException("called `Result::unwrap()` on an `Err` value: InvalidPort")
    with pytest.raises(KeyboardInterrupt), remote_call(url):  # other BaseExceptions pass
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def checking_server() -> Iterator[str]:
    """A second moto server that checks credentials (its settings are read at import, so
    it runs in its own process); none we send is known to it."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    code = (
        "import sys; from moto.server import ThreadedMotoServer; "
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start(); "
        "print(s.get_host_and_port()[1], flush=True); sys.stdin.read(); s.stop()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = process.stdout.readline().strip()
    yield f"http://127.0.0.1:{port}"
    process.stdin.close()
    process.wait(timeout=60)


def test_wrong_credentials_are_one_line_naming_the_variables(
    checking_server: str, monkeypatch, capsys
) -> None:
    use_endpoint(monkeypatch, checking_server, key="wrong")
    assert main(["info", "s3://bucket/runs/x.zarr"]) == 2
    error = one_line_error(capsys)
    assert "refused the credentials" in error
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in error


@pytest.mark.slow  # writes a store to moto: seconds
def test_an_endpoint_lost_mid_run_keeps_the_committed_epochs(monkeypatch) -> None:
    server, endpoint = start_server()
    use_endpoint(monkeypatch, endpoint)
    url = store_location(f"s3://{create_bucket(endpoint)}/runs/lost.zarr")
    writer = make_store(url, trim=False)
    server.stop()  # moto keeps its buckets in this process: a new server serves them again
    with pytest.raises(StoreError, match="writing epoch 3 failed.*the 3 epochs committed"):
        writer.write_epoch(3, synthetic_record(3))
    writer.close()  # cannot delete its lock object: warns, never raises
    again, endpoint = start_server()
    try:
        use_endpoint(monkeypatch, endpoint)
        assert open_run(url).epochs == 3
    finally:
        again.stop()


@pytest.mark.slow  # writes a store to moto: seconds
def test_a_bucket_deleted_mid_run_is_one_honest_line(s3_server: str, monkeypatch, caplog) -> None:
    """The bucket goes while training writes: the error says the committed epochs went
    with it (checked, not assumed), in whole words, without the server's XML."""
    import boto3

    use_endpoint(monkeypatch, s3_server)
    name = create_bucket(s3_server)
    writer = make_store(store_location(f"s3://{name}/runs/gone.zarr"), trim=False)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)
    with pytest.raises(StoreError) as caught:
        writer.write_epoch(3, synthetic_record(3))
    writer.close()  # its lock object went with the bucket: nothing to warn of
    assert "lock object" not in caplog.text
    message = str(caught.value)
    assert "writing epoch 3 failed" in message and "intact" not in message
    assert "the store is gone, and the 3 epochs committed before it with it" in message
    assert "\n" not in message and "<" not in message and len(message) < 600


def test_a_storage_error_is_shortened_at_a_word_without_its_xml() -> None:
    from generator.store._staging import reason

    body = "<?xml version='1.0'?><Error><Code>NoSuchBucket</Code></Error>"
    text = reason(Exception("Server returned non-2xx status " + "code " * 60 + body))
    assert text.endswith("code...") and "<" not in text and len(text) <= 200


# -- end to end --------------------------------------------------------------------------------
def train_process(out: str, checkpoints: Path | None, *extra: str, kill_at: str | None = None):
    """``train`` of the tiny run in a new process with one torch thread. A run is
    bit-identical to another only at the same thread count (a reduction split over two
    threads adds in another order), so every run compared here is made the same way,
    none inherits the test process's torch state, and ``--checkpoints`` is passed only
    for a store in object storage."""
    env = {k: v for k, v in os.environ.items() if k != "NETLAPSE_KILL_AT"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if kill_at:
        env["NETLAPSE_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "generator", "-q", "train", "--out", out, *TINY_TRAIN]
    command += ["--epochs", "2", *extra]
    if checkpoints is not None:
        command += ["--checkpoints", str(checkpoints)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_kill_resume_read_and_build_on_s3(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train 2 epochs into S3, killed while writing epoch 2; resume; the store equals an
    uninterrupted local run bit for bit; another process reads it; a gallery is built."""
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    reference = tmp_path / "reference.zarr"
    uninterrupted = train_process(str(reference), None)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    url = f"s3://{bucket}/runs/tiny.zarr"
    killed = train_process(url, tmp_path, kill_at="store.array:2:10")
    assert killed.returncode == -9, killed.stderr
    assert read_in_another_process(url)["epochs"] == 2  # epoch 2 was half written: uncommitted
    resumed = train_process(url, tmp_path, "--resume")  # the dead run's lock is taken over
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "tiny.zarr.ckpt").is_dir()
    group = zarr.open_group(zarr_store(store_location(url), read_only=True), mode="r")
    for name, expected in reference_arrays(reference).items():
        assert np.asarray(group[name][()]).tobytes() == expected.tobytes(), name
    # Two build workers (new processes) reach the endpoint through --storage-option alone.
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    site = tmp_path / "site"
    build = ["-q", "build", "--store", url, "--out", str(site), "--formats", "gif", "--jobs", "2"]
    assert main([*build, "--storage-option", f"endpoint={endpoint}"]) == 0
    assert (site / "index.html").is_file()
    manifest = json.loads((site / "manifest.json").read_text())
    assert "tiny" in json.dumps(manifest)
