"""The compare page: two or more runs of one build side by side.

One page, ``compare/index.html``, holds every run of the build (so it works without
JavaScript and from ``file://``): their curves overlaid, one colour per run; the same
layer of every run side by side (each run's channel-grid animation of probe 1, driven by
the page's one scrubber); and CKA between every pair of runs, layer x layer, at each
epoch (``generator.analysis.compare``), with the epoch from which each layer agrees.
The home page picks runs with checkboxes and links here with ``?runs=a,b,...``; the page
script (``static/compare.js``) then shows only those runs, their pairs and their lines.
The numbers are also written as ``compare/compare.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

import generator.site.heatmap as heatmap
from generator.analysis.compare import CrossSimilarity, compare_runs, plain_json
from generator.defaults import AGREE_THRESHOLD, COMPARE_RUNS
from generator.site.context import RunContext
from generator.site.linechart import Series, line_chart
from generator.site.manifest import ArtefactKind
from generator.site.pages import (
    AgreeRow,
    Chart,
    ComparePage,
    CompareRun,
    Footer,
    Link,
    Media,
    RunPair,
    Scrubber,
    SideBySide,
)
from generator.site.paths import HOME, root_of, url
from generator.site.svg import PALETTE, percent
from generator.site.text import shown

COMPARE = "compare/index.html"
DATA_FILE = "compare/compare.json"
CURVE_NOTE = "solid: validation, dashed: training (from epoch 1); one colour per run"


def compare_link(contexts: Sequence[RunContext]) -> Link | None:
    """The home page's link to the compare page (None with fewer than two runs)."""
    if len(contexts) < 2:
        return None
    return Link(url(HOME, COMPARE), f"Compare all {len(contexts)} runs")


def compare_page(
    contexts: Sequence[RunContext], footer: Footer
) -> tuple[ComparePage, dict[str, bytes]]:
    """The compare page of ``contexts`` (two or more runs with pages) and its data file."""
    here = COMPARE
    runs = tuple(
        CompareRun(ctx.entry.slug, ctx.name, PALETTE[i % len(PALETTE)], url(here, ctx.paths.run))
        for i, ctx in enumerate(contexts)
    )
    numbers = compare_runs([ctx.run for ctx in contexts])
    indices = combinations(range(min(len(contexts), COMPARE_RUNS)), 2)
    pairs = tuple(run_pair(n, runs[i], runs[j]) for (i, j), n in zip(indices, numbers, strict=True))
    epochs = min(ctx.run.epochs for ctx in contexts)
    page = ComparePage(
        path=here,
        template="compare.html",
        title="Compare runs",
        root=root_of(here),
        crumbs=(Link(url(here, HOME), "Runs"), Link(url(here, here), "Compare")),
        footer=footer,
        scrubber=Scrubber(epochs, contexts[0].fps),
        runs=runs,
        curves=curves(contexts, runs),
        layers=side_by_side(contexts, runs, here),
        pairs=pairs,
        threshold=f"{AGREE_THRESHOLD:g}",
        notes=notes(contexts, epochs),
        data_href=url(here, DATA_FILE),
    )
    data = json.dumps([n.to_json() for n in numbers], indent=1).encode("utf-8")
    return page, {DATA_FILE: data}


def notes(contexts: Sequence[RunContext], epochs: int) -> tuple[str, ...]:
    """What the page leaves out: epochs some runs lack, runs beyond the CKA limit."""
    out = []
    if any(ctx.run.epochs != epochs for ctx in contexts):
        out.append(
            f"The runs have different lengths: the scrubber and CKA stop at epoch "
            f"{epochs - 1}, the last epoch every run has (each run's own page shows the rest)."
        )
    if len(contexts) > COMPARE_RUNS:
        out.append(
            f"CKA between runs is computed for the first {COMPARE_RUNS} runs of the build "
            f"({len(contexts)} were built): each pair costs a pass over both runs."
        )
    return tuple(out)


def curves(contexts: Sequence[RunContext], runs: Sequence[CompareRun]) -> tuple[Chart, Chart]:
    """Loss and accuracy per epoch, every run overlaid in its colour."""

    def lines(kind: str) -> list[Series]:
        out = []
        for ctx, run in zip(contexts, runs, strict=True):
            val, train = (ctx.run.scalar_metric(f"{s}_{kind}") for s in ("val", "train"))
            out.append(Series(f"{run.name} validation", val, run.color, group=run.slug))
            out.append(
                Series(f"{run.name} train", train, run.color, 1.25, dashed=True, group=run.slug)
            )
        return out

    markers = max(ctx.run.epochs for ctx in contexts) <= 40

    def chart(kind: str, y_label: str, *, share: bool) -> Chart:
        svg = line_chart(
            lines(kind),
            title=f"{kind.capitalize()} per epoch",
            y_label=y_label,
            y_min=0 if share else None,
            y_max=1 if share else None,
            y_format=percent if share else None,
            markers=markers,
        )
        return Chart(kind.capitalize(), svg, CURVE_NOTE)

    return chart("loss", "cross-entropy loss", share=False), chart(
        "accuracy", "accuracy", share=True
    )


def side_by_side(
    contexts: Sequence[RunContext], runs: Sequence[CompareRun], here: str
) -> tuple[SideBySide, ...]:
    """Every layer name that two or more runs have an animation of, in the order the runs
    list their layers: each run's channel grid of probe 1 (None where it has none)."""
    names: dict[str, None] = {}
    for ctx in contexts:
        names.update((layer.name, None) for layer in ctx.run.layers)
    out: list[SideBySide] = []
    for name in names:
        media = tuple(
            (run, grid_of(ctx, name, here)) for ctx, run in zip(contexts, runs, strict=True)
        )
        if sum(m is not None for _, m in media) >= 2:
            out.append(SideBySide(f"layer-{len(out)}", shown(name), media))
    return tuple(out)


def grid_of(ctx: RunContext, layer: str, here: str) -> Media | None:
    """A run's channel-grid animation of ``layer`` for probe 1, if the build made one."""
    caption = f"{ctx.name}: {shown(layer)}, {ctx.probe_caption(0)}"
    return ctx.media(ArtefactKind.GRID, layer=layer, probe=0, here=here, caption=caption)


def run_pair(numbers: CrossSimilarity, first: CompareRun, second: CompareRun) -> RunPair:
    """One pair's heatmap at the last common epoch (recoloured per epoch by the page
    script from ``data``) and its agree table; a pair not compared says why."""
    if numbers.skipped:
        return RunPair(first, second, None, None, (), numbers.skipped)
    values = numbers.values
    rows, columns = [shown(n) for n in numbers.rows], [shown(n) for n in numbers.columns]
    title = f"CKA between {first.name} and {second.name}"
    svg = heatmap.grid_heatmap(
        values[-1],
        [[_two_places(v) for v in row] for row in values[-1].tolist()],
        rows,
        columns,
        title=title,
        label=f"{title}: linear CKA of every layer of one with every layer of the other",
        axes=(f"{first.name} layer", f"{second.name} layer →"),
    )
    caption = (
        f"linear CKA of the probe activations at epoch {values.shape[0] - 1} (the scrubber "
        f"shows the others) on {numbers.samples} samples: the shared probe images, each "
        f"resampled to {numbers.grid} × {numbers.grid} regions; 1 = the same up to a "
        "rotation and a scale"
    )
    data = json.dumps(plain_json(np.round(values, 2)), separators=(",", ":"))
    return RunPair(first, second, Chart(title, svg, caption), data, agree_rows(numbers), "")


def agree_rows(numbers: CrossSimilarity) -> tuple[AgreeRow, ...]:
    """Each layer of the first run: its counterpart (the same layer, or the best match at
    the last common epoch for other architectures) and when the two agree."""
    last = numbers.values.shape[0] - 1
    final = np.where(np.isnan(numbers.values[-1]), -np.inf, numbers.values[-1])
    out = []
    for r, (name, epoch) in enumerate(zip(numbers.rows, numbers.agree, strict=True)):
        match = name if numbers.same_architecture else numbers.columns[int(final[r].argmax())]
        shown_epoch = f"not by epoch {last}" if epoch is None else str(epoch)
        value = _two_places(float(numbers.matched[-1, r]))
        out.append(AgreeRow(shown(name), shown(match), value, shown_epoch))
    return tuple(out)


def _two_places(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "—"
