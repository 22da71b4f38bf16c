"""Checkpoints are bound to their store: `--resume` never continues another run.

The scenario of issue 8, end to end: a run is trained, its store deleted (as the store's
own message suggests, to start again), a new run with another seed is killed, then resumed.
It must finish the new run bit for bit, never continue the deleted one; the deleted run's
checkpoints are moved aside, not deleted. Also: two store names never share a checkpoint
folder, pruning never removes a later epoch, a checkpoint of another run (by its id, or by
its weights for stores made before run ids) is refused in one line, and stores of the old
checkpoint layout still resume.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.errors import StoreError
from generator.faults import ENV
from generator.store import open_run
from generator.train.checkpoint import (
    check_owner,
    checkpoint_dir,
    legacy_checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    resumable_checkpoints,
    save_checkpoint,
    set_aside_orphans,
)
from tests.test_faults import TINY_TRAIN, assert_same_epochs, one_line_error, train_cli

ROOT = Path(__file__).resolve().parents[1]


def test_two_store_names_never_share_a_checkpoint_folder(tmp_path: Path) -> None:
    names = ["col", "col.zarr", "col.zarr.zarr", "col.ckpt"]
    folders = {checkpoint_dir(tmp_path / name) for name in names}
    assert len(folders) == len(names)
    assert checkpoint_dir(tmp_path / "runs" / "x.zarr") == tmp_path / "runs" / "x.zarr.ckpt"
    assert legacy_checkpoint_dir(tmp_path / "x.zarr") == tmp_path / "x.ckpt"
    assert legacy_checkpoint_dir(tmp_path / "col") is None  # its folder never moved


def test_saving_never_prunes_a_later_epoch(tmp_path: Path) -> None:
    """Stale checkpoints of higher epochs must not push a run's own ones out."""
    store = tmp_path / "run.zarr"
    for epoch in (5, 6):
        save_checkpoint(store, epoch, {"epoch": epoch}, keep=0)
    save_checkpoint(store, 0, {"epoch": 0}, keep=2)
    save_checkpoint(store, 1, {"epoch": 1}, keep=2)
    save_checkpoint(store, 2, {"epoch": 2}, keep=2)
    assert list(list_checkpoints(store)) == [1, 2, 5, 6]


def test_a_new_store_moves_an_orphaned_checkpoint_folder_aside(tmp_path: Path) -> None:
    store = tmp_path / "run.zarr"
    save_checkpoint(store, 3, {"epoch": 3, "run_id": "old"}, keep=2)
    aside = set_aside_orphans(store)
    assert aside == tmp_path / "run.zarr.ckpt.orphan-1"
    assert not checkpoint_dir(store).exists()
    assert [p.name for p in aside.iterdir()] == ["epoch-0003.pt"]  # kept, not deleted
    checkpoint_dir(store).mkdir()  # an empty folder is simply removed
    assert set_aside_orphans(store) is None and not checkpoint_dir(store).exists()


def test_the_folder_of_an_existing_store_is_never_set_aside(tmp_path: Path) -> None:
    store = tmp_path / "run.zarr"
    store.mkdir()
    save_checkpoint(store, 1, {"epoch": 1}, keep=2)
    assert set_aside_orphans(store) is None
    assert list(list_checkpoints(store)) == [1]


def test_an_old_layout_folder_of_a_neighbour_is_not_taken_for_an_orphan(tmp_path: Path) -> None:
    """``col.ckpt`` is where ``col.zarr`` kept its checkpoints before the full-name layout."""
    (tmp_path / "col.zarr").mkdir()
    (tmp_path / "col.ckpt").mkdir()
    save_checkpoint(tmp_path / "col", 1, {"epoch": 1}, keep=2)  # writes col.ckpt/
    with pytest.raises(StoreError, match=r"col\.ckpt may hold the checkpoints of .*col\.zarr"):
        set_aside_orphans(tmp_path / "col")
    assert (tmp_path / "col.ckpt" / "epoch-0001.pt").exists()


def test_only_a_store_made_before_run_ids_looks_in_the_old_folder(tmp_path: Path) -> None:
    """A new ``x.zarr`` must not take ``x.ckpt`` (an orphan, or the folder of a store ``x``)."""
    store = tmp_path / "x.zarr"
    save_checkpoint(tmp_path / "x", 4, {"epoch": 4}, keep=2)  # x.ckpt/epoch-0004.pt
    assert resumable_checkpoints(store, made_before_run_ids=False) == {}
    assert list(resumable_checkpoints(store, made_before_run_ids=True)) == [4]


def test_check_owner_refuses_another_run_and_another_epoch(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr.ckpt" / "epoch-0002.pt"
    check_owner(path, {"epoch": 2, "run_id": "a"}, store=tmp_path / "run.zarr", run_id="a")
    for state in ({"epoch": 2, "run_id": "b"}, {"epoch": 2}):
        with pytest.raises(StoreError, match="belongs to another run") as info:
            check_owner(path, state, store=tmp_path / "run.zarr", run_id="a")
        assert "\n" not in str(info.value) and "move" in str(info.value)
    with pytest.raises(StoreError, match="holds epoch 1"):
        check_owner(path, {"epoch": 1, "run_id": "a"}, store=tmp_path / "run.zarr", run_id="a")


# -- end to end ---------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.getbasetemp() / "checkpoint-cache"
    monkeypatch.setenv("NETLAPSE_CACHE", str(folder))
    return folder


def train_killed_at(out: Path, spec: str, *extra: str) -> None:
    """``train`` in a subprocess that SIGKILLs itself at ``spec`` (generator/faults.py)."""
    command = [sys.executable, "-m", "generator", "-q", "train", "--out", str(out)]
    done = subprocess.run(
        [*command, *TINY_TRAIN, *extra],
        cwd=ROOT,
        env={**os.environ, ENV: spec},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["train.committed:1:0", "train.epoch_end:1:0"])
def test_resume_after_the_store_was_deleted_never_continues_the_old_run(
    spec: str, tmp_path: Path, cache: Path
) -> None:
    """Issue 8.1: seed 1, ``rm -rf`` the store, seed 7 killed after epoch 1, ``--resume``."""
    out = tmp_path / "x.zarr"
    assert train_cli(out, "--seed", "1", "--epochs", "2") == 0
    old = {p.name: p.read_bytes() for p in checkpoint_dir(out).iterdir()}
    shutil.rmtree(out)
    train_killed_at(out, spec, "--seed", "7", "--epochs", "3")
    assert train_cli(out, "--seed", "7", "--epochs", "3", "--resume") == 0
    reference = tmp_path / "seed7.zarr"
    assert train_cli(reference, "--seed", "7", "--epochs", "3") == 0
    assert_same_epochs(out, reference)  # the seed-7 run, every array, every epoch
    assert open_run(out).attrs.training["seed"] == 7
    aside = tmp_path / "x.zarr.ckpt.orphan-1"  # the seed-1 checkpoints: kept, set aside
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == old


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny runs of 2 epochs with different seeds, made once."""
    root = tmp_path_factory.mktemp("two-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLAPSE_CACHE", str(tmp_path_factory.getbasetemp() / "checkpoint-cache"))
        for seed in ("0", "7"):
            assert train_cli(root / f"seed{seed}.zarr", "--seed", seed, "--epochs", "2") == 0
    return root / "seed0.zarr", root / "seed7.zarr"


def copy_run(store: Path, to: Path) -> Path:
    shutil.copytree(store, to)
    shutil.copytree(checkpoint_dir(store), checkpoint_dir(to))
    return to


def make_pre_run_id(store: Path) -> None:
    """What a store and its checkpoints of an earlier netlapse look like: no run id."""
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["run_id"]
    (store / "zarr.json").write_text(json.dumps(meta))
    for path in list_checkpoints(store).values():
        state = load_checkpoint(path)
        del state["run_id"]
        torch.save(state, path)


@pytest.mark.slow
@pytest.mark.parametrize("pre_run_id", [False, True], ids=["run id", "old store, by weights"])
def test_resume_refuses_a_checkpoint_of_another_run(
    pre_run_id: bool,
    two_runs: tuple[Path, Path],
    tmp_path: Path,
    cache: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    mine, theirs = (copy_run(run, tmp_path / run.name) for run in two_runs)
    if pre_run_id:
        make_pre_run_id(mine)
        make_pre_run_id(theirs)
    newest = list_checkpoints(mine)[2]
    shutil.copyfile(list_checkpoints(theirs)[2], newest)
    before = (mine / "zarr.json").read_bytes()
    capsys.readouterr()
    assert train_cli(mine, "--seed", "0", "--epochs", "3", "--resume") == 2
    line = one_line_error(capsys)
    assert "epoch-0002.pt" in line and "belongs to another run" in line, line
    assert "move" in line and "aside" in line
    assert (mine / "zarr.json").read_bytes() == before  # nothing rewound or recorded


@pytest.mark.slow
def test_a_store_of_the_old_checkpoint_layout_still_resumes(
    two_runs: tuple[Path, Path], tmp_path: Path, cache: Path
) -> None:
    """``runs/x.ckpt`` without run ids: checked by its weights, resumed, moved once."""
    store = copy_run(two_runs[0], tmp_path / "x.zarr")
    make_pre_run_id(store)
    checkpoint_dir(store).rename(tmp_path / "x.ckpt")
    assert train_cli(store, "--seed", "0", "--epochs", "3", "--resume") == 0
    assert not (tmp_path / "x.ckpt").exists()
    assert list(list_checkpoints(store)) == [2, 3]
    reference = tmp_path / "ref.zarr"
    assert train_cli(reference, "--seed", "0", "--epochs", "3") == 0
    assert_same_epochs(store, reference)


def test_a_file_that_is_not_state_dicts_is_one_line(tmp_path: Path) -> None:
    """``torch.load(weights_only=True)`` also returns lists and tensors: not a checkpoint."""
    path = tmp_path / "epoch-0001.pt"
    torch.save([1, 2], path)
    with pytest.raises(StoreError, match="not a checkpoint"):
        load_checkpoint(path)
