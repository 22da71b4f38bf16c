"""Caption text: lines set from cached pieces look as Pillow draws them, and stay put."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from generator.render.captions import ELLIPSIS, font, strip_height, text_mask, text_width

LINES = [
    "block2 ch 5 · epoch 3 · probe 1 (green_discs)",
    "layer1.0.conv1 · epoch 10 · probe 7 (Golmud Railway)",
    "conv 12345 67",
    "Wj(y)g 1 · 2",
]


def _ink(mask: np.ndarray) -> np.ndarray:
    """The mask cropped to its ink's bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _pillow_line(text: str, size: int) -> np.ndarray:
    """``text`` drawn by Pillow in one call, one-bit, on a roomy canvas."""
    image = Image.new("L", (text_width(text, size) + 4 * size, 4 * size), 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    draw.text((size, size), text, fill=255, font=font(size))
    return np.asarray(image) > 0


@pytest.mark.parametrize("size", [10, 12, 14, 20])
@pytest.mark.parametrize("text", LINES)
def test_a_caption_has_the_glyphs_where_pillow_draws_the_whole_line(text: str, size: int) -> None:
    """The line is set from pieces split at its numbers; every glyph lands on the pixels
    Pillow gives it when it draws the whole line at once."""
    width = text_width(text, size) + 10
    ours = text_mask(text, width, strip_height(size), size, align="left")
    np.testing.assert_array_equal(_ink(ours), _ink(_pillow_line(text, size)))


@pytest.mark.parametrize("size", [9, 12, 20])
def test_captions_that_differ_in_their_numbers_keep_the_rest_in_place(size: int) -> None:
    """Frame after frame only the epoch changes: the text before it stays on the same
    pixels and the line's baseline never moves, whatever the digits."""
    height = strip_height(size)
    masks = [text_mask(f"block3 ch 12 · epoch {e}", 400, height, size, "left") for e in (1, 10)]
    prefix = text_width("block3 ch 12 · epoch", size)
    np.testing.assert_array_equal(masks[0][:, :prefix], masks[1][:, :prefix])
    assert masks[0][:, prefix:].any() and masks[1][:, prefix:].any()
    one_rows = []  # the rows of the closing "1" after short and after tall letters
    for text in ("aaa 1", "Wj(y) 1"):
        mask = text_mask(text, 400, height, size, "left")
        last = np.flatnonzero(mask.any(axis=0))[-1]
        one_rows.append(np.flatnonzero(mask[:, last - 1 : last + 1].any(axis=1)))
    np.testing.assert_array_equal(*one_rows)


def test_a_caption_too_long_for_its_strip_is_cut_with_an_ellipsis_inside_it() -> None:
    text = "a much longer caption for epoch 3 that cannot fit in a narrow strip"
    width, size = 120, 12
    mask = text_mask(text, width, strip_height(size), size)
    cols = np.flatnonzero(mask.any(axis=0))
    assert cols[0] >= 2 and cols[-1] <= width - 3  # inside the strip's 2 px margins
    ellipsis = _ink(text_mask(ELLIPSIS, 40, strip_height(size), size))
    tail, rows = _ink(mask)[:, -ellipsis.shape[1] :], ellipsis.shape[0]
    assert any(np.array_equal(tail[r : r + rows], ellipsis) for r in range(len(tail) - rows + 1))


@pytest.mark.parametrize("align", ["left", "center", "right"])
def test_blank_captions_draw_nothing(align: str) -> None:
    assert not text_mask("   ", 100, 20, 12, align).any()
    assert not text_mask("", 100, 20, 12, align).any()
