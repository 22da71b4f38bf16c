"""The run page's "When each layer settles" section: linear CKA drawn as two heatmaps.

The numbers come from ``generator.analysis.cka`` (computed in memory at each build, a few
seconds for a ResNet-18-sized run, so nothing is cached on disk); this module only
captions and draws them with the shared ``heatmap.grid_heatmap`` and writes them as
``similarity.json`` beside the run page, a file of the site that the manifest lists like
every other page file, for users who want the numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

import generator.site.heatmap as heatmap
from generator.analysis.cka import RunSimilarity, settle_epoch
from generator.site.context import RunContext
from generator.site.figures import group_mean
from generator.site.pages import Chart, SettleRow, Similarity
from generator.site.paths import url
from generator.site.text import shown
from generator.site.tree import chart_groups
from generator.store import LayerSpec

DATA_FILE = "similarity.json"
MAX_EPOCH_COLUMNS = 40  # more epochs are shown as this many evenly spaced ones
NOT_SETTLED = "not before the last epoch"
MAX_ROWS = 24  # heatmap rows drawn one per layer; a deeper net is drawn one row per stage
MAX_TIPS = 2500  # cells with a tooltip; a larger heatmap leaves them out to stay light


def similarity_section(ctx: RunContext, here: str) -> tuple[Similarity, dict[str, bytes]]:
    """The section of the run page at ``here``, and its data file by site path. A net of
    more than ``MAX_ROWS`` layers is drawn per stage (``stage_similarity``) so the
    heatmaps stay legible; the settle table and the data file keep every layer."""
    numbers = ctx.similarity
    path = f"{ctx.paths.base}/{DATA_FILE}"
    names = [shown(n) for n in numbers.layers]
    channels = [ctx.run.layer(n).channels for n in numbers.layers]
    drawn, drawn_names, note = numbers, names, ""
    if len(names) > MAX_ROWS:
        drawn = stage_similarity(numbers, chart_groups(ctx.tree))
        drawn_names = [shown(n) for n in drawn.layers]
        note = "; one row per stage, the mean of its layers (every layer: the network page)"
    to_final, between = to_final_chart(drawn, drawn_names), between_chart(drawn, drawn_names)
    section = Similarity(
        to_final=replace(to_final, caption=to_final.caption + note),
        between=replace(between, caption=between.caption + note),
        threshold=f"{numbers.threshold:g}",
        settle=settle_rows(numbers, names, channels),
        data_href=url(here, path),
    )
    data = json.dumps(numbers.to_json(), indent=1).encode("utf-8")
    return section, {path: data}


def stage_similarity(
    numbers: RunSimilarity, groups: list[tuple[str, list[LayerSpec]]]
) -> RunSimilarity:
    """``numbers`` with one row per group of layers (``tree.chart_groups``): the mean
    CKA of its layers (NaN ignored), its settle epoch from that mean, its fewest samples."""
    index = {name: i for i, name in enumerate(numbers.layers)}
    rows = [[index[layer.name] for layer in group] for _, group in groups]
    to_final = np.stack([group_mean(list(numbers.to_final[r])) for r in rows])
    between = np.array([[_finite_mean(numbers.between[np.ix_(a, b)]) for b in rows] for a in rows])
    return replace(
        numbers,
        layers=tuple(label for label, _ in groups),
        to_final=to_final,
        between=between,
        settle=tuple(settle_epoch(row, threshold=numbers.threshold) for row in to_final),
        samples=tuple(min(numbers.samples[i] for i in r) for r in rows),
    )


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def shown_epochs(epochs: int, limit: int = MAX_EPOCH_COLUMNS) -> np.ndarray:
    """The epochs drawn as columns: all up to ``limit``, else ``limit`` evenly spaced ones
    that always include the first and the last."""
    if epochs <= limit:
        return np.arange(epochs)
    return np.unique(np.rint(np.linspace(0, epochs - 1, limit)).astype(int))


def to_final_chart(numbers: RunSimilarity, names: list[str]) -> Chart:
    """Layers x epochs: how similar each layer is to itself at the last epoch."""
    epochs = shown_epochs(numbers.to_final.shape[1])
    values = numbers.to_final[:, epochs]
    texts = [[_two_places(v) for v in row] for row in values]
    tips = [
        [
            f"{name}, epoch {e}: CKA {_two_places(v)} to the last epoch"
            + (" (settled)" if settled is not None and e >= settled else "")
            for e, v in zip(epochs.tolist(), row, strict=True)
        ]
        for name, row, settled in zip(names, values.tolist(), numbers.settle, strict=True)
    ]
    title = "Similarity to the final network"
    svg = heatmap.grid_heatmap(
        values,
        texts,
        names,
        [str(e) for e in epochs.tolist()],
        title=title,
        label=f"{title}: linear CKA of each layer at each epoch to the same layer at the last",
        axes=("layer", "epoch →"),
        tips=tips if values.size <= MAX_TIPS else None,
    )
    skipped = len(epochs) < numbers.to_final.shape[1]
    caption = "linear CKA of each layer's probe activations to the same layer at the last epoch"
    if skipped:
        caption += f"; {len(epochs)} of {numbers.to_final.shape[1]} epochs shown"
    return Chart(title, svg, caption)


def between_chart(numbers: RunSimilarity, names: list[str]) -> Chart:
    """Layers x layers at the last epoch, on the common grid of probe regions."""
    texts = [[_two_places(v) for v in row] for row in numbers.between]
    tips = [
        [f"{a} and {b}: CKA {_two_places(v)}" for b, v in zip(names, row, strict=True)]
        for a, row in zip(names, numbers.between.tolist(), strict=True)
    ]
    title = "Similarity between layers at the last epoch"
    svg = heatmap.grid_heatmap(
        numbers.between,
        texts,
        names,
        names,
        title=title,
        label=f"{title}: linear CKA of every pair of layers",
        axes=("layer", "layer →"),
        tips=tips if numbers.between.size <= MAX_TIPS else None,
    )
    grid = numbers.grid
    caption = (
        f"linear CKA between layers on {numbers.between_samples} samples: each probe's "
        f"maps resampled to {grid} × {grid} regions of the image; a layer without a map "
        "gives every region of a probe the same value"
    )
    return Chart(title, svg, caption)


def settle_rows(
    numbers: RunSimilarity, names: list[str], channels: list[int]
) -> tuple[SettleRow, ...]:
    """Each layer's settle epoch, its sample count, and a warning where few samples
    make linear CKA read high."""
    return tuple(
        SettleRow(
            name,
            NOT_SETTLED if epoch is None else str(epoch),
            f"{samples:,}",
            "fewer samples than channels: reads high" if samples < width else "",
        )
        for name, epoch, samples, width in zip(
            names, numbers.settle, numbers.samples, channels, strict=True
        )
    )


def _two_places(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "—"
