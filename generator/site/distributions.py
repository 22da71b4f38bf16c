"""Gradients and distributions as inline SVG (issue 26): offset histograms over epochs on
each layer page, and the gradient flow of a run (layers on the x axis) on its run page.

An **offset histogram** is TensorBoard's "offset" view: one ridge per epoch, the oldest at
the top and each later one drawn lower and in front of it, over the layer's fixed bins
(``generator/record/gradients.py``), so a distribution that drifts, widens or collapses
is seen as the ridges move. Each ridge is scaled to its own peak (a shape, not a count);
the counts outside the fixed range are said in the ridge's tooltip and the caption.

The **gradient flow** puts the layers on the x axis, model order, so 200 layers are still
one readable chart: one line per shown epoch (at most ``FLOW_EPOCHS``, the first trained
epoch and the last included) of the gradient norm, and of the update/weight ratio with
its usual healthy value, 1e-3 per step, as a dashed reference line. Both on log axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from generator.site.linechart import finite_runs
from generator.site.pages import Chart
from generator.site.svg import (
    CHAR_W,
    depth_colors,
    format_number,
    log_range,
    log_ticks,
    nice_ticks,
    open_svg,
    short,
)
from generator.store import GradientStats, Histograms

YScale = Callable[[Any], np.ndarray]  # value(s) -> y pixel(s)
RIDGES = 24  # most ridges an offset histogram draws (epochs evenly chosen, the last kept)
FLOW_EPOCHS = 6  # most epoch lines of a gradient-flow chart
HEALTHY_RATIO = 1e-3  # the update/weight ratio per step usually called healthy
TICK_LAYERS = 12  # most layer names under a gradient-flow chart
RIDGE_SIZE = (360, 240)
FLOW_SIZE = (720, 300)
FLOW_MARGIN = {"left": 58, "right": 14, "top": 30, "bottom": 70}
KIND_TEXT = {
    "weights": "the layer's weights (kernel or matrix) at each record",
    "activations": "the probe images' activations at each record",
    "gradients": "the gradients of the epoch's backward passes (their mean histogram)",
}


def shown_epochs(valid: np.ndarray, most: int) -> list[int]:
    """Up to ``most`` of the epochs where ``valid``, evenly spread, first and last kept."""
    epochs = np.flatnonzero(valid)
    if len(epochs) <= most:
        return epochs.tolist()
    picks = np.unique(np.rint(np.linspace(0, len(epochs) - 1, most)).astype(int))
    return epochs[picks].tolist()


# -- offset histograms ------------------------------------------------------------------------
def layer_distributions(histograms: Sequence[Histograms | None], name: str) -> tuple[Chart, ...]:
    """The offset histograms of layer ``name``, one per kind the store has for it (none
    for a store without distributions, so the page hides the section)."""
    charts = []
    for found in histograms:
        if found is not None and name in found.layers:
            edges, counts = found.of(name)
            chart = offset_histogram(edges, counts, kind=found.kind)
            if chart is not None:
                charts.append(chart)
    return tuple(charts)


def offset_histogram(edges: np.ndarray, counts: np.ndarray, *, kind: str) -> Chart | None:
    """One ridge per shown epoch of (E, B + 2) ``counts`` on (E, B + 1) ``edges`` (the
    same every epoch); None when no epoch has one (gradients of a run of epoch 0 only)."""
    valid = np.isfinite(counts).all(axis=1) & np.isfinite(edges).all(axis=1)
    epochs = shown_epochs(valid, RIDGES)
    if not epochs:
        return None
    bounds = edges[epochs[-1]].astype(float)
    width, height = RIDGE_SIZE
    left, right, top, bottom = 34, 10, 10, 34
    span_x = width - left - right
    ridge = (height - top - bottom) * 0.4
    step = (height - top - bottom - ridge) / max(len(epochs) - 1, 1)
    centres = left + (np.arange(len(bounds) - 1) + 0.5) / (len(bounds) - 1) * span_x
    colours = depth_colors(len(epochs))
    title = f"{kind.capitalize()} over epochs"
    parts = [open_svg(width, height, title, f"{title}: one ridge per epoch")]
    for index, epoch in enumerate(epochs):
        base = top + ridge + index * step
        inner = counts[epoch, 1:-1].astype(float)
        heights = inner / inner.max() if inner.max() > 0 else inner
        ys = base - heights * ridge
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(centres, ys, strict=True))
        under, over = counts[epoch, 0], counts[epoch, -1]
        parts.append(
            f"<g><title>epoch {epoch}: {format_number(under)} below, {format_number(over)}"
            f" above the range</title>"
            f'<polygon points="{left:.1f},{base:.1f} {points} {left + span_x:.1f},{base:.1f}"'
            f' fill="#0d1117" fill-opacity="0.85" stroke="{colours[index]}"'
            ' stroke-width="1.2"/></g>'
        )
        if index in (0, len(epochs) - 1) or len(epochs) <= 6:
            parts.append(
                f'<text x="{left - 4}" y="{base:.1f}" text-anchor="end" font-size="9">'
                f"{epoch}</text>"
            )
    parts.append(_value_axis(bounds, left, span_x, height - bottom))
    parts.append(f'<text x="4" y="{top + 8}" font-size="9" class="axis-label">epoch</text></svg>')
    last = epochs[-1]
    caption = (
        f"{KIND_TEXT.get(kind, kind)}; one ridge per epoch, each scaled to its own peak, "
        f"on bins fixed at the first record; at epoch {last}, "
        f"{format_number(counts[last, 0])} below and {format_number(counts[last, -1])} "
        "above the range"
    )
    return Chart(title, Markup("".join(parts)), caption)


def _value_axis(bounds: np.ndarray, left: float, span: float, y: float) -> str:
    """The value axis under the ridges: round ticks within the fixed range."""
    low, high = float(bounds[0]), float(bounds[-1])
    ticks = [t for t in nice_ticks(low, high, 4) if low <= t <= high]
    marks = [f'<line x1="{left}" x2="{left + span}" y1="{y}" y2="{y}" stroke="currentColor"/>']
    for tick in ticks:
        x = left + (tick - low) / (high - low) * span
        marks.append(
            f'<text x="{x:.1f}" y="{y + 14}" text-anchor="middle">{format_number(tick)}</text>'
        )
    return "".join(marks)


# -- gradient flow ----------------------------------------------------------------------------
def gradient_flow(stats: GradientStats | None) -> tuple[Chart, ...]:
    """The run's gradient-flow charts (gradient norm, update/weight ratio per layer), or
    none for a store without gradients or before its first trained epoch."""
    if stats is None:
        return ()
    epochs = shown_epochs(np.isfinite(stats.norm).any(axis=1), FLOW_EPOCHS)
    if not epochs:
        return ()
    norm = flow_chart(
        stats.layers,
        {epoch: stats.norm[epoch] for epoch in epochs},
        title="Gradient norm per layer",
        y_label="gradient norm (log)",
    )
    ratio = flow_chart(
        stats.layers,
        {epoch: stats.update_ratio[epoch] for epoch in epochs},
        title="Update/weight ratio per layer",
        y_label="‖ΔW‖ / ‖W‖ per step (log)",
        reference=HEALTHY_RATIO,
    )
    return (
        Chart(
            "Gradient norm per layer",
            norm,
            "root-mean-square over each epoch's backward passes of the L2 norm of the "
            "layer's gradient; layers in model order, one line per epoch" + unmeasured_note(stats),
        ),
        Chart(
            "Update/weight ratio per layer",
            ratio,
            "mean over each epoch's optimizer steps of ‖W_after − W_before‖ / ‖W_before‖; "
            "about 1e-3 (dashed) is the usual healthy value: far below, a layer barely "
            "learns, far above, the step is too large",
        ),
    )


def unmeasured_note(stats: GradientStats) -> str:
    """The trained epochs in which no pass was measured (a Recorder's overhead budget left
    no time for it), said once; "" when every trained epoch has a measurement."""
    trained = stats.passes.max(axis=1) > 0
    missed = [int(e) for e in np.flatnonzero(trained & (stats.sampled.max(axis=1) == 0))]
    if not missed:
        return ""
    shown = ", ".join(map(str, missed[:8])) + (
        f" and {len(missed) - 8} more" if len(missed) > 8 else ""
    )
    return (
        f". Not measured in epoch{'s' * (len(missed) > 1)} {shown}: the overhead budget "
        "left recording no time for it (Recorder(overhead=…); the record itself comes first)"
    )


def flow_chart(
    layers: Sequence[str],
    lines: dict[int, np.ndarray],
    *,
    title: str,
    y_label: str,
    reference: float | None = None,
) -> Markup:
    """Layers on x (model order), one line per epoch of ``lines``, log y."""
    width, height = FLOW_SIZE
    m = FLOW_MARGIN
    span_x, span_y = width - m["left"] - m["right"], height - m["top"] - m["bottom"]
    values = np.concatenate([np.asarray(v, float) for v in lines.values()])
    positive = values[np.isfinite(values) & (values > 0)]
    if reference is not None:
        positive = np.append(positive, reference)
    if positive.size == 0:
        positive = np.array([1.0])
    low, high = log_range(float(positive.min()), float(positive.max()))
    count = len(layers)
    xs = m["left"] + (np.arange(count) + 0.5) / count * span_x

    def y_of(v: np.ndarray | float) -> np.ndarray:
        scaled = (np.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return m["top"] + (1 - np.asarray(scaled, float)) * span_y

    parts = [open_svg(width, height, title, f"{title}, layers in model order")]
    parts.append(_log_axis(low, high, y_of, m["left"], width - m["right"], y_label))
    parts.append(_layer_axis(layers, xs, height - m["bottom"]))
    if reference is not None:
        y = float(y_of(reference))
        parts.append(
            f'<line x1="{m["left"]}" x2="{width - m["right"]}" y1="{y:.1f}" y2="{y:.1f}"'
            ' stroke="currentColor" stroke-dasharray="5 4"/>'
            f'<text x="{width - m["right"] - 2}" y="{y - 4:.1f}" text-anchor="end">'
            f"{format_number(reference)}</text>"
        )
    colours = depth_colors(len(lines))
    for (epoch, series), colour in zip(lines.items(), colours, strict=True):
        parts.append(_flow_line(xs, np.asarray(series, float), y_of, colour, epoch))
    parts.append(_flow_legend(list(lines), colours, m["left"]))
    parts.append(_layer_titles(layers, lines, xs, m["top"], span_y))
    parts.append("</svg>")
    return Markup("".join(parts))


def _flow_line(xs: np.ndarray, values: np.ndarray, y_of: YScale, colour: str, epoch: int) -> str:
    """One epoch's line, broken where a layer has no value (no gradient reached it)."""
    drawable = np.isfinite(values) & (values > 0)
    parts = [f'<g fill="none" stroke="{colour}" stroke-width="1.5"><title>epoch {epoch}</title>']
    ys = np.where(drawable, values, 1.0)
    for start, stop in finite_runs(drawable):
        points = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in zip(xs[start:stop], y_of(ys[start:stop]), strict=True)
        )
        if stop - start == 1:
            x, y = xs[start], float(y_of(ys[start]))
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>')
        else:
            parts.append(f'<polyline points="{points}"/>')
    parts.append("</g>")
    return "".join(parts)


def _log_axis(low: float, high: float, y_of: YScale, left: float, right: float, label: str) -> str:
    marks = []
    for tick in log_ticks(low, high):
        y = float(y_of(tick))
        marks.append(
            f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor"'
            ' stroke-opacity="0.15"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{format_number(tick)}</text>'
        )
    marks.append(
        f'<text class="axis-label" transform="translate(12 {(y_of(low) + y_of(high)) / 2:.1f})'
        f' rotate(-90)" text-anchor="middle">{escape(label)}</text>'
    )
    return "".join(marks)


def _layer_axis(layers: Sequence[str], xs: np.ndarray, y: float) -> str:
    """Up to ``TICK_LAYERS`` layer names, slanted, under their x (every layer has a
    tooltip: ``_layer_titles``)."""
    shown = shown_epochs(np.ones(len(layers), bool), TICK_LAYERS)
    marks = [f'<line x1="{xs[0]:.1f}" x2="{xs[-1]:.1f}" y1="{y}" y2="{y}" stroke="currentColor"/>']
    for index in shown:
        marks.append(
            f'<text transform="translate({xs[index]:.1f} {y + 10}) rotate(30)" font-size="9">'
            f"{escape(short(layers[index], 18))}</text>"
        )
    return "".join(marks)


def _layer_titles(
    layers: Sequence[str], lines: dict[int, np.ndarray], xs: np.ndarray, top: float, span: float
) -> str:
    """A transparent column per layer whose tooltip names it and gives its values."""
    step = float(xs[1] - xs[0]) if len(xs) > 1 else span
    columns = []
    for index, name in enumerate(layers):
        values = ", ".join(f"epoch {e}: {format_number(float(v[index]))}" for e, v in lines.items())
        columns.append(
            f'<rect x="{xs[index] - step / 2:.1f}" y="{top}" width="{step:.1f}"'
            f' height="{span:.1f}" fill="transparent"><title>{escape(name)} — {values}'
            "</title></rect>"
        )
    return "".join(columns)


def _flow_legend(epochs: list[int], colours: list[str], left: float) -> str:
    parts, x = ['<g class="legend">'], left
    for epoch, colour in zip(epochs, colours, strict=True):
        text = f"epoch {epoch}"
        parts.append(
            f'<line x1="{x}" x2="{x + 14}" y1="12" y2="12" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x + 18}" y="16">{text}</text>'
        )
        x += 26 + CHAR_W * len(text)
    parts.append("</g>")
    return "".join(parts)
