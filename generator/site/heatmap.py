"""Heatmaps: any shaded grid as SVG (``grid_heatmap``); the confusion matrix as one for a
few classes, as a PNG for many.

Rows are the true class and each cell is shaded by its share of the row (recall). The
SVG draws one ``<rect>`` per cell, which the page script recolours per epoch; that is
K² elements, so above ``SVG_MAX_CLASSES`` the matrix becomes a raster image of one pixel
per cell (pooled beyond ``RASTER_MAX_SIDE``) that stays a few hundred kB at any K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from markupsafe import Markup, escape

from generator.encode import png_bytes
from generator.site.svg import CHAR_W, FONT, HEAT, HEAT_FLOOR, open_svg, short

SVG_MAX_CLASSES = 40
RASTER_MAX_SIDE = 1024


def confusion_heatmap(
    matrix: np.ndarray, class_names: Sequence[str], *, title: str, max_side: int = 420
) -> Markup:
    """A (K, K) confusion matrix, rows = true class, cells shaded by row share (recall).

    Cells carry ``data-cell`` in row-major order and their counts ``data-count`` so the
    page script can redraw another epoch from a data attribute without a second SVG.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    return grid_heatmap(
        row_shares(counts),
        [[str(int(n)) for n in row] for row in counts],
        class_names,
        class_names,
        title=title,
        label=f"{title}: rows are the true class, columns the predicted class",
        axes=("true class", "predicted class →"),
        max_side=max_side,
    )


def grid_heatmap(
    shades: np.ndarray,
    texts: Sequence[Sequence[str]],
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    title: str,
    label: str,
    axes: tuple[str, str],
    max_side: int = 420,
    tips: Sequence[Sequence[str]] | None = None,
) -> Markup:
    """An (R, C) grid of square cells shaded by ``shades`` in [0, 1] (NaN as empty), each
    with its ``texts`` when the cells are large enough to read and, with ``tips``, a
    tooltip. ``axes`` names the rows and the columns. Short column names (epochs) stand
    upright; longer ones are slanted so they do not collide."""
    shades = np.asarray(shades, dtype=float)
    n_rows, n_cols = shades.shape
    row_names = [short(str(n), 14) for n in rows]
    col_names = [short(str(n), 14) for n in columns]
    row_w = max(len(n) for n in row_names) * CHAR_W + 14 if row_names else 20
    col_w = max(len(n) for n in col_names) * CHAR_W + 14 if col_names else 20
    upright = max((len(n) for n in col_names), default=0) <= 3
    cell = float(np.clip(max_side / max(n_rows, n_cols, 1), 14, 48))
    top = (FONT + 30) if upright else col_w * 0.72 + 24
    left = row_w + 22
    width = left + n_cols * cell + (8 if upright else col_w * 0.8 + 8)
    height = top + n_rows * cell + 8
    parts = [open_svg(width, height, title, label, extra=f' data-heat-floor="{HEAT_FLOOR}"')]
    parts.append(_row_labels(rows, row_names, left, top, cell, axes[0]))
    parts.append(_column_labels(columns, col_names, left, top, cell, axes[1], upright=upright))
    parts.append(_cells(shades, texts, tips, left, top, cell))
    return Markup("".join(parts) + "</svg>")


def row_shares(counts: np.ndarray) -> np.ndarray:
    """(..., K, K) counts -> each row divided by its total (0 for an empty row)."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _row_labels(
    full: Sequence[str], names: Sequence[str], left: float, top: float, cell: float, axis: str
) -> str:
    out = ['<g class="labels">']
    for i, (name, brief) in enumerate(zip(full, names, strict=True)):
        out.append(
            f'<text x="{left - 6:.1f}" y="{top + (i + 0.5) * cell + 4:.1f}" text-anchor="end">'
            f"{escape(brief)}<title>{escape(str(name))}</title></text>"
        )
    middle = top + len(names) * cell / 2
    out.append(
        f'<text class="axis-label" x="10" y="{middle:.1f}" text-anchor="middle"'
        f' transform="rotate(-90 10 {middle:.1f})">{escape(axis)}</text>'
    )
    return "".join(out) + "</g>"


def _column_labels(
    full: Sequence[str],
    names: Sequence[str],
    left: float,
    top: float,
    cell: float,
    axis: str,
    *,
    upright: bool,
) -> str:
    out = ['<g class="labels">']
    for i, (name, brief) in enumerate(zip(full, names, strict=True)):
        cx, y = left + (i + 0.5) * cell, top - 6
        place = (
            f'x="{cx:.1f}" y="{y:.1f}" text-anchor="middle"'
            if upright
            else f'x="{cx:.1f}" y="{y:.1f}" transform="rotate(-40 {cx:.1f} {y:.1f})"'
        )
        out.append(f"<text {place}>{escape(brief)}<title>{escape(str(name))}</title></text>")
    out.append(f'<text class="axis-label" x="{left:.1f}" y="12">{escape(axis)}</text>')
    return "".join(out) + "</g>"


def _cells(
    shades: np.ndarray,
    texts: Sequence[Sequence[str]],
    tips: Sequence[Sequence[str]] | None,
    left: float,
    top: float,
    cell: float,
) -> str:
    n_rows, n_cols = shades.shape
    opacity = HEAT_FLOOR + (1 - HEAT_FLOOR) * np.nan_to_num(np.clip(shades, 0, 1), nan=0.0)
    show = cell >= 22
    out = ['<g class="cells">']
    for idx in range(n_rows * n_cols):
        r, c = divmod(idx, n_cols)
        x, y = left + c * cell, top + r * cell
        tip = f"<title>{escape(tips[r][c])}</title>" if tips is not None else ""
        out.append(
            f'<rect data-cell="{idx}" x="{x:.1f}" y="{y:.1f}"'
            f' width="{cell - 1.5:.1f}" height="{cell - 1.5:.1f}" fill="{HEAT}"'
            f' fill-opacity="{opacity[r, c]:.3f}"' + (f">{tip}</rect>" if tip else "/>")
        )
        if show:
            out.append(
                f'<text data-count="{idx}" class="count" x="{x + cell / 2 - 0.75:.1f}"'
                f' y="{y + cell / 2 + 3.5:.1f}" text-anchor="middle">{escape(texts[r][c])}</text>'
            )
    return "".join(out) + "</g>"


# -- helpers ---------------------------------------------------------------------------------


def pooled_shares(counts: np.ndarray, max_side: int = RASTER_MAX_SIDE) -> tuple[np.ndarray, int]:
    """(K, K) counts -> (S, S) row shares with S <= ``max_side``, and the pooling factor:
    above ``max_side`` classes, blocks of factor x factor cells are summed first."""
    counts = np.asarray(counts, dtype=np.int64)
    k = counts.shape[0]
    factor = max(1, math.ceil(k / max_side))
    side = math.ceil(k / factor)
    padded = np.zeros((side * factor, side * factor), dtype=np.int64)
    padded[:k, :k] = counts
    pooled = padded.reshape(side, factor, side, factor).sum(axis=(1, 3))
    return row_shares(pooled), factor


def heatmap_png(counts: np.ndarray) -> tuple[bytes, int, int]:
    """The matrix as an RGBA PNG, one pixel per (pooled) cell in the SVG's colour and
    opacity, so it looks the same on the page; returns (bytes, side in pixels, factor)."""
    shares, factor = pooled_shares(counts)
    image = np.empty((*shares.shape, 4), dtype=np.uint8)
    image[..., :3] = [int(HEAT[i : i + 2], 16) for i in (1, 3, 5)]
    image[..., 3] = np.rint((HEAT_FLOOR + (1 - HEAT_FLOOR) * shares) * 255)
    return png_bytes(image), shares.shape[0], factor
