"""The build planner: what each run should have, and what of it is up to date.

For each store, every artefact the options select (grid per layer x probe, per-channel
animations, contact sheets, kernels per conv layer, one per probe) becomes a planned
``ArtefactRecord`` whose fingerprint covers exactly its inputs: the store's identity and
committed epochs, the options its renderer uses (``artefacts.OPTIONS_USED``) and
``RENDER_VERSION``. Against the previous manifest, each is then up to date (kept), to be
(re)made, or outside ``--layers``/``--probe-index`` (carried over as it is). Which layers
are animated by default is ``selection``'s; what a ``--budget-mb`` leaves out, ``budget``'s.
Nothing here renders or writes; ``build`` does, in that order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator import __version__, defaults
from generator.build.artefacts import RENDER_VERSION, RenderOptions, options_used
from generator.build.selection import first_probe_only, matches, selected_layers
from generator.config import BuildConfig, PublishedOptions
from generator.errors import OptionError
from generator.site.manifest import ArtefactKind, ArtefactRecord, LeftOut, Manifest, RunEntry
from generator.store import LayerSpec, RunReader, StoreLocation, file_stem, is_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """One store in the build: its reader, site slug, every artefact it should have (none
    for a run with no committed epoch yet) and what the plan left out of it."""

    run: RunReader
    slug: str
    artefacts: tuple[ArtefactRecord, ...]
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True)
class BuildPlan:
    """What a build does with each artefact, decided before anything is written."""

    wanted: Mapping[str, ArtefactRecord]  # this build's selection, as planned
    todo: tuple[ArtefactRecord, ...]  # of ``wanted``: missing or out of date
    kept: Mapping[str, ArtefactRecord]  # of ``wanted``: up to date (previous records)
    carried: Mapping[str, ArtefactRecord]  # outside --layers/--probe-index: kept as they are

    def records(self, made: Mapping[str, ArtefactRecord]) -> dict[str, ArtefactRecord]:
        """Every record the new manifest lists, once ``made`` holds the re-made ones."""
        return {**self.carried, **self.kept, **made}


def run_slug(path: StoreLocation) -> str:
    """A folder name for a run: its readable stem plus a hash of its absolute path, so two
    runs called ``demo`` in different folders never collide and nothing escapes ``runs/``."""
    stem = path.name.removesuffix(".zarr")
    readable = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "run"
    where = str(path) if is_url(path) else Path(path).resolve()
    digest = hashlib.sha1(os.fsencode(where)).hexdigest()[:6]
    return f"{readable}-{digest}"


def display_name(path: StoreLocation) -> str:
    """The run's name as shown: the store folder's stem, with bytes that are not UTF-8
    escaped (``\\xff``), so a page or the manifest can always be written as UTF-8."""
    stem = path.name.removesuffix(".zarr")
    return os.fsencode(stem).decode("utf-8", "backslashreplace")


# -- gather ------------------------------------------------------------------------------
def plan_run(run: RunReader, config: BuildConfig) -> RunPlan:
    """Every artefact of one run that the options select, with fingerprints; a deep net's
    default leaves most layers' animations out (``selection``) and says so."""
    slug = run_slug(run.path)
    chosen = set(selected_layers(run, config.layers, all_layers=config.all_layers))
    probes = _selected_probes(run, config.probe_index)
    if run.epochs == 0:
        log.warning("%s has no committed epoch yet: its card says so, nothing is drawn", run.path)
        return RunPlan(run, slug, ())
    planner = _Planner(slug, _run_identity(run), config)
    default = config.layers is None and not config.all_layers
    light = first_probe_only(run.layers) if default and len(probes) > 1 else set()
    artefacts: list[ArtefactRecord] = []
    left: dict[str, int] = {}
    thinned: dict[str, int] = {}
    for spec in run.layers:
        records = _layer_records(planner, run, spec, probes, config)
        if spec.name in light:
            kept = [r for r in records if r.probe in (None, probes[0])]
            thinned[spec.name], records = len(records) - len(kept), kept
        if spec.name in chosen:
            artefacts += records
        elif config.layers is None:  # explicit --layers carry the others over instead
            left[spec.name] = len(records)
    artefacts += [
        planner.record(ArtefactKind.PROBE, probe=probe, share=probe == 0) for probe in probes
    ]
    notes = _left_out_by_default(left, thinned, len(probes))
    return RunPlan(run, slug, tuple(artefacts), notes)


def _layer_records(
    planner: _Planner, run: RunReader, spec: LayerSpec, probes: list[int], config: BuildConfig
) -> list[ArtefactRecord]:
    """Every artefact of one layer: grids, contact sheets and per-channel animations per
    probe, kernels, feature visualizations and dataset examples."""
    layer, artefacts = spec.name, []
    for number, probe in enumerate(probes):
        artefacts.append(
            planner.record(ArtefactKind.GRID, layer=layer, probe=probe, share=probe == 0)
        )
        if number < config.contact_probes:
            artefacts.append(planner.record(ArtefactKind.CONTACT, layer=layer, probe=probe))
        if spec.is_conv and number < config.channel_probes:
            artefacts += [
                planner.record(ArtefactKind.CHANNEL, layer=layer, probe=probe, channel=c)
                for c in range(paged_channels(spec, config.channel_pages))
            ]
    if spec.is_conv:
        artefacts += [
            planner.record(ArtefactKind.KERNELS, layer=layer, share=True),
            planner.record(ArtefactKind.KERNEL_CHANGE, layer=layer, share=True),
        ]
    artefacts += _featviz_records(planner, run, layer, config.channel_pages)
    if spec.is_conv and run.attrs.examples:
        artefacts += _example_records(planner, layer, paged_channels(spec, config.channel_pages))
    return artefacts


def _left_out_by_default(
    left: Mapping[str, int], thinned: Mapping[str, int], probes: int
) -> tuple[LeftOut, ...]:
    """What the default plan of a deep net did not animate, and how to get it."""
    option = "--layers PATTERNS (names or globs, e.g. --layers 'stage2.*') or --all-layers"
    notes = []
    if thinned:
        what = (
            f"the channel grids of probes 2-{probes} of {len(thinned)} block outputs (a deep "
            "net's default: its first and last conv and output show every probe)"
        )
        notes.append(LeftOut(what, option, tuple(thinned), sum(thinned.values())))
    if left:
        what = (
            f"animations of {len(left)} layers: a net of more than {defaults.ALL_LAYERS_UP_TO} "
            "layers gets its block outputs, first and last conv and output animated by default"
        )
        notes.append(LeftOut(what, option, tuple(left), sum(left.values()), channel_pages=False))
    return tuple(notes)


def _featviz_records(
    planner: _Planner, run: RunReader, layer: str, channel_pages: int
) -> list[ArtefactRecord]:
    """A layer's feature-visualization sheet, and an animation per channel that has a page
    (they are shown only there), if recorded."""
    spec = run.attrs.featviz
    if spec is None or layer not in spec.channels:
        return []
    channels = range(min(spec.channels[layer], paged_channels(run.layer(layer), channel_pages)))
    return [planner.record(ArtefactKind.FEATVIZ_SHEET, layer=layer, share=True)] + [
        planner.record(ArtefactKind.FEATVIZ, layer=layer, channel=c) for c in channels
    ]


def _example_records(planner: _Planner, layer: str, channels: int) -> list[ArtefactRecord]:
    """A conv layer's dataset examples: one patch animation per channel and the sheet."""
    records = [
        planner.record(ArtefactKind.PATCHES, layer=layer, channel=c) for c in range(channels)
    ]
    return [*records, planner.record(ArtefactKind.PATCH_SHEET, layer=layer)]


def paged_channels(spec: LayerSpec, channel_pages: int) -> int:
    """How many channels of a layer get their own page and per-channel animations: the
    first ``--channel-pages`` of a conv layer (every channel is in the layer's grid), so a
    512-channel layer does not make 512 pages and a thousand videos by default."""
    return min(spec.channels, channel_pages) if spec.is_conv else 0


def _selected_probes(run: RunReader, numbers: tuple[int, ...] | None) -> list[int]:
    if numbers is None:
        return list(range(run.n_probes))
    bad = [n for n in numbers if n > run.n_probes]
    if bad:
        raise OptionError(f"--probe-index {bad[0]}: {run.path} has probes 1..{run.n_probes}")
    return [n - 1 for n in numbers]


def _run_identity(run: RunReader) -> tuple[str, int]:
    """What makes this store this run, and how many epochs this build shows of it."""
    attrs = {k: v for k, v in run.attrs.to_json().items() if k != "epochs_committed"}
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
        share: bool = False,
    ) -> ArtefactRecord:
        """The planned record of one artefact. ``share``: with ``--formats auto`` it also
        gets a small GIF, offered as a download (one per layer and kind: probe 1's, whatever
        ``--probe-index`` selects), the format that pastes into slides, chats and READMEs."""
        stem = file_stem(layer) if layer is not None else None
        parts = [
            kind.value,
            stem,
            f"c{channel}" if channel is not None else None,
            f"p{probe}" if probe is not None else None,
        ]
        name = "-".join(p for p in parts if p)
        folder = f"runs/{self.slug}/media/{stem or kind.value}"
        files = {fmt: f"{folder}/{name}.{fmt}" for fmt in self.formats(kind, share=share)}
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

    def formats(self, kind: ArtefactKind, *, share: bool) -> list[str]:
        """The files of an artefact. ``auto``: WebM (AV1) first, the H.264 MP4 for
        browsers without AV1, and a GIF only to ``share``: a GIF inside ``<video>`` is
        shown by no browser that plays video (one that plays neither source shows the
        poster), and the GIFs of every probe were a quarter of a site's bytes."""
        if not kind.is_animation:
            return ["png"]
        if self.config.auto_formats:
            return ["webm", "mp4", "gif"] if share else ["webm", "mp4"]
        return list(self.config.formats)


def _title(kind: ArtefactKind, layer: str | None, probe: int | None, channel: int | None) -> str:
    shown = "" if probe is None else f"probe {probe + 1}"
    return {
        ArtefactKind.GRID: f"{layer}, all channels, {shown}",
        ArtefactKind.CHANNEL: f"{layer}, channel {(channel or 0) + 1}, {shown}",
        ArtefactKind.CONTACT: f"{layer} contact sheet, {shown}",
        ArtefactKind.KERNELS: f"{layer} kernels over epochs",
        ArtefactKind.KERNEL_CHANGE: f"{layer} kernel change since epoch 0, over epochs",
        ArtefactKind.PROBE: f"{shown}: class probabilities over epochs",
        ArtefactKind.FEATVIZ: f"{layer}, channel {(channel or 0) + 1}, feature visualization",
        ArtefactKind.FEATVIZ_SHEET: f"{layer} feature visualizations over epochs",
        ArtefactKind.PATCHES: f"{layer}, channel {(channel or 0) + 1}, top dataset examples",
        ArtefactKind.PATCH_SHEET: f"{layer}, every channel's top dataset example",
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
    """Artefacts of these runs that ``--layers``/``--probe-index`` left out: kept as they are,
    so building one layer again never throws away the others."""
    slugs = {plan.slug for plan in plans if plan.run.epochs > 0}
    kept = {}
    for aid, record in previous.artefacts.items():
        outside = (
            config.layers is not None
            and record.layer is not None
            and not matches(record.layer, config.layers)
        ) or (
            config.probe_index is not None
            and record.probe is not None
            and record.probe + 1 not in config.probe_index
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
            left_out=plan.left_out,
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


def published_options(config: BuildConfig) -> PublishedOptions:
    """The build settings a site may show: never a local path or a machine's worker count
    (the fields ``BuildConfig`` adds to ``PublishedOptions``)."""
    return PublishedOptions.of(config)


def stale_files(previous: Manifest, current: Manifest) -> list[str]:
    """Files the previous build owned that this one does not: the only deletion candidates."""
    return sorted(set(previous.files) - set(current.files))
