"""The shared pieces of the gallery's inline SVG charts: colours, text, ticks, numbers.

The gallery is static HTML that must work from ``file://`` with no request outside the
site, so there is no plotting library or script: each chart is one small ``<svg>`` string
inlined into its page (``linechart``, ``heatmap``). Every piece of text goes through
``markupsafe.escape`` (class names are user input). Accessibility: ``role="img"``, a
``<title>`` and an ``aria-label`` on every chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from markupsafe import escape

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

Formatter = Callable[[float], str]


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
    # floats: a range of 1e19 or more would make Python ints past int64, an object array
    return np.round(np.arange(float(start), float(stop) + step / 2, float(step)), 12)


def log_ticks(lo: float, hi: float) -> np.ndarray:
    """Ticks for a log axis: every power of ten in range, plus 2x and 5x when few."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1,) if last - first > 3 else (1, 2, 5)
    ticks = np.array([m * 10.0**p for p in range(first, last + 1) for m in mults])
    return ticks[(ticks >= lo * (1 - 1e-9)) & (ticks <= hi * (1 + 1e-9))]


def y_range(
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
        return log_range(lo, hi)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = (lo - pad if y_min is None else lo), (hi + pad if y_max is None else hi)
    ticks = nice_ticks(lo, hi)
    return (
        lo if y_min is not None else float(ticks[0]),
        hi if y_max is not None else float(ticks[-1]),
    )


def log_range(lo: float, hi: float) -> tuple[float, float]:
    """The 1-2-5 steps just around [lo, hi] (e.g. 0.016..0.16 -> 0.01..0.2)."""
    steps = [
        m * 10.0**p
        for p in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
        for m in (1, 2, 5)
    ]
    bottom = max(v for v in steps if v <= lo * (1 + 1e-9))
    top = min(v for v in steps if v >= hi * (1 - 1e-9))
    return bottom, top if top > bottom else bottom * 10


def open_svg(width: float, height: float, title: str, label: str, extra: str = "") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" role="img"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}"'
        f' aria-label="{escape(label)}" font-size="{FONT}" fill="currentColor"{extra}>'
        f"<title>{escape(title)}</title>"
    )


def no_data(width: float, height: float) -> str:
    return (
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle"'
        ' class="no-data">no data yet</text>'
    )


def short(text: str, limit: int) -> str:
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
