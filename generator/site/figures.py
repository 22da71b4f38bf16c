"""The gallery's figures: charts drawn from a run's numbers, captioned for the page.

Each function takes arrays (from the reader or ``analysis``) and returns what a template
shows (``Chart``, ``Confusion``). Figures degrade with size: the confusion matrix becomes
a raster image above ``heatmap.SVG_MAX_CLASSES`` classes and a probe's chart draws at
most ``PROBE_CLASSES`` classes, so a page stays publishable at any class count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

import generator.analysis.statistics as analysis
import generator.site.heatmap as heatmap
from generator.site.linechart import Band, Series, line_chart
from generator.site.pages import Chart, ConfusedPair, Confusion, Image
from generator.site.paths import url
from generator.site.svg import PALETTE, TRAIN, VAL, depth_colors, percent
from generator.site.text import format_percent

PROBE_CLASSES = len(PALETTE)  # more lines than colours cannot be told apart
CONFUSED_PAIRS = 20
IMAGE_WIDTH = 640  # largest CSS width of the raster confusion matrix
IMAGE_MIN_WIDTH = 420  # as wide as the SVG heatmap draws a few classes
ROW_NOTE = "rows are the true class, shade = share of the row"
TRAINING_NOTE = "training metrics start at epoch 1 (epoch 0 is the untrained network)"


def curves(metrics: Mapping[str, np.ndarray]) -> tuple[Chart, Chart]:
    """Loss and accuracy per epoch, train against validation."""

    def pair(kind: str) -> list[Series]:
        return [
            Series("train", metrics[f"train_{kind}"], TRAIN),
            Series("validation", metrics[f"val_{kind}"], VAL),
        ]

    loss = line_chart(
        pair("loss"), title="Loss per epoch", y_label="cross-entropy loss", markers=True
    )
    accuracy = line_chart(
        pair("accuracy"),
        title="Accuracy per epoch",
        y_label="accuracy",
        y_min=0,
        y_max=1,
        y_format=percent,
        markers=True,
    )
    return (Chart("Loss", loss, TRAINING_NOTE), Chart("Accuracy", accuracy, TRAINING_NOTE))


def change_chart(
    groups: Sequence[tuple[str, Sequence[np.ndarray]]], *, title: str = "Weight change per layer"
) -> Chart:
    """The relative weight change per epoch of each group of layers (one series each: a
    layer, or the mean of a stage's or block's layers, see ``tree.chart_groups``), on a
    log axis when it spans decades."""
    names = [
        name if len(values) == 1 else f"{name} (mean of {len(values)})" for name, values in groups
    ]
    lines = [group_mean(values) for _, values in groups]
    flat = np.concatenate([np.ravel(v) for v in lines] or [np.empty(0)])
    log = analysis.wants_log_scale(flat)
    svg = line_chart(
        [Series(n, v, c) for n, v, c in zip(names, lines, depth_colors(len(names)), strict=True)],
        title=title,
        markers=len(names) <= 4,
        y_label="relative change" + (" (log)" if log else ""),
        log_y=log,
        y_min=None if log else 0,
        size=(720, 280),
    )
    grouped = any(len(values) > 1 for _, values in groups)
    caption = "‖W(e) − W(e−1)‖ / ‖W(e−1)‖ of each layer's weights; undefined at epoch 0"
    if grouped:
        caption += "; a group's line is the mean of its layers"
    return Chart(title, svg, caption)


def group_mean(values: Sequence[np.ndarray]) -> np.ndarray:
    """The mean over layers of (E,) series, per epoch over the finite ones (NaN where
    none is: epoch 0 of a change), without numpy's empty-slice warning."""
    stack = np.stack([np.asarray(v, float) for v in values])
    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def confusion(
    counts: np.ndarray, class_names: Sequence[str], *, image_path: str, here: str
) -> tuple[Confusion, dict[str, bytes]]:
    """The (E, K, K) confusion counts as the run page shows them, and any file the figure
    needs (the raster image, at ``image_path``, for many classes)."""
    last = counts[-1]
    title = f"Confusion matrix, epoch {len(counts) - 1}"
    if len(class_names) <= heatmap.SVG_MAX_CLASSES:
        svg = heatmap.confusion_heatmap(last, class_names, title=title)
        chart = Chart("Confusion matrix", svg, "validation split; " + ROW_NOTE)
        data = json.dumps(np.asarray(counts).tolist(), separators=(",", ":"))
        return Confusion(chart, data, None, ()), {}
    png, side, factor = heatmap.heatmap_png(last)
    display = int(np.clip(side * 4, IMAGE_MIN_WIDTH, IMAGE_WIDTH))  # CSS pixels
    pooled = f"; each pixel sums {factor} × {factor} classes" if factor > 1 else ""
    image = Image(
        url(here, image_path),
        f"{title}: {len(class_names)} classes, one pixel per cell",
        display,
        display,
        f"{title}, validation split, {len(class_names)} classes{pooled}; {ROW_NOTE}",
    )
    pairs = tuple(
        ConfusedPair(class_names[t], class_names[p], n, format_percent(share))
        for t, p, n, share in analysis.top_confused(last, CONFUSED_PAIRS)
    )
    return Confusion(None, None, image, pairs), {image_path: png}


def probe_chart(probs: np.ndarray, true: int, class_names: Sequence[str], number: int) -> Chart:
    """(E, K) class probabilities of one probe; the true class solid, the others dashed,
    at most ``PROBE_CLASSES`` of them (the true one and the most probable) with a note."""
    shown = analysis.top_classes(probs, true, PROBE_CLASSES)
    series = [
        Series(
            class_names[k],
            probs[:, k],
            PALETTE[i % len(PALETTE)],
            width=3.0 if k == true else 1.25,
            dashed=k != true,
        )
        for i, k in enumerate(shown)
    ]
    svg = line_chart(
        series,
        title=f"Probe {number} class probabilities",
        y_label="probability",
        y_min=0,
        y_max=1,
        size=(420, 200),
        y_format=percent,
    )
    caption = "solid line: the true class; dashed: the others"
    if len(shown) < len(class_names):
        caption += f" (the {len(shown)} most probable of {len(class_names)} classes)"
    return Chart(f"Probe {number}", svg, caption)


def layer_charts(
    dead: np.ndarray, abs_mean: np.ndarray, *, unit: str, markers: bool
) -> tuple[Chart, Chart]:
    """A layer's share of dead units and its mean |activation| with the channels' range."""
    peak = float(np.nanmax(dead)) if np.isfinite(dead).any() else 0.0
    dead_svg = line_chart(
        [Series(f"dead {unit}", dead, PALETTE[3])],
        title=f"Share of dead {unit}",
        y_label=f"share of {unit}",
        y_min=0,
        y_max=max(0.05, peak),
        y_format=percent,
        markers=markers,
        size=(480, 220),
    )
    mean, lo, hi = analysis.activation_range(abs_mean)
    abs_svg = line_chart(
        [Series("mean of all channels", mean, TRAIN)],
        bands=[Band(f"range over {unit}", lo, hi, TRAIN)],
        title="Mean |activation|",
        y_label="mean |activation|",
        y_min=0,
        markers=markers,
        size=(480, 220),
    )
    return (
        Chart(
            f"Dead {unit}",
            dead_svg,
            f"{unit} whose output is constant (max = min) over every probe",
        ),
        Chart(
            "Mean |activation|",
            abs_svg,
            f"band: the lowest to highest {unit[:-1]} (averaged over probes)",
        ),
    )


def kernel_chart(change: np.ndarray, channel: int, *, markers: bool) -> Chart:
    """How much one output channel's kernel changed each epoch."""
    svg = line_chart(
        [Series(f"channel {channel + 1} kernel", change, PALETTE[2])],
        title=f"Kernel change of channel {channel + 1}",
        y_label="relative change",
        y_min=0,
        size=(480, 200),
        markers=markers,
    )
    return Chart("Kernel change", svg, "‖K(e) − K(e−1)‖ / ‖K(e−1)‖ of this channel's kernel")


def channel_stats_chart(stats: Mapping[str, np.ndarray], caption: str) -> Chart:
    """One channel's (E,) mean, mean |activation| and min..max band for one probe."""
    svg = line_chart(
        [
            Series("mean", stats["mean"], TRAIN),
            Series("mean |activation|", stats["abs_mean"], VAL),
        ],
        bands=[Band("min .. max", stats["min"], stats["max"], TRAIN)],
        title=f"Channel statistics, {caption}",
        y_label="activation",
        size=(360, 190),
    )
    return Chart(caption, svg, caption)
