"""The guard on ``build --out``: a build writes into that folder and deletes stale files
there, so it must never be a folder that holds something else of value.

Refused (all resolved through symlinks): ``/``, the home folder, the current folder and
its parents, the project (the folder holding the package) and its parents, the templates
and the package folders and anything inside them, a checkpoint folder (``*.ckpt`` or one
holding checkpoint files), a run store or anything inside or around one, and a folder that
holds a store or a dataset (class folders with images) directly below it, and a
non-empty folder that no earlier build made (it has no netlapse ``manifest.json``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from generator.errors import OptionError
from generator.resources import templates_path
from generator.site.manifest import has_netlapse_manifest
from generator.store import StoreLocation, is_url

PACKAGE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CHECKPOINT_GLOB = "epoch-*.pt"
SUGGESTED_NAMES = ("site", "netlapse-site", "gallery")
SCAN_LIMIT = 2000  # entries looked at per folder: enough to tell, never a long walk


def check_out_folder(
    out: Path | str, stores: Iterable[StoreLocation], *, option: str = "--out"
) -> Path:
    """Return ``out`` resolved, or raise a one-line ``OptionError`` naming it and a folder
    this check accepts. Nothing is created here: the build creates the folder once its
    other options are checked, under its lock (``generator.build.lock``)."""
    target = Path(out).expanduser().resolve()
    local = [Path(s).resolve() for s in stores if not is_url(s)]
    why = refusal(target, local)
    if why:
        shown = f"{option}{out}" if option.endswith("=") else f"{option} {out}"
        raise OptionError(
            f"{shown}: refusing to build into {target} ({why}); "
            f"use a folder of its own such as {suggestion(target, local)}"
        )
    return target


def suggestion(target: Path, stores: list[Path]) -> str:
    """A folder for the site that ``refusal`` accepts, shown relative to the current
    folder when it lies inside: a refusal's advice must itself be accepted."""
    here = Path.cwd().resolve()
    for base in (here, *(s.parent for s in stores), target.parent):
        for name in SUGGESTED_NAMES:
            candidate = base / name
            if candidate != target and refusal(candidate, stores) is None:
                shown = candidate.relative_to(here) if here in candidate.parents else candidate
                return f"{shown}/"
    return "a new, empty folder"


def refusal(target: Path, stores: list[Path]) -> str | None:
    """Why a build must not write into the resolved ``target``, or ``None`` if it may."""
    here = Path.cwd().resolve()
    if target in {Path("/"), Path.home().resolve()}:
        return "the root or home folder"
    if target == here or target in here.parents:
        return "the current folder or one above it"
    if target == PACKAGE.parent or target in PACKAGE.parent.parents:
        return "the project folder or one above it"
    for name, folder in (("templates", templates_path().resolve()), ("package", PACKAGE)):
        if _overlaps(target, folder):
            return f"the {name} folder of netlapse"
    for store in stores:
        if _overlaps(target, store):
            return f"it overlaps the run store {store}"
    return _holds_something(target)


def _holds_something(target: Path) -> str | None:
    """Refusals that depend on what is already inside (or around) ``target``."""
    for folder in (target, *target.parents):
        if folder.suffix == ".ckpt":
            return "a checkpoint folder"
        if _is_store(folder):
            return f"it lies inside the run store {folder}"
    if not target.is_dir():
        return None
    if next(iter(target.glob(CHECKPOINT_GLOB)), None) is not None:
        return "it holds checkpoints"
    for child in _entries(target):
        if child.is_dir() and _is_store(child):
            return f"it holds the run store {child.name}"
        if child.is_dir() and not child.name.startswith(".") and _holds_images(child):
            return f"it holds a dataset (class folder {child.name} has images)"
    return _holds_foreign_files(target)


def _holds_foreign_files(target: Path) -> str | None:
    """A folder with visible files but no manifest of an earlier build holds someone
    else's files (a website, a dataset's class folder, documents): a build would overwrite
    its ``index.html`` and mix its pages in, so it is refused. Hidden files (``.gitkeep``)
    do not count."""
    if has_netlapse_manifest(target):
        return None
    visible = next((c for c in _entries(target) if not c.name.startswith(".")), None)
    if visible is None:
        return None
    return f"it holds {visible.name}, which no netlapse build made; use an empty folder"


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


def _is_store(folder: Path) -> bool:
    """A netlapse run store: a zarr group whose attributes carry our schema version."""
    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "schema_version" in (meta.get("attributes") or {})


def _holds_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in _entries(folder))


def _entries(folder: Path) -> Iterator[Path]:
    try:
        yield from itertools.islice(folder.iterdir(), SCAN_LIMIT)
    except OSError:
        return
