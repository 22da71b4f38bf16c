"""Per-epoch checkpoints (model + optimizer state dicts) that let ``--resume`` continue.

Checkpoints live beside the store in ``<store>.ckpt/epoch-NNNN.pt``. They are written to a
temp file and renamed, so a kill leaves either the old set or the new file, never half of
one, and they are loaded with ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from generator.errors import StoreError

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
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, temp)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(f"{target}: cannot write the checkpoint ({exc.strerror or exc}); "
                         "the epochs already in the store are intact") from exc
    _prune(store, keep)
    _remove_stale_temps(target.parent)
    return target


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state dicts, loaded without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise StoreError(f"{path}: unreadable checkpoint ({exc}); delete it to resume "
                         "from the one before") from exc


def _prune(store: Path, keep: int) -> None:
    if keep <= 0:
        return
    for _, path in list(list_checkpoints(store).items())[:-keep]:
        path.unlink(missing_ok=True)


def _remove_stale_temps(folder: Path) -> None:
    for path in folder.glob(".epoch-*.tmp"):
        path.unlink(missing_ok=True)
