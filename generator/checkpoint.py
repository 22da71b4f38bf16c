"""Per-epoch checkpoints (model + optimizer state dicts) that let ``--resume`` continue.

Checkpoints live beside the store in ``<store>.ckpt/epoch-NNNN.pt``. They are written to a
temp file and renamed, so a kill leaves either the old set or the new file, never half of
one (the hidden temp of a killed write is ignored and removed by the next save or resume),
and they are loaded with ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from generator.atomic import atomic_path
from generator.errors import StoreError
from generator.faults import maybe_die

_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")


def checkpoint_dir(store: Path) -> Path:
    """``runs/demo.zarr`` -> ``runs/demo.ckpt``."""
    store = Path(store)
    return store.with_name(store.name.removesuffix(".zarr") + ".ckpt")


def checkpoint_path(store: Path, epoch: int) -> Path:
    return checkpoint_dir(store) / f"epoch-{epoch:04d}.pt"


def list_checkpoints(store: Path) -> dict[int, Path]:
    """Epoch -> file of every complete checkpoint (temp files are ignored)."""
    folder = checkpoint_dir(store)
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def save_checkpoint(store: Path, epoch: int, state: dict[str, Any], keep: int) -> Path:
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
    _prune(store, keep)
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        why = _why_unloadable(exc) if zipfile.is_zipfile(path) else "truncated or not a checkpoint"
        raise StoreError(
            f"{path}: unreadable checkpoint ({why}); delete it to resume from the one before"
        ) from exc


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


def _prune(store: Path, keep: int) -> None:
    if keep <= 0:
        return
    for _, path in list(list_checkpoints(store).items())[:-keep]:
        path.unlink(missing_ok=True)


def remove_stale_temps(store: Path) -> int:
    """Delete temp files of checkpoint writes that were killed; returns how many."""
    folder = checkpoint_dir(store)
    if not folder.is_dir():
        return 0
    stale = list(folder.glob(".epoch-*.tmp"))  # the temp names of ``atomic_path``
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
