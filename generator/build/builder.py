"""``build``: plan, then write the media, the pages and the manifest, in that order.

The planner (``generator.build.plan``) lists every artefact with a fingerprint of its inputs and
decides what is up to date. The rest are grouped into jobs (one read of a layer for one
probe makes all that layer's artefacts for it) and made by ``generator.build.jobs`` (``--jobs``
local processes or the workers of a dask ``--scheduler``); then the
pages are rendered in memory and written; the manifest, the one record of what the build
owns, comes last. A build that fails leaves the previous pages and a manifest that owns
every file it wrote, so nothing it made is ever untracked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from generator import defaults
from generator.atomic import atomic_path
from generator.build.artefacts import Job, RenderOptions
from generator.build.budget import fit_budget, say_estimate
from generator.build.jobs import JobRunner, job_runner
from generator.build.lock import NOTE_NAME, claim_site
from generator.build.outdir import check_out_folder
from generator.build.parent import watch_parent_from_environment
from generator.build.plan import (
    RunPlan,
    new_manifest,
    plan_build,
    plan_run,
    render_options,
    stale_files,
)
from generator.config import BuildConfig
from generator.faults import tick
from generator.info import directory_size, human_size
from generator.site import inside, render_site, write_bytes_atomic, write_rendered
from generator.site.manifest import (
    MANIFEST_NAME,
    ArtefactKind,
    ArtefactRecord,
    Manifest,
    load_manifest,
)
from generator.store import open_run
from generator.threads import single_threaded

log = logging.getLogger(__name__)

WARN_FILE_BYTES = 50 * 10**6  # GitHub warns above 50 MB per file and refuses 100 MB
LAYER_KINDS = (ArtefactKind.GRID, ArtefactKind.CHANNEL, ArtefactKind.CONTACT)

__all__ = ["BuildResult", "build", "check_out_folder", "discover_stores", "plan_run"]


@dataclass
class BuildResult:
    site: Path
    made: int
    kept: int
    removed: int
    total_bytes: int
    manifest: Manifest


def build(config: BuildConfig) -> BuildResult:
    """Make the site's media, pages and manifest for ``config.stores``.

    Every option is checked before ``--out`` is created, and the build holds the folder's
    lock from then on (``generator.build.lock``): a second build waits for it."""
    watch_parent_from_environment()  # a build that train --site started dies with it
    # Entered first: an unreachable --scheduler is refused before anything is written.
    with (
        job_runner(workers=config.jobs, scheduler=config.scheduler) as runner,
        ExitStack() as stack,
    ):
        if config.live:  # beside training: one thread per file (generator/threads.py)
            stack.enter_context(single_threaded())
        site = check_out_folder(config.out, config.stores)
        plans = _plans(config)
        with claim_site(site) as waited:
            # The store may have moved on while this build waited for the other one.
            return _build(config, site, _plans(config) if waited else plans, runner)


def _plans(config: BuildConfig) -> list[RunPlan]:
    return [plan_run(open_run(store), config) for store in config.stores]


def _build(config: BuildConfig, site: Path, every: list[RunPlan], runner: JobRunner) -> BuildResult:
    previous = load_manifest(site)
    plans, estimate = fit_budget(every, config)
    plan = plan_build(plans, previous, config, site)
    say_estimate(plans, plan.todo, estimate, config)
    # Before the first file: a manifest that owns every file this build may write, so a
    # build killed at any point leaves nothing that the next one does not own.
    claimed = _owning(previous, plan.todo, None)
    write_bytes_atomic(site, MANIFEST_NAME, claimed.dumps())
    tick("build.claimed")
    made: dict[str, ArtefactRecord] = {}
    pages: list[str] = []
    try:
        for record in _make(plans, plan.todo, config, site, runner):
            made[record.id] = record
        manifest = new_manifest(plans, plan.records(made), config)
        rendered = render_site(manifest, {p.slug: p.run for p in plans}, training=config.live)
        pages = list(rendered)
        write_bytes_atomic(site, MANIFEST_NAME, claimed.with_files(pages).dumps())
        write_rendered(site, rendered)
    except BaseException:
        _own_what_was_written(site, previous, plan.todo, pages)
        raise
    manifest = manifest.with_files(pages)
    # Only now that every page links to this build's files, and once a reader of an old
    # page has had time to fetch what it links to: the old files go.
    stale = stale_files(previous, manifest)
    if stale:
        time.sleep(defaults.STALE_GRACE_S)
    removed = _remove_stale(site, stale)
    tick("build.stale")
    _write_manifest(site, manifest)
    _warn_large_files(site, [*(p for r in made.values() for p in r.files.values()), *pages])
    total = directory_size(site) - _note_size(site)  # the lock's note goes with the lock
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
    try:
        write_bytes_atomic(site, MANIFEST_NAME, _owning(previous, todo, written).dumps())
    except OSError as exc:
        log.error("could not record the files of the failed build in %s: %s", site, exc)


def _owning(
    previous: Manifest, todo: Iterable[ArtefactRecord], files: Iterable[str] | None
) -> Manifest:
    """The previous manifest less the records this build re-makes, owning ``files`` too
    (``None``: every file of ``todo``)."""
    todo = list(todo)
    redone = {r.id for r in todo}
    kept = {aid: r for aid, r in previous.artefacts.items() if aid not in redone}
    extra = [p for r in todo for p in r.files.values()] if files is None else list(files)
    return replace(previous, artefacts=kept).with_files(extra)


def _write_manifest(site: Path, manifest: Manifest) -> None:
    """The last write of a build: from here on the site is this build's (an unchanged
    manifest is left alone, as ``write_bytes_atomic`` does)."""
    target, data = inside(site, MANIFEST_NAME), manifest.dumps()
    if target.is_file() and target.read_bytes() == data:
        return
    with atomic_path(target) as temp:
        temp.write_bytes(data)
        tick("build.manifest")


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
    plans: list[RunPlan],
    todo: tuple[ArtefactRecord, ...],
    config: BuildConfig,
    site: Path,
    runner: JobRunner,
) -> Iterator[ArtefactRecord]:
    """Run the jobs (on ``runner``: local processes or a dask cluster), yielding each
    made record once its files are in ``site``."""
    jobs = group_jobs(plans, todo, render_options(config))
    with tqdm(total=len(todo), desc="build", unit="artefact", disable=None) as bar:
        for results in runner.run(jobs, site):
            yield from results
            bar.update(len(results))
            tick("build.job")


def _remove_stale(site: Path, relatives: Iterable[str]) -> int:
    """Delete ``relatives`` (files a previous manifest listed), never outside ``site``."""
    removed = 0
    base = site.resolve()
    # Pages first: an old page still there never links to a file already gone.
    for relative in sorted(relatives, key=lambda r: not r.endswith(".html")):
        target = (site / relative).resolve()
        if base in target.parents and target.is_file():
            target.unlink()
            removed += 1
    return removed


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


def discover_stores(runs: Path) -> tuple[Path, ...]:
    """Every ``*.zarr`` under ``runs``, sorted (empty when there is none)."""
    return tuple(sorted(p for p in Path(runs).glob("*.zarr") if p.is_dir()))


def _note_size(site: Path) -> int:
    """Bytes of the build's pid note (``lock.NOTE_NAME``), removed when the build ends."""
    try:
        return (site / NOTE_NAME).stat().st_size
    except OSError:
        return 0
