"""Inline SVG charts for the gallery, drawn with numpy and string formatting only.

Every chart answers "how does this change over epochs", so the x axis is always the epoch.
The gallery is static HTML that must work from ``file://`` with no request outside the
site, so there is no plotting library or script: each chart is one small ``<svg>`` string
inlined into its page. Coordinates are computed as numpy arrays; NaN values (the training
metrics and weight change at epoch 0) break a line instead of being drawn as zero.
Every piece of text goes through ``markupsafe.escape`` (class names are user input), and
the result is returned as ``Markup`` so Jinja's autoescape inserts it unchanged.
Accessibility: ``role="img"``, a ``<title>`` and an ``aria-label`` on every chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from markupsafe import Markup, escape

# Colours chosen for a dark background: train/val and a categorical palette.
TRAIN, VAL = "#6cb6ff", "#f0b35a"
PALETTE = (
    "#6cb6ff",
    "#f0b35a",
    "#7ee787",
    "#ff7b72",
    "#d2a8ff",
    "#56d4dd",
    "#ffa657",
    "#f778ba",
    "#a5d6ff",
    "#e3b341",
)
DEPTH_STOPS = ("#56d4dd", "#8f8cff", "#ffa657")  # shallow -> deep layers
HEAT = "#6cb6ff"
HEAT_FLOOR = 0.06  # fill-opacity of an empty confusion cell; netlapse.js uses the same
FONT = 11
CHAR_W = 6.4  # rough width of one character at FONT px, for layout only
MARGIN = {"left": 54, "right": 14, "top": 12, "bottom": 40}
LEGEND_ROW = 18

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line over epochs: ``values`` is (E,) with NaN where undefined."""

    label: str
    values: np.ndarray
    color: str
    width: float = 2.0
    dashed: bool = False


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
    parts = [_open_svg(width, height, title, label)]
    values = [s.values for s in series] + [b.lower for b in bands] + [b.upper for b in bands]
    y_range = _y_range(values, y_min, y_max, log_y)
    if y_range is None:
        parts.append(_no_data(width, plot_h))
        return Markup("".join(parts) + "</svg>")
    frame = _frame(width, plot_h, epochs, y_range, log_y)
    parts[0] = _open_svg(width, height, title, label, extra=_marker_attrs(frame))
    parts += [_y_axis(frame, fmt, y_label), _x_axis(frame, epochs, x_label)]
    parts += [_band(frame, b) for b in bands]
    parts += [_line(frame, s, markers, fmt) for s in series]
    parts.append(_epoch_marker(frame))
    if legend_h:
        parts.append(_legend(entries, width, plot_h))
    return Markup("".join(parts) + "</svg>")


def confusion_heatmap(
    matrix: np.ndarray, class_names: Sequence[str], *, title: str, max_side: int = 420
) -> Markup:
    """A (K, K) confusion matrix, rows = true class, cells shaded by row share (recall).

    Cells carry ``data-cell`` in row-major order and their counts ``data-count`` so the
    page script can redraw another epoch from a data attribute without a second SVG.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    names = [_short(str(n), 14) for n in class_names]
    label_w = max(len(n) for n in names) * CHAR_W + 14 if names else 20
    cell = float(np.clip(max_side / max(k, 1), 14, 48))
    top = label_w * 0.72 + 24
    left = label_w + 22
    width, height = left + k * cell + label_w * 0.8 + 8, top + k * cell + 8
    parts = [
        _open_svg(
            width,
            height,
            title,
            f"{title}: rows are the true class, columns the predicted class",
            extra=f' data-heat-floor="{HEAT_FLOOR}"',
        )
    ]
    parts.append(_confusion_labels(class_names, names, left, top, cell))
    parts.append(_confusion_cells(counts, left, top, cell))
    return Markup("".join(parts) + "</svg>")


def row_shares(counts: np.ndarray) -> np.ndarray:
    """(..., K, K) counts -> each row divided by its total (0 for an empty row)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def depth_colors(n: int) -> list[str]:
    """``n`` colours from shallow (cyan) to deep (orange), so layer order reads as hue."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in DEPTH_STOPS], float)
    positions = np.linspace(0, len(stops) - 1, max(n, 1))
    low = np.clip(np.floor(positions).astype(int), 0, len(stops) - 2)
    frac = (positions - low)[:, None]
    rgb = np.rint(stops[low] * (1 - frac) + stops[low + 1] * frac).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb[:n]]


def percent(value: float) -> str:
    """0.25 -> '25%' (axis ticks of shares and accuracies)."""
    return f"{value * 100:.0f}%"


# -- axes and scales -------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
    """Round tick values covering [lo, hi] with about ``count`` steps of 1, 2 or 5 x 10^n."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.array([lo])
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    return np.round(np.arange(start, stop + step / 2, step), 12)


def log_ticks(lo: float, hi: float) -> np.ndarray:
    """Ticks for a log axis: every power of ten in range, plus 2x and 5x when few."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1,) if last - first > 3 else (1, 2, 5)
    ticks = np.array([m * 10.0**p for p in range(first, last + 1) for m in mults])
    return ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]


def _y_range(
    values: Sequence[np.ndarray], y_min: float | None, y_max: float | None, log_y: bool
) -> tuple[float, float] | None:
    finite = np.concatenate([np.asarray(v, float).ravel() for v in values] or [np.array([])])
    finite = finite[np.isfinite(finite)]
    if log_y:
        finite = finite[finite > 0]
    if finite.size == 0:
        return None
    lo = float(finite.min()) if y_min is None else y_min
    hi = float(finite.max()) if y_max is None else y_max
    if log_y:
        return _log_range(lo, hi)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = (lo - pad if y_min is None else lo), (hi + pad if y_max is None else hi)
    ticks = nice_ticks(lo, hi)
    return (
        lo if y_min is not None else float(ticks[0]),
        hi if y_max is not None else float(ticks[-1]),
    )


def _log_range(lo: float, hi: float) -> tuple[float, float]:
    """The 1-2-5 steps just around [lo, hi] (e.g. 0.016..0.16 -> 0.01..0.2)."""
    steps = [
        m * 10.0**p
        for p in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
        for m in (1, 2, 5)
    ]
    bottom = max(v for v in steps if v <= lo * (1 + 1e-9))
    top = min(v for v in steps if v >= hi * (1 - 1e-9))
    return bottom, top if top > bottom else bottom * 10


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
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))


def _line(frame: Frame, series: Series, markers: bool, fmt: Formatter) -> str:
    values = np.asarray(series.values, float)
    epochs = np.arange(values.size)
    xs, ys = frame.x(epochs), frame.y(values)
    mask = np.isfinite(ys)
    dash = ' stroke-dasharray="5 3"' if series.dashed else ""
    out = [
        f'<g class="series" stroke="{series.color}" fill="{series.color}">'
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
    longest = max(len(_short(label, 24)) for label, _, _ in entries)
    column = longest * CHAR_W + 34
    per_row = max(1, int((width - MARGIN["left"]) // column))
    return per_row, column


def _legend_height(entries: Sequence[tuple[str, str, str]], width: float) -> int:
    per_row, _ = _legend_layout(entries, width)
    return math.ceil(len(entries) / per_row) * LEGEND_ROW + 6


def _legend(entries: Sequence[tuple[str, str, str]], width: float, top: float) -> str:
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
        short = _short(label, 24)
        full = f"<title>{escape(label)}</title>" if short != label else ""
        out.append(f'{mark}<text x="{x + 26:.1f}" y="{y + 4:.1f}">{escape(short)}{full}</text>')
    return "".join(out) + "</g>"


def _confusion_labels(
    full: Sequence[str], names: Sequence[str], left: float, top: float, cell: float
) -> str:
    out = ['<g class="labels">']
    for i, (name, short) in enumerate(zip(full, names, strict=True)):
        cy = top + (i + 0.5) * cell + 4
        cx = left + (i + 0.5) * cell
        out.append(
            f'<text x="{left - 6:.1f}" y="{cy:.1f}" text-anchor="end">{escape(short)}'
            f"<title>{escape(str(name))}</title></text>"
        )
        out.append(
            f'<text x="{cx:.1f}" y="{top - 6:.1f}" transform="rotate(-40 {cx:.1f}'
            f' {top - 6:.1f})">{escape(short)}<title>{escape(str(name))}</title></text>'
        )
    k = len(names)
    out.append(
        f'<text class="axis-label" x="10" y="{top + k * cell / 2:.1f}"'
        f' text-anchor="middle" transform="rotate(-90 10 {top + k * cell / 2:.1f})">'
        "true class</text>"
    )
    out.append(f'<text class="axis-label" x="{left:.1f}" y="12">predicted class →</text>')
    return "".join(out) + "</g>"


def _confusion_cells(counts: np.ndarray, left: float, top: float, cell: float) -> str:
    k = counts.shape[0]
    opacity = HEAT_FLOOR + (1 - HEAT_FLOOR) * row_shares(counts)
    rows, cols = np.divmod(np.arange(k * k), k)
    xs, ys = left + cols * cell, top + rows * cell
    show = cell >= 22
    out = ['<g class="cells">']
    for idx, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        n = int(counts[r, c])
        out.append(
            f'<rect data-cell="{idx}" x="{xs[idx]:.1f}" y="{ys[idx]:.1f}"'
            f' width="{cell - 1.5:.1f}" height="{cell - 1.5:.1f}" fill="{HEAT}"'
            f' fill-opacity="{opacity[r, c]:.3f}"/>'
        )
        if show:
            out.append(
                f'<text data-count="{idx}" class="count" x="{xs[idx] + cell / 2 - 0.75:.1f}"'
                f' y="{ys[idx] + cell / 2 + 3.5:.1f}" text-anchor="middle">{n}</text>'
            )
    return "".join(out) + "</g>"


# -- helpers ---------------------------------------------------------------------------------
def _open_svg(width: float, height: float, title: str, label: str, extra: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" role="img"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}"'
        f' aria-label="{escape(label)}" font-size="{FONT}" fill="currentColor"{extra}>'
        f"<title>{escape(title)}</title>"
    )


def _no_data(width: float, height: float) -> str:
    return (
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle"'
        ' class="no-data">no data yet</text>'
    )


def _epoch_count(series: Sequence[Series], bands: Sequence[Band]) -> int:
    sizes = [np.asarray(s.values).size for s in series] + [np.asarray(b.lower).size for b in bands]
    return max(sizes, default=1)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_number(value: float) -> str:
    """A short human number: 3 significant digits, scientific when tiny or huge."""
    if not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"
