"""``build``: gather what every run needs, then make only what is out of date, in parallel.

Gather: for each store, list every artefact (grid per layer x probe, per-channel
animations, contact sheets, kernels per conv layer, one per probe) with a fingerprint of
its inputs: the store's identity and committed epochs, the options it uses and
``RENDER_VERSION``. Write: artefacts whose fingerprint and files match the previous
manifest are kept; the rest are grouped into jobs (one read of a layer for one probe makes
all that layer's artefacts for it) and run on ``--jobs`` processes; then the manifest, the
one record of what the build owns, is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from generator import __version__
from generator.artefacts import RENDER_VERSION, Artefact, Job, Made, RenderOptions, run_job
from generator.config import BuildConfig
from generator.errors import OptionError
from generator.info import directory_size, human_size
from generator.manifest import MANIFEST_VERSION as TYPED_MANIFEST_VERSION
from generator.manifest import Manifest
from generator.reader import RunReader, open_run
from generator.site import render_site, write_bytes_atomic, write_rendered

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
WARN_BYTES = 2**30
# Rough bytes per pixel per frame, measured on the reference run (bench/README.md); only
# used to warn before a build that would outgrow GitHub Pages.
BYTES_PER_PIXEL_FRAME = {"gif": 0.45, "mp4": 0.03, "png": 0.6, "poster": 0.6}


@dataclass(frozen=True)
class RunPlan:
    """One store in the build: its reader, site slug and every artefact it should have."""

    run: RunReader
    slug: str
    artefacts: tuple[Artefact, ...]


@dataclass
class BuildResult:
    site: Path
    made: int
    kept: int
    removed: int
    total_bytes: int
    manifest: dict[str, Any]


def run_slug(path: Path) -> str:
    """A folder name for a run: its readable stem plus a hash of its absolute path, so two
    runs called ``demo`` in different folders never collide and nothing escapes ``runs/``."""
    stem = Path(path).name.removesuffix(".zarr")
    readable = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    digest = hashlib.sha1(os.fsencode(Path(path).resolve())).hexdigest()[:6]
    return f"{readable}-{digest}"


def build(config: BuildConfig) -> BuildResult:
    """Make the site's media and manifest for ``config.stores``; returns what happened."""
    site = check_out_folder(config.out, config.stores)
    previous = load_manifest(site)
    plans = [plan_run(open_run(store), config) for store in config.stores]
    wanted = {a.id: a for plan in plans for a in plan.artefacts}
    old = previous.get("artefacts", {})
    todo = [a for a in wanted.values() if not _up_to_date(a, old.get(a.id), site)]
    _warn_if_large(plans, todo, config)
    made = _make(plans, todo, config, site)
    records = {aid: (made[aid] if aid in made else old[aid]) for aid in wanted}
    records.update(_carried_over(old, plans, config, site))
    manifest = _manifest(plans, records, config)
    typed = Manifest.from_json({**manifest, "version": TYPED_MANIFEST_VERSION})
    pages = write_rendered(site, render_site(typed, {plan.slug: plan.run for plan in plans}))
    manifest["files"] = sorted({*manifest["files"], *pages})
    removed = _remove_stale(site, previous.get("files", []), manifest["files"])
    write_bytes_atomic(site, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    total = directory_size(site)
    log.info(
        "built %s: %d artefacts made, %d up to date, %d stale files removed; site size %s",
        site,
        len(made),
        len(wanted) - len(made),
        removed,
        human_size(total),
    )
    return BuildResult(site, len(made), len(wanted) - len(made), removed, total, manifest)


def check_out_folder(out: Path, stores: Iterable[Path]) -> Path:
    """Create and return ``out``, refusing folders a build must never write into or clean:
    ``/``, the home folder, the current (project) folder or one above it, or a run store."""
    target = Path(out).expanduser().resolve()
    here = Path.cwd().resolve()
    forbidden = {Path("/"), Path.home().resolve()}
    if target in forbidden or target == here or target in here.parents:
        raise OptionError(
            f"--out {out}: refusing to build into {target}; use a folder of its own such as site/"
        )
    for store in stores:
        store = Path(store).resolve()
        if target == store or target in store.parents or store in target.parents:
            raise OptionError(f"--out {out}: overlaps the run store {store}; use site/")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".netlapse-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OptionError(
            f"--out {out}: cannot write there ({exc.strerror or exc}); choose a writable folder"
        ) from exc
    return target


# -- gather ------------------------------------------------------------------------------
def plan_run(run: RunReader, config: BuildConfig) -> RunPlan:
    """Every artefact of one run that the options select, with fingerprints."""
    slug = run_slug(run.path)
    layers = _selected_layers(run, config.layers)
    probes = _selected_probes(run, config.probes)
    identity = _run_identity(run)
    artefacts: list[Artefact] = []
    for layer in layers:
        for probe in probes:
            artefacts += _layer_artefacts(
                run,
                slug,
                layer,
                probe,
                identity,
                config,
                per_channel=probes.index(probe) < config.channel_probes,
            )
        if run.layer(layer).is_conv:
            artefacts.append(
                _artefact(
                    slug,
                    "kernels",
                    layer,
                    None,
                    None,
                    identity,
                    config,
                    f"{layer} kernels over epochs",
                )
            )
    for probe in probes:
        artefacts.append(
            _artefact(
                slug,
                "probe",
                None,
                probe,
                None,
                identity,
                config,
                f"probe {probe + 1}: class probabilities over epochs",
            )
        )
    return RunPlan(run, slug, tuple(artefacts))


def _layer_artefacts(
    run: RunReader,
    slug: str,
    layer: str,
    probe: int,
    identity: tuple[str, int],
    config: BuildConfig,
    per_channel: bool,
) -> list[Artefact]:
    spec = run.layer(layer)
    items = [
        _artefact(
            slug,
            "grid",
            layer,
            probe,
            None,
            identity,
            config,
            f"{layer}, channels 1-{spec.channels}, probe {probe + 1}",
        ),
        _artefact(
            slug,
            "contact",
            layer,
            probe,
            None,
            identity,
            config,
            f"{layer} contact sheet, probe {probe + 1}",
        ),
    ]
    if per_channel and spec.is_conv:
        items += [
            _artefact(
                slug,
                "channel",
                layer,
                probe,
                c,
                identity,
                config,
                f"{layer}, channel {c + 1}, probe {probe + 1}",
            )
            for c in range(spec.channels)
        ]
    return items


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


def _formats(kind: str, config: BuildConfig) -> list[str]:
    if kind == "contact":
        return ["png"]
    if config.auto_formats:
        return ["mp4"] if kind == "channel" else ["mp4", "gif"]
    return list(config.formats)


def _artefact(
    slug: str,
    kind: str,
    layer: str | None,
    probe: int | None,
    channel: int | None,
    identity: tuple[str, int],
    config: BuildConfig,
    title: str,
) -> Artefact:
    parts = [
        kind,
        layer,
        f"c{channel}" if channel is not None else None,
        f"p{probe}" if probe is not None else None,
    ]
    name = "-".join(p for p in parts if p)
    folder = f"runs/{slug}/media/{layer or kind}"
    files = {fmt: f"{folder}/{name}.{fmt}" for fmt in _formats(kind, config)}
    if kind != "contact":
        files["poster"] = f"{folder}/{name}.poster.png"
    inputs = {
        "run": identity[0],
        "epochs": identity[1],
        "kind": kind,
        "layer": layer,
        "probe": probe,
        "channel": channel,
        "files": files,
        "render": RENDER_VERSION,
        "tool": __version__,
        "options": _options_used(kind, config),
    }
    return Artefact(f"{slug}/{name}", kind, layer, probe, channel, files, _digest(inputs), title)


def _options_used(kind: str, config: BuildConfig) -> dict[str, Any]:
    """Only the options that change this kind's pixels, so others don't force a re-make."""
    used: dict[str, Any] = {"fps": config.fps, "max_side": config.max_side}
    if kind in ("grid", "channel", "contact"):
        used.update(colormap=config.colormap, scale=config.scale)
    if kind == "channel":
        used["channel_side"] = config.channel_side
    if config.auto_formats and kind != "contact":
        used["gif_max_side"] = config.gif_max_side
    return used


def _up_to_date(artefact: Artefact, record: dict[str, Any] | None, site: Path) -> bool:
    if not record or record.get("fingerprint") != artefact.fingerprint:
        return False
    return _files_exist(record, site)


# -- write -------------------------------------------------------------------------------
def _render_options(config: BuildConfig) -> RenderOptions:
    return RenderOptions(
        colormap=config.colormap,
        scale=config.scale,
        fps=config.fps,
        max_side=config.max_side,
        channel_side=config.channel_side,
        gif_max_side=config.gif_max_side if config.auto_formats else None,
    )


def group_jobs(plans: Iterable[RunPlan], todo: list[Artefact], options: RenderOptions) -> list[Job]:
    """One job per (run, layer, probe), per (run, conv layer) for kernels, per probe."""
    needed = {a.id for a in todo}
    jobs: list[Job] = []
    for plan in plans:
        groups: dict[tuple, list[Artefact]] = {}
        for artefact in plan.artefacts:
            if artefact.id not in needed:
                continue
            kind = artefact.kind if artefact.kind in ("kernels", "probe") else "layer"
            groups.setdefault((kind, artefact.layer, artefact.probe), []).append(artefact)
        for (kind, layer, probe), items in groups.items():
            jobs.append(
                Job(str(plan.run.path), plan.run.epochs, kind, layer, probe, tuple(items), options)
            )
    return sorted(jobs, key=lambda job: -len(job.artefacts))


def _make(
    plans: list[RunPlan], todo: list[Artefact], config: BuildConfig, site: Path
) -> dict[str, dict[str, Any]]:
    """Run the jobs (in ``config.jobs`` processes) and return manifest records by id."""
    jobs = group_jobs(plans, todo, _render_options(config))
    by_id = {a.id: a for a in todo}
    records: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(todo), desc="build", unit="artefact", disable=None) as bar:
        for results in _run_jobs(jobs, site, config.jobs):
            for made in results:
                records[made.id] = _record(by_id[made.id], made)
            bar.update(len(results))
    return records


def _run_jobs(jobs: list[Job], site: Path, workers: int) -> Iterable[list[Made]]:
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


def _record(artefact: Artefact, made: Made) -> dict[str, Any]:
    record = {**asdict(artefact), **asdict(made)}
    record["files"] = made.files
    return record


def _carried_over(
    old: dict[str, Any], plans: list[RunPlan], config: BuildConfig, site: Path
) -> dict[str, Any]:
    """Artefacts of these runs that ``--layers``/``--probes`` left out: kept as they are,
    so building one layer again never throws away the others."""
    slugs = {plan.slug for plan in plans}
    kept = {}
    for aid, record in old.items():
        outside = (
            config.layers is not None
            and record.get("layer") is not None
            and record["layer"] not in config.layers
        ) or (
            config.probes is not None
            and record.get("probe") is not None
            and record["probe"] + 1 not in config.probes
        )
        if aid.split("/", 1)[0] in slugs and outside and _files_exist(record, site):
            kept[aid] = record
    return kept


def _files_exist(record: dict[str, Any], site: Path) -> bool:
    return all((site / path).is_file() for path in record.get("files", {}).values())


def _remove_stale(site: Path, owned_before: Iterable[str], owned_now: Iterable[str]) -> int:
    """Delete files the previous build wrote that this one no longer does. Only paths in
    the previous manifest are candidates, so files a build did not create are never touched."""
    removed = 0
    for relative in sorted(set(owned_before) - set(owned_now)):
        target = (site / relative).resolve()
        if site.resolve() in target.parents and target.is_file():
            target.unlink()
            removed += 1
    return removed


def _warn_if_large(plans: list[RunPlan], todo: list[Artefact], config: BuildConfig) -> None:
    estimate = sum(
        _estimate_bytes(plan.run, a, config) for plan in plans for a in plan.artefacts if a in todo
    )
    if estimate > WARN_BYTES:
        log.warning(
            "this build will write about %s (GitHub Pages refuses sites over 1 GB); "
            "use --formats mp4, fewer --channel-probes or a smaller --max-side",
            human_size(estimate),
        )


def _estimate_bytes(run: RunReader, artefact: Artefact, config: BuildConfig) -> float:
    side = config.channel_side if artefact.kind == "channel" else config.max_side
    frames = 1 if artefact.kind == "contact" else run.epochs
    total = 0.0
    for fmt in artefact.files:
        fmt_side = min(side, config.gif_max_side) if fmt == "gif" and config.auto_formats else side
        count = 1 if fmt == "poster" else frames
        total += BYTES_PER_PIXEL_FRAME[fmt] * fmt_side * fmt_side * count
    return total


def _manifest(plans: list[RunPlan], records: dict[str, Any], config: BuildConfig) -> dict[str, Any]:
    runs = [
        {
            "slug": plan.slug,
            "name": plan.run.name,
            "store": str(plan.run.path.resolve()),
            "epochs": plan.run.epochs,
            "artefacts": sorted(aid for aid in records if aid.startswith(plan.slug + "/")),
        }
        for plan in plans
    ]
    return {
        "version": MANIFEST_VERSION,
        "tool_version": __version__,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(config).items()
            if k != "stores"
        },
        "runs": runs,
        "artefacts": records,
        "files": sorted({p for r in records.values() for p in r["files"].values()}),
    }


def load_manifest(site: Path) -> dict[str, Any]:
    """The previous build's manifest, or an empty one (a damaged one is rebuilt, not fatal)."""
    path = site / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else {}


def discover_stores(runs: Path) -> tuple[Path, ...]:
    """Every ``*.zarr`` under ``runs``, sorted (empty when there is none)."""
    return tuple(sorted(p for p in Path(runs).glob("*.zarr") if p.is_dir()))
