"""Line charts over epochs as inline SVG: axes, ticks, bands, legend and an epoch marker.

Every chart answers "how does this change over epochs", so the x axis is always the epoch.
Coordinates are computed as numpy arrays; NaN values (the training metrics and weight
change at epoch 0) break a line instead of being drawn as zero. The result is ``Markup``
so Jinja's autoescape inserts it unchanged; all text inside is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from markupsafe import Markup, escape

from generator.analysis.statistics import wants_log_scale
from generator.site.svg import (
    CHAR_W,
    Formatter,
    format_number,
    log_ticks,
    nice_ticks,
    no_data,
    open_svg,
    short,
    y_range,
)

MARGIN = {"left": 54, "right": 14, "top": 12, "bottom": 40}
LEGEND_ROW = 18


@dataclass(frozen=True)
class Series:
    """One line over epochs: ``values`` is (E,) with NaN where undefined."""

    label: str
    values: np.ndarray
    color: str
    width: float = 2.0
    dashed: bool = False
    group: str = ""  # ``data-group`` of its <g>: the page script shows or hides it by this


@dataclass(frozen=True)
class Band:
    """A filled range over epochs (e.g. a channel's min..max), drawn under the lines."""

    label: str
    lower: np.ndarray
    upper: np.ndarray
    color: str


@dataclass(frozen=True)
class Frame:
    """The mapping from data to pixels of one chart's plot area."""

    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_y: bool

    def x(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self.x_range
        return self.left + (np.asarray(values, float) - lo) / (hi - lo) * self.width

    def y(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, float)
        lo, hi = self.y_range
        if self.log_y:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            lo, hi = math.log10(lo), math.log10(hi)
        return self.top + (1.0 - (v - lo) / (hi - lo)) * self.height


# -- public charts ---------------------------------------------------------------------------
def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    x_label: str = "epoch",
    bands: Sequence[Band] = (),
    size: tuple[int, int] = (560, 240),
    y_min: float | None = None,
    y_max: float | None = None,
    log_y: bool = False,
    y_format: Formatter | None = None,
    markers: bool = False,
    legend: bool = True,
) -> Markup:
    """A line chart over epochs (x = 0..E-1) with axes, ticks, optional legend and bands."""
    epochs = _epoch_count(series, bands)
    fmt = y_format or format_number
    entries = [(b.label, b.color, "band") for b in bands] + [
        (s.label, s.color, "dash" if s.dashed else "line") for s in series
    ]
    width, plot_h = size
    legend_h = _legend_height(entries, width) if legend and len(entries) > 1 else 0
    height = plot_h + legend_h
    label = f"{title}: {y_label} by {x_label}"
    parts = [open_svg(width, height, title, label)]
    values = [s.values for s in series] + [b.lower for b in bands] + [b.upper for b in bands]
    span = y_range(values, y_min, y_max, log_y)
    if span is None:
        parts.append(no_data(width, plot_h))
        return Markup("".join(parts) + "</svg>")
    frame = _frame(width, plot_h, epochs, span, log_y)
    parts[0] = open_svg(width, height, title, label, extra=_marker_attrs(frame))
    parts += [_y_axis(frame, fmt, y_label), _x_axis(frame, epochs, x_label)]
    parts += [_band(frame, b) for b in bands]
    parts += [_line(frame, s, markers, fmt) for s in series]
    parts.append(_epoch_marker(frame))
    if legend_h:
        parts.append(_legend(tuple(entries), width, plot_h))
    return Markup("".join(parts) + "</svg>")


def _frame(
    width: float, height: float, epochs: int, y_range: tuple[float, float], log_y: bool
) -> Frame:
    left, top = MARGIN["left"], MARGIN["top"]
    return Frame(
        left,
        top,
        width - left - MARGIN["right"],
        height - top - MARGIN["bottom"],
        (0.0, float(max(epochs - 1, 1))),
        y_range,
        log_y,
    )


def _y_axis(frame: Frame, fmt: Formatter, label: str) -> str:
    lo, hi = frame.y_range
    ticks = log_ticks(lo, hi) if frame.log_y else nice_ticks(lo, hi)
    ticks = ticks[(ticks >= lo - 1e-12) & (ticks <= hi + 1e-12)]
    ys = frame.y(ticks).tolist()
    x0 = frame.left
    grid = "".join(f"M{x0:.0f} {y:.1f}h{frame.width:.0f}" for y in ys)
    out = [
        f'<g class="axis y" text-anchor="end"><path d="{grid}" stroke="currentColor"'
        ' stroke-opacity="0.14"/>'
    ]
    out += [
        f'<text x="{x0 - 6:.0f}" y="{y + 3.5:.1f}">{escape(fmt(float(t)))}</text>'
        for t, y in zip(ticks, ys, strict=True)
    ]
    cy = frame.top + frame.height / 2
    out.append(
        f'<text class="axis-label" x="12" y="{cy:.1f}" text-anchor="middle"'
        f' transform="rotate(-90 12 {cy:.1f})">{escape(label)}</text></g>'
    )
    return "".join(out)


def _x_axis(frame: Frame, epochs: int, label: str) -> str:
    """The epoch axis; the same for every chart of a size and a run (a channel page has
    nine), so it is made once."""
    x_only = replace(frame, y_range=(0.0, 1.0), log_y=False)
    return _x_axis_of(x_only, epochs, label)


@lru_cache(maxsize=64, typed=True)
def _x_axis_of(frame: Frame, epochs: int, label: str) -> str:
    last = max(epochs - 1, 0)
    ticks = (
        np.arange(epochs)
        if epochs <= 12
        else np.unique(np.clip(np.rint(nice_ticks(0, last, 6)), 0, last)).astype(int)
    )
    xs = frame.x(ticks).tolist()
    base = frame.top + frame.height
    out = [
        '<g class="axis x" text-anchor="middle">',
        f'<path d="M{frame.left:.0f} {base:.1f}h{frame.width:.0f}" stroke="currentColor"'
        ' stroke-opacity="0.4"/>',
    ]
    out += [
        f'<text x="{x:.1f}" y="{base + 15:.0f}">{int(t)}</text>'
        for t, x in zip(ticks.tolist(), xs, strict=True)
    ]
    out.append(
        f'<text class="axis-label" x="{frame.left + frame.width / 2:.0f}"'
        f' y="{base + 32:.0f}">{escape(label)}</text></g>'
    )
    return "".join(out)


def _marker_attrs(frame: Frame) -> str:
    """Where epoch 0 is and the width of one epoch, for the page script's epoch marker."""
    x0, x1 = frame.x(np.array([0.0, 1.0])).tolist()
    return f' data-x0="{x0:.2f}" data-dx="{x1 - x0:.3f}"'


def _epoch_marker(frame: Frame) -> str:
    """A vertical line at the scrubber's epoch; hidden until netlapse.js moves it."""
    x = frame.left + frame.width
    return (
        f'<line class="epoch-marker" data-epoch-marker="" x1="{x:.1f}" x2="{x:.1f}"'
        f' y1="{frame.top:.0f}" y2="{frame.top + frame.height:.0f}" stroke="currentColor"'
        ' stroke-dasharray="3 3" visibility="hidden"/>'
    )


# -- marks -----------------------------------------------------------------------------------
def finite_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive True values (the drawable pieces)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    """``"x,y x,y ..."`` at 0.1 px, in one formatting call (a site has thousands of
    charts; a format per point was a fifth of their time)."""
    flat = np.empty(2 * xs.size)
    flat[0::2], flat[1::2] = xs, ys
    return _points_format(xs.size) % tuple(flat.tolist())


@lru_cache(maxsize=64)
def _points_format(count: int) -> str:
    """The ``%`` format of ``count`` points; charts of one run share their point counts."""
    return " ".join(["%.1f,%.1f"] * count)


def _line(frame: Frame, series: Series, markers: bool, fmt: Formatter) -> str:
    values = np.asarray(series.values, float)
    epochs = np.arange(values.size)
    xs, ys = frame.x(epochs), frame.y(values)
    mask = np.isfinite(ys)
    dash = ' stroke-dasharray="5 3"' if series.dashed else ""
    group = f' data-group="{escape(series.group)}"' if series.group else ""
    out = [
        f'<g class="series" stroke="{series.color}" fill="{series.color}"{group}>'
        f"<title>{escape(series.label)}</title>"
    ]
    for start, stop in finite_runs(mask):
        if stop - start == 1 and not markers:
            out.append(f'<circle cx="{xs[start]:.1f}" cy="{ys[start]:.1f}" r="2.5"/>')
        elif stop - start > 1:
            points = _points(xs[start:stop], ys[start:stop])
            out.append(
                f'<polyline fill="none" stroke-width="{series.width}"{dash}'
                f' stroke-linejoin="round" points="{points}"/>'
            )
    if markers:
        out += [
            f'<circle cx="{xs[i]:.1f}" cy="{ys[i]:.1f}" r="3"><title>{escape(series.label)},'
            f" epoch {i}: {escape(fmt(float(values[i])))}</title></circle>"
            for i in np.flatnonzero(mask).tolist()
        ]
    return "".join(out) + "</g>"


def _band(frame: Frame, band: Band) -> str:
    lower, upper = np.asarray(band.lower, float), np.asarray(band.upper, float)
    epochs = np.arange(lower.size)
    xs, lo, hi = frame.x(epochs), frame.y(lower), frame.y(upper)
    out = [
        f'<g class="band" fill="{band.color}" fill-opacity="0.18"><title>'
        f"{escape(band.label)}</title>"
    ]
    for start, stop in finite_runs(np.isfinite(lo) & np.isfinite(hi)):
        if stop - start < 2:
            continue
        px = np.concatenate([xs[start:stop], xs[start:stop][::-1]])
        py = np.concatenate([hi[start:stop], lo[start:stop][::-1]])
        out.append(f'<polygon points="{_points(px, py)}"/>')
    return "".join(out) + "</g>"


def _legend_layout(entries: Sequence[tuple[str, str, str]], width: float) -> tuple[int, float]:
    longest = max(len(short(label, 24)) for label, _, _ in entries)
    column = longest * CHAR_W + 34
    per_row = max(1, int((width - MARGIN["left"]) // column))
    return per_row, column


def _legend_height(entries: Sequence[tuple[str, str, str]], width: float) -> int:
    per_row, _ = _legend_layout(entries, width)
    return math.ceil(len(entries) / per_row) * LEGEND_ROW + 6


@lru_cache(maxsize=256, typed=True)
def _legend(entries: tuple[tuple[str, str, str], ...], width: float, top: float) -> str:
    """The legend's markup, made once per set of entries and size (charts repeat them)."""
    per_row, column = _legend_layout(entries, width)
    out = ['<g class="legend">']
    for i, (label, color, style) in enumerate(entries):
        x = round(MARGIN["left"] + (i % per_row) * column, 1)
        y = round(top + (i // per_row) * LEGEND_ROW + 10, 1)
        if style == "band":
            mark = (
                f'<rect x="{x}" y="{y - 5:.1f}" width="20" height="10" fill="{color}"'
                ' fill-opacity="0.3"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if style == "dash" else ""
            mark = (
                f'<line x1="{x}" x2="{x + 20:.1f}" y1="{y}" y2="{y}" stroke="{color}"'
                f' stroke-width="2.5"{dash}/>'
            )
        brief = short(label, 24)
        full = f"<title>{escape(label)}</title>" if brief != label else ""
        out.append(f'{mark}<text x="{x + 26:.1f}" y="{y + 4:.1f}">{escape(brief)}{full}</text>')
    return "".join(out) + "</g>"


def _epoch_count(series: Sequence[Series], bands: Sequence[Band]) -> int:
    sizes = [np.asarray(s.values).size for s in series] + [np.asarray(b.lower).size for b in bands]
    return max(sizes, default=1)


def sparkline(values: np.ndarray, *, label: str, size: tuple[int, int] = (96, 22)) -> Markup:
    """A tiny line of ``values`` over epochs, no axes (a table cell's trend); on a log
    scale when the values span decades. NaN epochs are gaps; ``label`` is its tooltip."""
    width, height = size
    v = np.asarray(values, float)
    log = wants_log_scale(v)
    shown = np.log10(np.where(v > 0, v, np.nan)) if log else v
    finite = np.isfinite(shown)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
    )
    if not finite.any():
        return Markup(head + "</svg>")
    lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
    span = hi - lo or 1.0
    xs = 2 + np.arange(v.size) * (width - 4) / max(v.size - 1, 1)
    ys = height - 2 - (np.nan_to_num(shown, nan=lo) - lo) / span * (height - 4)
    lines = "".join(
        f'<polyline points="{_points(xs[a:b], ys[a:b])}" fill="none" stroke="currentColor"/>'
        for a, b in finite_runs(finite)
    )
    last = int(np.flatnonzero(finite)[-1])
    dot = f'<circle cx="{xs[last]:.1f}" cy="{ys[last]:.1f}" r="1.8" fill="currentColor"/>'
    return Markup(head + lines + dot + "</svg>")
