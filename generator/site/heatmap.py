"""The confusion matrix as a picture: an SVG heatmap for a few classes, a PNG for many.

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
from generator.site.svg import CHAR_W, HEAT, HEAT_FLOOR, open_svg, short

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
    k = counts.shape[0]
    names = [short(str(n), 14) for n in class_names]
    label_w = max(len(n) for n in names) * CHAR_W + 14 if names else 20
    cell = float(np.clip(max_side / max(k, 1), 14, 48))
    top = label_w * 0.72 + 24
    left = label_w + 22
    width, height = left + k * cell + label_w * 0.8 + 8, top + k * cell + 8
    parts = [
        open_svg(
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


def _confusion_labels(
    full: Sequence[str], names: Sequence[str], left: float, top: float, cell: float
) -> str:
    out = ['<g class="labels">']
    for i, (name, brief) in enumerate(zip(full, names, strict=True)):
        cy = top + (i + 0.5) * cell + 4
        cx = left + (i + 0.5) * cell
        out.append(
            f'<text x="{left - 6:.1f}" y="{cy:.1f}" text-anchor="end">{escape(brief)}'
            f"<title>{escape(str(name))}</title></text>"
        )
        out.append(
            f'<text x="{cx:.1f}" y="{top - 6:.1f}" transform="rotate(-40 {cx:.1f}'
            f' {top - 6:.1f})">{escape(brief)}<title>{escape(str(name))}</title></text>'
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
