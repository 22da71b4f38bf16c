"""``--budget-mb``: the planned site kept under a size, least important animations first out.

Every page and chart is always made (a few MB even for 200 layers). The animations are
ranked: each layer's probe-1 grid and the probes' class probabilities matter most, then
kernels, then the sheets, the other probes' grids, the contact sheets, and last the
per-channel animations (the bulk of a deep net's files). Within a rank the layers are
thinned evenly (``spread_order``), the first and last conv and the output kept longest, so
what is left still covers every stage. What goes is dropped by (rank, layer) group and
named in the manifest (``LeftOut``) with the ``--budget-mb`` that brings it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from generator.build.estimate import (
    Cost,
    artefact_cost,
    human_duration,
    pages_cost,
    rounded_mb,
    wall_seconds,
)
from generator.build.plan import RunPlan, display_name
from generator.build.selection import spread_order
from generator.config import BuildConfig, PublishedOptions
from generator.info import human_size
from generator.site.manifest import ArtefactKind, ArtefactRecord, LeftOut

log = logging.getLogger(__name__)

# Rank of each kind (0 = kept longest); a grid of another probe than the first selected
# one, and its per-channel animations, rank lower (``_rank``).
RANKS = {
    ArtefactKind.GRID: 0,
    ArtefactKind.PROBE: 0,
    ArtefactKind.KERNELS: 1,
    ArtefactKind.KERNEL_CHANGE: 2,
    ArtefactKind.FEATVIZ_SHEET: 2,
    ArtefactKind.PATCH_SHEET: 2,
    ArtefactKind.CONTACT: 4,
    ArtefactKind.CHANNEL: 5,
    ArtefactKind.FEATVIZ: 6,
    ArtefactKind.PATCHES: 6,
}
OTHER_PROBE_GRID = 3
RANK_NAMES = {
    0: "channel grids and class probabilities",
    1: "kernel animations",
    2: "kernel-change, feature-visualization and dataset-example sheets",
    3: "channel grids of the other probes",
    4: "contact sheets",
    5: "per-channel animations",
    6: "per-channel feature visualizations and dataset examples",
}


@dataclass(frozen=True)
class Estimate:
    """A build's estimate: its media (to be made or kept), its pages, and the media the
    budget left out."""

    media: Cost
    pages: Cost
    dropped: Cost
    artefacts: int

    @property
    def bytes(self) -> float:
        return self.media.bytes + self.pages.bytes


def fit_budget(
    plans: Sequence[RunPlan], options: PublishedOptions
) -> tuple[list[RunPlan], Estimate]:
    """``plans`` less the least important artefacts that do not fit ``options.budget_mb``
    (with their ``LeftOut`` added), and the estimate of what is left."""
    pages = sum((pages_cost(plan.run, options, paged=_paged(plan)) for plan in plans), Cost())
    costs = {a.id: artefact_cost(plan.run, a, options) for plan in plans for a in plan.artefacts}
    media = sum(costs.values(), Cost())
    room = options.budget_mb * 1e6 - pages.bytes - media.bytes
    groups = sorted(
        (key for plan in plans for key in _groups(plan).items()),
        key=lambda item: item[0][:2],
        reverse=True,
    )
    dropped: dict[str, list[tuple[int, str, list[ArtefactRecord]]]] = {}
    for (rank, _, slug, layer), items in groups:
        if room >= 0:
            break
        room += sum(costs[a.id].bytes for a in items)
        dropped.setdefault(slug, []).append((rank, layer, items))
    gone = {a.id for runs in dropped.values() for *_, items in runs for a in items}
    left = sum((costs[a] for a in gone), Cost())
    needed = rounded_mb(pages.bytes + media.bytes)
    kept = [_without(plan, gone, dropped.get(plan.slug, []), needed) for plan in plans]
    estimate = Estimate(
        replace(media, bytes=media.bytes - left.bytes, seconds=media.seconds - left.seconds),
        pages,
        left,
        len(costs) - len(gone),
    )
    return kept, estimate


def _paged(plan: RunPlan) -> set[str]:
    """The layers of ``plan`` that keep their channel pages."""
    unpaged = {layer for item in plan.left_out if not item.channel_pages for layer in item.layers}
    return {layer.name for layer in plan.run.layers} - unpaged


def _groups(plan: RunPlan) -> dict[tuple[int, int, str, str], list[ArtefactRecord]]:
    """The plan's artefacts by (rank, place of the layer, run, layer); larger = less
    important. Artefacts of no layer (the probes) go with rank 0, place 0."""
    layers = list(dict.fromkeys(a.layer for a in plan.artefacts if a.layer is not None))
    order = spread_order(len(layers))
    place = {layers[index]: position + 1 for position, index in enumerate(order)}
    first_probe = min((a.probe for a in plan.artefacts if a.probe is not None), default=0)
    groups: dict[tuple[int, int, str, str], list[ArtefactRecord]] = {}
    for artefact in plan.artefacts:
        rank = RANKS[artefact.kind]
        if artefact.kind is ArtefactKind.GRID and artefact.probe != first_probe:
            rank = OTHER_PROBE_GRID
        layer = artefact.layer or ""
        key = (rank, place.get(layer, 0), plan.slug, layer)
        groups.setdefault(key, []).append(artefact)
    return groups


def _without(
    plan: RunPlan, gone: set[str], dropped: list[tuple[int, str, list[ArtefactRecord]]], mb: int
) -> RunPlan:
    """``plan`` less the ``gone`` artefacts, naming per rank what went."""
    if not dropped:
        return plan
    by_rank: dict[int, list[tuple[str, int]]] = {}
    for rank, layer, items in dropped:
        by_rank.setdefault(rank, []).append((layer, len(items)))
    notes = tuple(
        LeftOut(
            what=f"{RANK_NAMES[rank]} of {len(found)} layers, left out to fit --budget-mb",
            option=f"--budget-mb {mb}",
            layers=tuple(layer for layer, _ in found if layer),
            artefacts=sum(count for _, count in found),
        )
        for rank, found in sorted(by_rank.items())
    )
    artefacts = tuple(a for a in plan.artefacts if a.id not in gone)
    return replace(plan, artefacts=artefacts, left_out=(*plan.left_out, *notes))


def say_estimate(
    plans: list[RunPlan], todo: Iterable[ArtefactRecord], estimate: Estimate, config: BuildConfig
) -> None:
    """Before the work starts: the site's estimated size and time, and what the plan left
    out with the option that brings it back (the manifest keeps the same notes)."""
    ids = {a.id for a in todo}
    work = sum(
        artefact_cost(plan.run, a, config).seconds
        for plan in plans
        for a in plan.artefacts
        if a.id in ids
    )
    seconds = wall_seconds(work, estimate.pages.seconds, config.jobs)
    log.info(
        "this build: %d artefacts to make, a site of about %s, about %s",
        len(ids),
        human_size(estimate.bytes),
        human_duration(seconds),
    )
    for plan in plans:
        for item in plan.left_out:
            log.warning(
                "%s: left out %d %s; to make them: %s",
                display_name(plan.run.path),
                item.artefacts,
                item.what,
                item.option,
            )
    if estimate.pages.bytes > config.budget_mb * 1e6:
        log.warning(
            "the pages alone are about %s, over --budget-mb %g",
            human_size(estimate.pages.bytes),
            config.budget_mb,
        )
