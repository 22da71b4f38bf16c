"""Per-epoch checkpoints (model + optimizer state dicts) that let ``--resume`` continue.

Checkpoints live beside the store in ``<store name>.ckpt/epoch-NNNN.pt`` (``runs/x.zarr``
-> ``runs/x.zarr.ckpt``: the full name, so two stores never share a folder). They are
written to a temp file and renamed, so a kill leaves either the old set or the new file,
never half of one (the hidden temp of a killed write is ignored and removed by the next save
or resume), and they are loaded with ``weights_only=True``: a checkpoint can never run code.

A store in object storage (``s3://.../x.zarr``) keeps its checkpoints on local disk: in
``<--checkpoints DIR>/x.zarr.ckpt``, by default under the current folder (``./x.zarr.ckpt``);
a checkpoint is a few hundred MB of state that only the training machine needs.

A checkpoint is bound to its store: it carries the store's ``run_id`` and its epoch, and
``--resume`` refuses one whose identity does not match (:func:`check_owner`). A new store
never adopts the checkpoint folder of a run whose store was deleted: it moves it aside
(:func:`set_aside_orphans`), so nothing is deleted and nothing foreign is resumed or pruned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from generator.atomic import atomic_path
from generator.errors import StoreError
from generator.faults import maybe_die
from generator.store import StoreLocation, StoreURL, store_location

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")
SUFFIX = ".ckpt"


def checkpoint_dir(store: StoreLocation) -> Path:
    """``runs/demo.zarr`` -> ``runs/demo.zarr.ckpt``: one folder per store name, so
    ``col`` and ``col.zarr`` never share one. ``s3://b/runs/demo.zarr`` ->
    ``<its checkpoints folder, else the current one>/demo.zarr.ckpt``, on local disk."""
    store = store_location(store)
    if isinstance(store, StoreURL):
        return (store.checkpoints or Path.cwd()) / (store.name + SUFFIX)
    return store.with_name(store.name + SUFFIX)


def legacy_checkpoint_dir(store: StoreLocation) -> Path | None:
    """Where netlapse kept them before the full-name layout (``runs/demo.ckpt``); None
    where that is the current folder anyway (a store name without ``.zarr``) and for a
    store in object storage (never kept there)."""
    store = store_location(store)
    if isinstance(store, StoreURL):
        return None
    legacy = store.with_name(store.name.removesuffix(".zarr") + SUFFIX)
    return None if legacy == checkpoint_dir(store) else legacy


def checkpoint_path(store: StoreLocation, epoch: int) -> Path:
    return checkpoint_dir(store) / f"epoch-{epoch:04d}.pt"


def list_checkpoints(store: StoreLocation) -> dict[int, Path]:
    """Epoch -> file of every complete checkpoint (temp files are ignored)."""
    return _list_folder(checkpoint_dir(store))


def _list_folder(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def save_checkpoint(store: StoreLocation, epoch: int, state: dict[str, Any], keep: int) -> Path:
    """Atomically write epoch's checkpoint, then drop all but the newest ``keep`` (0 = all)."""
    target = checkpoint_path(store, epoch)
    try:
        with atomic_path(target) as temp:
            write_bytes(temp, serialise(state))
            maybe_die("checkpoint.temp", epoch)
    except OSError as exc:
        raise StoreError(
            f"{target}: cannot write the checkpoint ({exc.strerror or exc}); "
            "the epochs already in the store are intact"
        ) from exc
    _prune(store, keep, newest=epoch)
    remove_stale_temps(store)
    return target


def serialise(state: dict[str, Any]) -> memoryview:
    """``torch.save`` into memory. Writing the file ourselves keeps the OS error: torch's
    own file writer turns a full disk into "unexpected pos 704 vs 598"."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def write_bytes(path: Path, data: memoryview) -> None:
    with path.open("wb") as handle:
        handle.write(data)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state dicts, loaded without unpickling arbitrary objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        why = _why_unloadable(exc) if zipfile.is_zipfile(path) else "truncated or not a checkpoint"
        raise StoreError(
            f"{path}: unreadable checkpoint ({why}); delete it to resume from the one before"
        ) from exc
    if not isinstance(state, dict):  # a tensor or list saved under a checkpoint's name
        raise StoreError(
            f"{path}: not a checkpoint (it holds a {type(state).__name__}, not state dicts); "
            "delete it to resume from the one before"
        )
    return state


def _why_unloadable(exc: Exception) -> str:
    """One line from torch's multi-paragraph message, never its advice to drop
    ``weights_only``: the refused object if there is one, else that it is not a checkpoint."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    refused = [line for line in lines if "GLOBAL" in line]
    if refused:
        return f"it holds Python objects, not only tensors: {refused[0]}"
    if lines and lines[0].startswith("Weights only load failed"):
        return "not a checkpoint of tensors"
    return lines[0][:200] if lines else type(exc).__name__


def _prune(store: StoreLocation, keep: int, *, newest: int) -> None:
    """Drop all but the ``keep`` newest checkpoints up to epoch ``newest`` (just written).
    A later epoch is never this run's (its checkpoints follow its commits), so it is left
    alone rather than allowed to push the run's own checkpoints out."""
    if keep <= 0:
        return
    ours = [path for epoch, path in list_checkpoints(store).items() if epoch <= newest]
    for path in ours[:-keep]:
        path.unlink(missing_ok=True)


def remove_stale_temps(store: StoreLocation) -> int:
    """Delete temp files of checkpoint writes that were killed; returns how many."""
    folder = checkpoint_dir(store)
    if not folder.is_dir():
        return 0
    stale = list(folder.glob(".epoch-*.tmp"))  # the temp names of ``atomic_path``
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def check_owner(
    path: Path, state: dict[str, Any], *, store: StoreLocation, run_id: str | None
) -> None:
    """Refuse a checkpoint that is not this store's: another run's id, or another epoch
    than its file name says (a file copied or renamed by hand)."""
    theirs = state.get("run_id")
    if theirs != run_id:
        raise StoreError(
            f"{path}: this checkpoint belongs to another run than {store} (run id "
            f"{theirs or 'none'}, the store's is {run_id or 'none'}); move {path.parent} "
            "aside and --resume again, or train into another --out"
        )
    match = _NAME.match(path.name)
    if match and state.get("epoch") != int(match.group(1)):
        raise StoreError(
            f"{path}: holds epoch {state.get('epoch')}, not the epoch its name says; it "
            f"was renamed or belongs to another run: move {path.parent} aside and "
            "--resume again"
        )


def resumable_checkpoints(store: StoreLocation, *, made_before_run_ids: bool) -> dict[int, Path]:
    """The store's checkpoints; for a store made before run ids (and the full-name layout)
    with none there, those in its old folder (``runs/x.ckpt``), which
    :func:`move_to_current_layout` renames once one of them has been checked against the
    store. A newer store never looks there: that folder is another store's or an orphan."""
    found = list_checkpoints(store)
    legacy = legacy_checkpoint_dir(store)
    if found or legacy is None or not made_before_run_ids:
        return found
    return _list_folder(legacy)


def move_to_current_layout(store: StoreLocation, used: Path) -> None:
    """After a checkpoint in the old folder proved to be this store's, rename that folder
    to the current name (``runs/x.ckpt`` -> ``runs/x.zarr.ckpt``)."""
    legacy, current = used.parent, checkpoint_dir(store)
    if legacy == current:
        return
    with contextlib.suppress(OSError):
        current.rmdir()  # an empty folder left by an earlier attempt
    try:
        os.rename(legacy, current)
    except OSError as exc:
        raise StoreError(
            f"{legacy}: cannot rename it to {current} ({exc.strerror or exc}); rename "
            "it yourself and --resume again"
        ) from exc
    log.info("%s: moved the checkpoints of %s to %s", legacy, store, current)


def set_aside_orphans(store: StoreLocation) -> Path | None:
    """Before a new store is made at ``store``: a checkpoint folder already at its place
    belongs to a run whose store is gone. Move it aside (never delete it), so the new run
    neither resumes from nor prunes another run's checkpoints. Returns where it went."""
    folder = checkpoint_dir(store)
    if store_location(store).exists() or not folder.exists():
        return None  # a store owns its folder; only a new store's place is cleared
    _refuse_a_neighbours_folder(store, folder)
    if (folder / "zarr.json").exists():  # `train --out runs/a.ckpt` made a store there
        raise StoreError(
            f"{folder}: is a run store, not checkpoints, but {store}'s checkpoints would go "
            "there; choose another --out (or move that store)"
        )
    with contextlib.suppress(OSError):
        folder.rmdir()  # empty: nothing to keep
        return None
    aside = _free_name(folder)
    try:
        os.rename(folder, aside)
    except OSError as exc:
        raise StoreError(
            f"{folder}: holds checkpoints of an earlier run and cannot be moved aside "
            f"({exc.strerror or exc}); move or delete it, or choose another --out"
        ) from exc
    log.warning(
        "%s held the checkpoints of an earlier run whose store is gone; moved them to %s "
        "(nothing deleted; remove that folder if you do not need it)",
        folder,
        aside,
    )
    return aside


def _refuse_a_neighbours_folder(store: StoreLocation, folder: Path) -> None:
    """``runs/col.ckpt`` is also the old-layout folder of ``runs/col.zarr``: while that
    store exists and has not moved its checkpoints, they are not orphans."""
    if isinstance(store, StoreURL):
        return  # no old layout in object storage
    neighbour = store.with_name(store.name + ".zarr")
    moved = bool(list_checkpoints(neighbour))
    if neighbour.exists() and legacy_checkpoint_dir(neighbour) == folder and not moved:
        raise StoreError(
            f"{folder} may hold the checkpoints of {neighbour} (their old place); "
            f"--resume {neighbour} once (that moves them to {checkpoint_dir(neighbour)}) "
            "or choose another --out"
        )


def _free_name(folder: Path) -> Path:
    """``x.zarr.ckpt.orphan-1`` (or -2, ...): the first name not taken."""
    number = 1
    while folder.with_name(f"{folder.name}.orphan-{number}").exists():
        number += 1
    return folder.with_name(f"{folder.name}.orphan-{number}")
