"""``build``: gather what every run needs, then make only what is out of date, in parallel.

Gather: for each store, list every artefact (grid per layer x probe, per-channel
animations, contact sheets, kernels per conv layer, one per probe) as a planned
``ArtefactRecord`` whose fingerprint covers its inputs: the store's identity and committed
epochs, exactly the options its renderer uses and ``RENDER_VERSION``. Plan: artefacts
whose fingerprint and files match the previous manifest are kept; the rest are grouped
into jobs (one read of a layer for one probe makes all that layer's artefacts for it).
Write, in this order: the media (on ``--jobs`` processes), the pages (rendered in memory
first), then the manifest, the one record of what the build owns. A build that fails
leaves the previous pages and a manifest that owns every file it wrote, so nothing it made
is ever untracked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from generator import __version__
from generator.artefacts import RENDER_VERSION, Job, RenderOptions, options_used, run_job
from generator.config import BuildConfig
from generator.errors import OptionError
from generator.info import directory_size, human_size
from generator.manifest import (
    MANIFEST_NAME,
    ArtefactKind,
    ArtefactRecord,
    Manifest,
    RunEntry,
    load_manifest,
)
from generator.outdir import check_out_folder
from generator.reader import RunReader, open_run
from generator.site import render_site, write_bytes_atomic, write_rendered

log = logging.getLogger(__name__)

WARN_BYTES = 2**30
WARN_FILE_BYTES = 50 * 10**6  # GitHub warns above 50 MB per file and refuses 100 MB
# Rough bytes per pixel per frame, measured on the reference run (bench/README.md); only
# used to warn before a build that would outgrow GitHub Pages.
BYTES_PER_PIXEL_FRAME = {"gif": 0.45, "mp4": 0.03, "png": 0.6, "poster": 0.6}
LAYER_KINDS = (ArtefactKind.GRID, ArtefactKind.CHANNEL, ArtefactKind.CONTACT)

__all__ = ["BuildResult", "build", "check_out_folder", "discover_stores", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    """One store in the build: its reader, site slug and every artefact it should have
    (none for a run with no committed epoch yet)."""

    run: RunReader
    slug: str
    artefacts: tuple[ArtefactRecord, ...]


@dataclass(frozen=True)
class BuildPlan:
    """What a build does with each artefact, decided before anything is written."""

    wanted: Mapping[str, ArtefactRecord]  # this build's selection, as planned
    todo: tuple[ArtefactRecord, ...]  # of ``wanted``: missing or out of date
    kept: Mapping[str, ArtefactRecord]  # of ``wanted``: up to date (previous records)
    carried: Mapping[str, ArtefactRecord]  # outside --layers/--probes: kept as they are

    def records(self, made: Mapping[str, ArtefactRecord]) -> dict[str, ArtefactRecord]:
        """Every record the new manifest lists, once ``made`` holds the re-made ones."""
        return {**self.carried, **self.kept, **made}


@dataclass
class BuildResult:
    site: Path
    made: int
    kept: int
    removed: int
    total_bytes: int
    manifest: Manifest


def run_slug(path: Path) -> str:
    """A folder name for a run: its readable stem plus a hash of its absolute path, so two
    runs called ``demo`` in different folders never collide and nothing escapes ``runs/``."""
    stem = Path(path).name.removesuffix(".zarr")
    readable = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    digest = hashlib.sha1(os.fsencode(Path(path).resolve())).hexdigest()[:6]
    return f"{readable}-{digest}"


def display_name(path: Path) -> str:
    """The run's name as shown: the store folder's stem, with bytes that are not UTF-8
    escaped (``\\xff``), so a page or the manifest can always be written as UTF-8."""
    stem = Path(path).name.removesuffix(".zarr")
    return os.fsencode(stem).decode("utf-8", "backslashreplace")


def build(config: BuildConfig) -> BuildResult:
    """Make the site's media, pages and manifest for ``config.stores``."""
    site = check_out_folder(config.out, config.stores)
    previous = load_manifest(site)
    plans = [plan_run(open_run(store), config) for store in config.stores]
    plan = plan_build(plans, previous, config, site)
    _warn_if_large(plans, plan.todo, config)
    made: dict[str, ArtefactRecord] = {}
    pages: list[str] = []
    try:
        for record in _make(plans, plan.todo, config, site):
            made[record.id] = record
        manifest = new_manifest(plans, plan.records(made), config)
        rendered = render_site(manifest, {p.slug: p.run for p in plans})
        pages = list(rendered)
        write_rendered(site, rendered)
    except BaseException:
        _own_what_was_written(site, previous, plan.todo, pages)
        raise
    manifest = manifest.with_files(pages)
    removed = _remove_stale(site, stale_files(previous, manifest))
    write_bytes_atomic(site, MANIFEST_NAME, manifest.dumps())
    _warn_large_files(site, [*(p for r in made.values() for p in r.files.values()), *pages])
    total = directory_size(site)
    log.info(
        "built %s: %d artefacts made, %d up to date, %d stale files removed; site size %s",
        site,
        len(made),
        len(plan.wanted) - len(made),
        removed,
        human_size(total),
    )
    return BuildResult(site, len(made), len(plan.wanted) - len(made), removed, total, manifest)


def _own_what_was_written(
    site: Path, previous: Manifest, todo: Iterable[ArtefactRecord], pages: Iterable[str]
) -> None:
    """After a failure: the previous manifest, less the records whose files may have been
    overwritten, owning every file this build may have written, so a later build re-makes
    and cleans up whatever is left (a failed write here must not hide the first error)."""
    todo = list(todo)
    maybe = [p for r in todo for p in r.files.values()] + list(pages)
    written = [p for p in maybe if (site / p).is_file()]
    redone = {r.id for r in todo}
    kept = {aid: r for aid, r in previous.artefacts.items() if aid not in redone}
    fallback = replace(previous, artefacts=kept).with_files(written)
    try:
        write_bytes_atomic(site, MANIFEST_NAME, fallback.dumps())
    except OSError as exc:
        log.error("could not record the files of the failed build in %s: %s", site, exc)


# -- gather ------------------------------------------------------------------------------
def plan_run(run: RunReader, config: BuildConfig) -> RunPlan:
    """Every artefact of one run that the options select, with fingerprints."""
    slug = run_slug(run.path)
    layers = _selected_layers(run, config.layers)
    probes = _selected_probes(run, config.probes)
    if run.epochs == 0:
        log.warning("%s has no committed epoch yet: its card says so, nothing is drawn", run.path)
        return RunPlan(run, slug, ())
    planner = _Planner(slug, _run_identity(run), config)
    artefacts: list[ArtefactRecord] = []
    for layer in layers:
        spec = run.layer(layer)
        for number, probe in enumerate(probes):
            artefacts += [
                planner.record(ArtefactKind.GRID, layer=layer, probe=probe),
                planner.record(ArtefactKind.CONTACT, layer=layer, probe=probe),
            ]
            if spec.is_conv and number < config.channel_probes:
                artefacts += [
                    planner.record(ArtefactKind.CHANNEL, layer=layer, probe=probe, channel=c)
                    for c in range(spec.channels)
                ]
        if spec.is_conv:
            artefacts.append(planner.record(ArtefactKind.KERNELS, layer=layer))
    artefacts += [planner.record(ArtefactKind.PROBE, probe=probe) for probe in probes]
    return RunPlan(run, slug, tuple(artefacts))


def _selected_layers(run: RunReader, names: tuple[str, ...] | None) -> list[str]:
    if names is None:
        return [layer.name for layer in run.layers]
    for name in names:
        run.layer(name)  # raises a StoreError naming the layers that exist
    return list(names)


def _selected_probes(run: RunReader, numbers: tuple[int, ...] | None) -> list[int]:
    if numbers is None:
        return list(range(run.n_probes))
    bad = [n for n in numbers if n > run.n_probes]
    if bad:
        raise OptionError(f"--probes {bad[0]}: {run.path} has probes 1..{run.n_probes}")
    return [n - 1 for n in numbers]


def _run_identity(run: RunReader) -> tuple[str, int]:
    """What makes this store this run, and how many epochs this build shows of it."""
    attrs = {k: v for k, v in run.attrs.items() if k != "epochs_committed"}
    return _digest({"path": str(run.path.resolve()), "attrs": attrs}), run.epochs


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def render_options(config: BuildConfig) -> RenderOptions:
    """The build options that reach the renderer (``gif_max_side`` only with auto)."""
    return RenderOptions(
        colormap=config.colormap,
        scale=config.scale,
        fps=config.fps,
        max_side=config.max_side,
        channel_side=config.channel_side,
        gif_max_side=config.gif_max_side if config.auto_formats else None,
    )


class _Planner:
    """Makes the planned records of one run: ids, file paths, titles and fingerprints."""

    def __init__(self, slug: str, identity: tuple[str, int], config: BuildConfig) -> None:
        self.slug, self.identity, self.config = slug, identity, config
        self.options = render_options(config)

    def record(
        self,
        kind: ArtefactKind,
        *,
        layer: str | None = None,
        probe: int | None = None,
        channel: int | None = None,
    ) -> ArtefactRecord:
        parts = [
            kind.value,
            layer,
            f"c{channel}" if channel is not None else None,
            f"p{probe}" if probe is not None else None,
        ]
        name = "-".join(p for p in parts if p)
        folder = f"runs/{self.slug}/media/{layer or kind.value}"
        files = {fmt: f"{folder}/{name}.{fmt}" for fmt in self.formats(kind)}
        if kind.is_animation:
            files["poster"] = f"{folder}/{name}.poster.png"
        inputs = {
            "run": self.identity[0],
            "epochs": self.identity[1],
            "kind": kind.value,
            "layer": layer,
            "probe": probe,
            "channel": channel,
            "files": files,
            "render": RENDER_VERSION,
            "tool": __version__,
            "options": options_used(kind, self.options, files),
        }
        return ArtefactRecord(
            id=f"{self.slug}/{name}",
            kind=kind,
            layer=layer,
            probe=probe,
            channel=channel,
            files=files,
            fingerprint=_digest(inputs),
            title=_title(kind, layer, probe, channel),
        )

    def formats(self, kind: ArtefactKind) -> list[str]:
        if not kind.is_animation:
            return ["png"]
        if self.config.auto_formats:
            return ["mp4"] if kind is ArtefactKind.CHANNEL else ["mp4", "gif"]
        return list(self.config.formats)


def _title(kind: ArtefactKind, layer: str | None, probe: int | None, channel: int | None) -> str:
    shown = "" if probe is None else f"probe {probe + 1}"
    return {
        ArtefactKind.GRID: f"{layer}, all channels, {shown}",
        ArtefactKind.CHANNEL: f"{layer}, channel {(channel or 0) + 1}, {shown}",
        ArtefactKind.CONTACT: f"{layer} contact sheet, {shown}",
        ArtefactKind.KERNELS: f"{layer} kernels over epochs",
        ArtefactKind.PROBE: f"{shown}: class probabilities over epochs",
    }[kind]


# -- plan --------------------------------------------------------------------------------
def plan_build(
    plans: Iterable[RunPlan], previous: Manifest, config: BuildConfig, site: Path
) -> BuildPlan:
    """Which artefacts are up to date, which must be (re)made and which are carried over."""
    plans = list(plans)
    wanted = {a.id: a for plan in plans for a in plan.artefacts}
    kept, todo = {}, []
    for aid, artefact in wanted.items():
        old = previous.artefacts.get(aid)
        if old is not None and _up_to_date(artefact, old, site):
            kept[aid] = old
        else:
            todo.append(artefact)
    return BuildPlan(wanted, tuple(todo), kept, _carried_over(previous, plans, config, site))


def _up_to_date(artefact: ArtefactRecord, old: ArtefactRecord, site: Path) -> bool:
    return old.fingerprint == artefact.fingerprint and _files_exist(old, site)


def _carried_over(
    previous: Manifest, plans: list[RunPlan], config: BuildConfig, site: Path
) -> dict[str, ArtefactRecord]:
    """Artefacts of these runs that ``--layers``/``--probes`` left out: kept as they are,
    so building one layer again never throws away the others."""
    slugs = {plan.slug for plan in plans if plan.run.epochs > 0}
    kept = {}
    for aid, record in previous.artefacts.items():
        outside = (
            config.layers is not None
            and record.layer is not None
            and record.layer not in config.layers
        ) or (
            config.probes is not None
            and record.probe is not None
            and record.probe + 1 not in config.probes
        )
        if aid.split("/", 1)[0] in slugs and outside and _files_exist(record, site):
            kept[aid] = record
    return kept


def _files_exist(record: ArtefactRecord, site: Path) -> bool:
    return all((site / path).is_file() for path in record.files.values())


def new_manifest(
    plans: Iterable[RunPlan], records: Mapping[str, ArtefactRecord], config: BuildConfig
) -> Manifest:
    """The manifest of this build's media (pages are added once they are written)."""
    runs = tuple(
        RunEntry(
            slug=plan.slug,
            name=display_name(plan.run.path),
            epochs=plan.run.epochs,
            artefacts=tuple(sorted(aid for aid in records if aid.startswith(plan.slug + "/"))),
        )
        for plan in plans
    )
    return Manifest(
        tool_version=__version__,
        options=published_options(config),
        runs=runs,
        artefacts=dict(sorted(records.items())),
        files=tuple(sorted({p for r in records.values() for p in r.files.values()})),
    )


def published_options(config: BuildConfig) -> dict[str, Any]:
    """The build settings a site may show: JSON values, never a local path or a machine's
    worker count (fields marked ``local`` in ``BuildConfig``)."""
    options = {}
    for f in fields(config):
        if f.metadata.get("local"):
            continue
        value = getattr(config, f.name)
        options[f.name] = list(value) if isinstance(value, tuple) else value
    return options


def stale_files(previous: Manifest, current: Manifest) -> list[str]:
    """Files the previous build owned that this one does not: the only deletion candidates."""
    return sorted(set(previous.files) - set(current.files))


# -- write -------------------------------------------------------------------------------
def group_jobs(
    plans: Iterable[RunPlan], todo: Iterable[ArtefactRecord], options: RenderOptions
) -> list[Job]:
    """One job per (run, layer, probe), per (run, conv layer) for kernels, per probe."""
    needed = {a.id for a in todo}
    jobs: list[Job] = []
    for plan in plans:
        groups: dict[tuple, list[ArtefactRecord]] = {}
        for artefact in plan.artefacts:
            if artefact.id not in needed:
                continue
            group = ArtefactKind.GRID if artefact.kind in LAYER_KINDS else artefact.kind
            groups.setdefault((group, artefact.layer, artefact.probe), []).append(artefact)
        for (_, layer, probe), items in groups.items():
            jobs.append(
                Job(str(plan.run.path), plan.run.epochs, layer, probe, tuple(items), options)
            )
    return sorted(jobs, key=lambda job: -len(job.artefacts))


def _make(
    plans: list[RunPlan], todo: tuple[ArtefactRecord, ...], config: BuildConfig, site: Path
) -> Iterator[ArtefactRecord]:
    """Run the jobs (in ``config.jobs`` processes), yielding each made record."""
    jobs = group_jobs(plans, todo, render_options(config))
    with tqdm(total=len(todo), desc="build", unit="artefact", disable=None) as bar:
        for results in _run_jobs(jobs, site, config.jobs):
            yield from results
            bar.update(len(results))


def _run_jobs(jobs: list[Job], site: Path, workers: int) -> Iterator[list[ArtefactRecord]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job, site)
        return
    # spawn, not fork: the parent holds zarr's event-loop thread, which fork would copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_job, job, site) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _remove_stale(site: Path, relatives: Iterable[str]) -> int:
    """Delete ``relatives`` (files a previous manifest listed), never outside ``site``."""
    removed = 0
    base = site.resolve()
    for relative in relatives:
        target = (site / relative).resolve()
        if base in target.parents and target.is_file():
            target.unlink()
            removed += 1
    return removed


def _warn_if_large(
    plans: list[RunPlan], todo: Iterable[ArtefactRecord], config: BuildConfig
) -> None:
    ids = {a.id for a in todo}
    estimate = sum(
        _estimate_bytes(plan.run, a, config)
        for plan in plans
        for a in plan.artefacts
        if a.id in ids
    )
    if estimate > WARN_BYTES:
        log.warning(
            "this build will write about %s (GitHub Pages refuses sites over 1 GB); "
            "use --formats mp4, fewer --channel-probes or a smaller --max-side",
            human_size(estimate),
        )


def _warn_large_files(site: Path, relatives: Iterable[str]) -> None:
    """Name every file this build wrote above ``WARN_FILE_BYTES`` (GitHub refuses 100 MB)."""
    for relative in sorted(set(relatives)):
        path = site / relative
        size = path.stat().st_size if path.is_file() else 0
        if size > WARN_FILE_BYTES:
            log.warning(
                "%s is %s: GitHub warns about files over 50 MB and refuses them over 100 MB",
                relative,
                human_size(size),
            )


def _estimate_bytes(run: RunReader, artefact: ArtefactRecord, config: BuildConfig) -> float:
    side = config.channel_side if artefact.kind is ArtefactKind.CHANNEL else config.max_side
    frames = run.epochs if artefact.kind.is_animation else 1
    total = 0.0
    for fmt in artefact.files:
        fmt_side = min(side, config.gif_max_side) if fmt == "gif" and config.auto_formats else side
        count = 1 if fmt == "poster" else frames
        total += BYTES_PER_PIXEL_FRAME[fmt] * fmt_side * fmt_side * count
    return total


def discover_stores(runs: Path) -> tuple[Path, ...]:
    """Every ``*.zarr`` under ``runs``, sorted (empty when there is none)."""
    return tuple(sorted(p for p in Path(runs).glob("*.zarr") if p.is_dir()))
