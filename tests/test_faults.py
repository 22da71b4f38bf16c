"""Fault handling in-process: fault injection, locks, temp files, disk full, safe loading.

Also the helpers the other reliability tests share (``test_crash``, ``test_bad_input``):
comparing whole stores bit for bit and running the CLI for its one-line error.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import generator
from generator import faults
from generator.__main__ import main
from generator.errors import StoreError
from generator.store import open_run
from generator.store._writer import StoreWriter, remove_partial_files
from generator.train.checkpoint import (
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from tests.conftest import make_store, synthetic_record

ROOT = Path(__file__).resolve().parents[1]
# A real training run small enough to take about a second in-process: 2 conv blocks.
TINY_TRAIN = [
    "--input-size",
    "16",
    "--channels",
    "4,4",
    "--demo-per-class",
    "4",
    "--batch-size",
    "4",
    "--probes",
    "2",
]


# -- helpers shared by the reliability tests ---------------------------------------------
def store_arrays(path: Path) -> dict[str, zarr.Array]:
    """Every array of a store by path, straight from zarr (no netlapse code in between)."""
    group = zarr.open_group(str(path), mode="r")
    return {
        name: node for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)
    }


@functools.lru_cache(maxsize=4)
def reference_arrays(path: Path) -> dict[str, np.ndarray]:
    """A reference store read once (it never changes): array path -> numpy array."""
    return {name: np.asarray(array[()]) for name, array in store_arrays(path).items()}


def assert_same_epochs(store: Path, reference: Path, epochs: int | None = None) -> None:
    """Every array of ``store`` equals ``reference`` bit for bit, over the first ``epochs``
    epochs (all of them, with equal shapes, when None); probes are compared whole."""
    ours, theirs = store_arrays(store), reference_arrays(reference)
    assert sorted(ours) == sorted(theirs)
    for name, expected in theirs.items():
        actual = ours[name]
        assert actual.dtype == expected.dtype, name
        if name.startswith("probes/") or epochs is None:
            assert actual.shape == expected.shape, name
            index = ()
        else:
            assert actual.shape[0] >= epochs, name
            index = (slice(0, epochs),)
        assert np.asarray(actual[index]).tobytes() == expected[index].tobytes(), name


def leftovers(store: Path) -> list[Path]:
    """Temp files a killed run could leave: zarr's, checkpoints', a half-created store."""
    found = [p for p in store.rglob("*.partial")] if store.exists() else []
    ckpt = checkpoint_dir(store)
    found += list(ckpt.glob(".epoch-*.tmp")) if ckpt.exists() else []
    return found + list(store.parent.glob(f".{store.name}.creating-*"))


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    """The stderr of a failed CLI call, checked to be exactly one line without a traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


def train_cli(out: Path, *extra: str) -> int:
    """``python -m generator -q train`` in-process on the tiny settings."""
    return main(["-q", "train", "--out", str(out), *TINY_TRAIN, *extra])


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A demo cache shared by this module's in-process training runs."""
    yield tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_reference(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted tiny run of 3 epochs (E = 4): what every interrupted run must equal."""
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLAPSE_CACHE", str(tiny_cache))
        assert train_cli(out, "--epochs", "3") == 0
    return out


# -- the fault-injection module -----------------------------------------------------------
def test_kill_spec_is_parsed_and_checked() -> None:
    assert faults.parse("") is None
    assert faults.parse("store.array:2:5") == ("store.array", 2, 5, signal.SIGKILL)
    assert faults.parse("train.batch:1:0:stop") == ("train.batch", 1, 0, signal.SIGSTOP)
    for bad in ("store.array:2", "nowhere:1:1", "train.batch:1:1:explode", "train.batch:x:1"):
        with pytest.raises(ValueError):
            faults.parse(bad)


def test_pause_needs_the_file_that_resumes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.RESUME_ENV, raising=False)
    with pytest.raises(ValueError, match=faults.RESUME_ENV):
        faults.parse("train.epoch_end:1:0:pause")
    monkeypatch.setenv(faults.RESUME_ENV, "/tmp/go")
    assert faults.parse("train.epoch_end:1:0:pause") == ("train.epoch_end", 1, 0, faults.PAUSE)


def test_pause_holds_only_the_calling_thread_until_the_file_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The held thread waits for the resume file; the others (a live gallery's) go on."""
    resume = tmp_path / "go"
    monkeypatch.setenv(faults.RESUME_ENV, str(resume))
    monkeypatch.setenv(faults.ENV, "train.epoch_end:1:0:pause")
    monkeypatch.setattr(faults, "_target", faults._UNPARSED)
    held = threading.Thread(target=faults.maybe_die, args=("train.epoch_end", 1, 0))
    held.start()
    held.join(timeout=0.5)
    assert held.is_alive()  # still held; this thread is not
    resume.touch()
    held.join(timeout=30)
    assert not held.is_alive()


def test_maybe_die_costs_nothing_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.setattr(faults, "_target", faults._UNPARSED)
    faults.maybe_die("train.batch", 0, 0)
    assert faults._target is None  # parsed once; later calls read one global
    started = time.perf_counter()
    for index in range(100_000):
        faults.maybe_die("store.array", 1, index)
    assert time.perf_counter() - started < 1.0  # ~0.03 s; generous for a loaded machine


@pytest.mark.parametrize(
    "spec, alive",
    [("store.array:1:2", False), ("store.array:1:3", True), ("train.batch:1:2", True)],
)
def test_maybe_die_kills_exactly_at_its_point(spec: str, alive: bool) -> None:
    code = "from generator.faults import maybe_die; maybe_die('store.array', 1, 2); print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, faults.ENV: spec},
        timeout=60,
    )
    assert result.returncode == (0 if alive else -signal.SIGKILL)
    assert ("ok" in result.stdout) is alive


# -- safe loading -------------------------------------------------------------------------
def _sources() -> list[Path]:
    return sorted(Path(generator.__file__).parent.rglob("*.py"))


def test_checkpoints_are_only_loaded_with_weights_only() -> None:
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "allow_pickle=True" not in text, path


def test_nothing_in_the_generator_imports_pickle() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|shelve)\b", re.M)
    offenders = [str(path) for path in _sources() if pattern.search(path.read_text("utf-8"))]
    assert offenders == []


class Payload:
    """An object a malicious checkpoint might carry: unpickling it would run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_carrying_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(StoreError, match="unreadable checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


# -- store creation, locks and temp files -------------------------------------------------
def test_a_failed_create_leaves_no_store_and_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.store import _writer as store_module

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "create_arrays", disk_full)
    with pytest.raises(StoreError, match="No space left on device"):
        make_store(tmp_path / "run.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_stale_staging_folder_is_cleared_by_the_next_create(tmp_path: Path) -> None:
    stale = tmp_path / ".run.zarr.creating-99999"
    (stale / "probes").mkdir(parents=True)
    make_store(tmp_path / "run.zarr")
    assert not stale.exists()
    assert open_run(tmp_path / "run.zarr").epochs == 3


def test_one_store_has_one_writer(tiny_store: Path) -> None:
    writer = StoreWriter.open_for_resume(tiny_store)
    with pytest.raises(StoreError, match="another process is writing"):
        StoreWriter.open_for_resume(tiny_store)
    writer.close()
    StoreWriter.open_for_resume(tiny_store).close()


def test_a_killed_writer_leaves_no_stale_lock(tiny_store: Path) -> None:
    code = (
        "import sys, time; from generator.store._writer import StoreWriter; "
        "w = StoreWriter.open_for_resume(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tiny_store)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="another process is writing"):
            StoreWriter.open_for_resume(tiny_store)
    finally:
        holder.kill()
        holder.wait()
    StoreWriter.open_for_resume(tiny_store).close()


def test_partial_files_are_ignored_by_readers_and_removed_by_resume(tiny_store: Path) -> None:
    planted = [
        tiny_store / "zarr.0badc0de.partial",
        tiny_store / "activations/block1/c/1/0/0/0/0.0badc0de.partial",
        tiny_store / "activations/block1/c/3/0/0/0/0.0badc0de.partial",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a chunk")
    run = open_run(tiny_store)
    assert run.epochs == 3 and run.layer_activations("block1").shape[0] == 3
    StoreWriter.open_for_resume(tiny_store).close()
    assert not any(path.exists() for path in planted)
    assert remove_partial_files(tiny_store) == 0


def test_checkpoint_temps_are_removed(tmp_path: Path) -> None:
    store = tmp_path / "run.zarr"
    folder = checkpoint_dir(store)
    folder.mkdir()
    (folder / ".epoch-0003.pt.4242.tmp").write_bytes(b"half")
    assert remove_stale_temps(store) == 1
    save_checkpoint(store, 0, {"w": torch.ones(2)}, keep=2)
    (folder / ".epoch-0001.pt.4242.tmp").write_bytes(b"half")
    assert list(list_checkpoints(store)) == [0]  # a temp is never taken for a checkpoint
    save_checkpoint(store, 1, {"w": torch.ones(2)}, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0000.pt", "epoch-0001.pt"]


def test_a_checkpoint_that_cannot_be_written_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.train import checkpoint as checkpoint_module

    def disk_full(path: Path, data) -> None:
        path.write_bytes(bytes(data)[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "write_bytes", disk_full)
    with pytest.raises(StoreError, match=r"cannot write the checkpoint \(No space left"):
        save_checkpoint(tmp_path / "run.zarr", 0, {"w": torch.ones(2)}, keep=2)
    assert list(checkpoint_dir(tmp_path / "run.zarr").iterdir()) == []


def test_a_failed_commit_is_one_line_and_keeps_the_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_store(tmp_path / "run.zarr", epochs=2)
    real = writer._group.attrs.__class__.__setitem__

    def disk_full(self, key, value):
        if key == "epochs_committed":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, key, value)

    monkeypatch.setattr(writer._group.attrs.__class__, "__setitem__", disk_full)
    with pytest.raises(StoreError, match="cannot mark 3 epochs committed"):
        writer.write_epoch(2, synthetic_record(2))
    monkeypatch.undo()
    assert open_run(tmp_path / "run.zarr").epochs == 2


# -- disk full during a real training run -------------------------------------------------
def _full_from_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make zarr's file writer fail with ENOSPC for every chunk of ``epoch`` and later."""
    import zarr.storage._local as local

    real = local._put

    def put(path: Path, value, exclusive: bool = False) -> int:
        parts = Path(path).parts
        if "c" in parts and int(parts[parts.index("c") + 1]) >= epoch:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)


@pytest.mark.slow
def test_disk_full_during_a_store_write_keeps_committed_epochs(
    tmp_path: Path,
    tiny_cache: Path,
    tiny_reference: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("NETLAPSE_CACHE", str(tiny_cache))
    out = tmp_path / "full.zarr"
    with monkeypatch.context() as full:
        _full_from_epoch(full, 2)
        assert train_cli(out, "--epochs", "3") == 2
    err = one_line_error(capsys)
    assert str(out) in err and "No space left on device" in err
    assert "writing epoch 2 failed" in err and "2 epochs committed before it are intact" in err
    assert open_run(out).epochs == 2
    assert_same_epochs(out, tiny_reference, epochs=2)
    assert train_cli(out, "--epochs", "3", "--resume") == 0  # space freed: carry on
    assert_same_epochs(out, tiny_reference)
    assert leftovers(out) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only): a real full disk rather than an injected error."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# float32 activations of 16 channels at 64 px for 4 probes: ~1.1 MB an epoch, tiny checkpoints
# (the small head), so the 3 MiB disk fills while the store writes, a few epochs in.
FILLING = [
    "--input-size",
    "64",
    "--channels",
    "16,4,4,4,4",
    "--probes",
    "4",
    "--activation-dtype",
    "float32",
    "--demo-per-class",
    "4",
    "--batch-size",
    "8",
]


@pytest.mark.slow
def test_a_really_full_disk_is_one_line_and_keeps_committed_epochs(
    small_tmpfs: Path,
    tmp_path: Path,
    tiny_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("NETLAPSE_CACHE", str(tiny_cache))
    reference = tmp_path / "reference.zarr"
    assert main(["-q", "train", "--out", str(reference), *FILLING, "--epochs", "3"]) == 0
    out = small_tmpfs / "run.zarr"
    assert main(["-q", "train", "--out", str(out), *FILLING, "--epochs", "3"]) == 2
    err = one_line_error(capsys)
    assert "No space left on device" in err and "intact" in err
    committed = open_run(out).epochs
    assert 1 <= committed < 4
    assert_same_epochs(out, reference, epochs=committed)
    moved = tmp_path / "moved.zarr"  # free space: carry on from a disk with room
    shutil.copytree(out, moved)
    shutil.copytree(checkpoint_dir(out), checkpoint_dir(moved))
    assert main(["-q", "train", "--out", str(moved), *FILLING, "--epochs", "3", "--resume"]) == 0
    assert_same_epochs(moved, reference)
