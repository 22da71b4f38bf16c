"""Probe frames: the probe image beside a bar chart of its class probabilities, per epoch.

Everything that does not change over epochs (image, class labels, bar tracks, the marker
of the true class) is drawn once into a template; each epoch only adds its bars, written
for all epochs at once through a numpy mask. Output is RGB (the image has its own colours).

With many classes only ``max_classes`` bars are shown: the true class plus the classes
that ever got the highest probability, in class order (fixed over epochs, so bars never
swap places).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import generator.render.captions as cap
from generator.render.colormaps import ACCENT_INDEX, BACKGROUND_INDEX, TEXT_INDEX, rgb_of
from generator.render.frames import Frames
from generator.render.layout import finish, resize_nearest, tile_size

TEXT, BACKGROUND, TRUE_BAR = (rgb_of(i) for i in (TEXT_INDEX, BACKGROUND_INDEX, ACCENT_INDEX))
BAR, TRACK = (90, 140, 220), (44, 44, 44)
PAD, MARKER, FONT, BAR_WIDTH, MAX_LABEL = 8, 10, 12, 200, 140


def shown_classes(probs: np.ndarray, true_class: int, max_classes: int) -> np.ndarray:
    """Class indices to draw: all if few, else the true class + the most probable ever."""
    k = probs.shape[1]
    if k <= max_classes:
        return np.arange(k)
    peak = np.nan_to_num(probs, nan=0.0).max(axis=0)
    if 0 <= true_class < k:  # -1: a probe from outside the classes has no true class
        peak[true_class] = np.inf
    return np.sort(np.argsort(-peak, kind="stable")[:max_classes])


def _probe_rgb(image: np.ndarray, side: int) -> np.ndarray:
    """``(3, H, W)`` uint8 -> ``(h, w, 3)`` resized (nearest) to about ``side`` px."""
    hwc = np.moveaxis(np.asarray(image, dtype=np.uint8), 0, -1)
    if hwc.ndim != 3:
        raise ValueError(f"a probe image is (3, H, W), got shape {np.shape(image)}")
    h, w = tile_size(hwc.shape[0], hwc.shape[1], 1, 1, min_tile=side, max_w=side, max_h=side)
    return resize_nearest(hwc, h, w, axes=(0, 1))


def _template(
    img: np.ndarray, labels: list[str], true_row: int, row_h: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """The static canvas ``(H, W, 3)`` and the top-left ``(y, x)`` of the bar area."""
    n = len(labels)
    label_w = min(MAX_LABEL, max(cap.text_width(t, FONT) for t in labels) + 6)
    ih, iw = img.shape[:2]
    x_label = PAD + iw + PAD + MARKER
    x_bar = x_label + label_w + PAD
    height = PAD + max(ih, n * row_h) + PAD
    y_bar = PAD + (height - 2 * PAD - n * row_h) // 2
    canvas = np.empty((height, x_bar + BAR_WIDTH + PAD, 3), dtype=np.uint8)
    canvas[...] = BACKGROUND
    canvas[PAD : PAD + ih, PAD : PAD + iw] = img
    for row, label in enumerate(labels):  # one small mask per class label
        y = y_bar + row * row_h
        colour = TRUE_BAR if row == true_row else TEXT
        mask = cap.text_mask(label, label_w, row_h, FONT, align="left", cut="middle")
        canvas[y : y + row_h, x_label : x_label + label_w] = cap.paint(mask, colour, BACKGROUND)
        canvas[y + 2 : y + row_h - 2, x_bar : x_bar + BAR_WIDTH] = TRACK
    if true_row >= 0:
        m = row_h // 3  # the true-class marker, a square
        yt = y_bar + true_row * row_h
        canvas[yt + m : yt + row_h - m, x_label - MARKER : x_label - MARKER + row_h - 2 * m] = (
            TRUE_BAR
        )
    return canvas, (y_bar, x_bar)


def probe_frames(
    image: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    true_class: int,
    *,
    captions: Sequence[str] | str | None = None,
    image_side: int = 160,
    max_classes: int = 12,
) -> Frames:
    """Probe ``image`` ``(3, H, W)`` uint8 and its ``probs`` ``(E, K)`` -> RGB ``Frames``
    ``(E, H', W', 3)``: image left, one bar per class right (length = probability, the true
    class green and marked). Default captions name the epoch and the predicted class.
    """
    probs = np.asarray(probs, dtype=np.float32)
    e, k = probs.shape
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} probabilities")
    shown = shown_classes(probs, true_class, max_classes)
    matches = np.flatnonzero(shown == true_class)
    true_row = int(matches[0]) if len(matches) else -1
    img = _probe_rgb(image, image_side)
    row_h = int(np.clip(img.shape[0] // len(shown), 16, 28))
    canvas, (y0, x0) = _template(img, [str(class_names[c]) for c in shown], true_row, row_h)
    frames = np.broadcast_to(canvas, (e, *canvas.shape)).copy()
    p = np.clip(np.nan_to_num(probs[:, shown], nan=0.0), 0, 1)
    lengths = np.rint(p * BAR_WIDTH).astype(np.int32)  # (E, n)
    filled = np.arange(BAR_WIDTH) < lengths[..., None]  # (E, n, BAR_WIDTH)
    n = len(shown)
    bars = frames[:, y0 : y0 + n * row_h, x0 : x0 + BAR_WIDTH].reshape(e, n, row_h, BAR_WIDTH, 3)
    colours = np.where((shown == true_class)[:, None], TRUE_BAR, BAR).astype(np.uint8)
    np.copyto(
        bars[:, :, 2 : row_h - 2],
        colours[None, :, None, None, :],
        where=filled[:, :, None, :, None],
    )
    if captions is None:
        best = np.nan_to_num(probs, nan=-1.0).argmax(axis=1)
        captions = [
            f"epoch {i} · predicted {class_names[b]} {probs[i, b]:.0%}" for i, b in enumerate(best)
        ]
    return Frames(finish(frames, captions, text=TEXT, background=BACKGROUND), None)
