"""A run in a notebook: ``generator.animation`` renders a layer or one channel inline (a GIF
in a data: URI, a PNG still), from a path or an open run, and refuses what the run lacks in
one line."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import generator
from generator.errors import OptionError, StoreError
from tests.conftest import make_store


def gif_of(markup: str) -> Image.Image:
    """The GIF inside an ``<img src="data:image/gif;base64,...">``, decoded."""
    found = re.fullmatch(r'<img src="data:image/gif;base64,([A-Za-z0-9+/=]+)" [^<>]*>', markup)
    assert found, markup[:120]
    return Image.open(io.BytesIO(base64.b64decode(found.group(1))))


def test_a_layer_and_a_channel_show_inline_with_one_frame_per_epoch(tiny_store: Path) -> None:
    run = generator.open_run(tiny_store)
    grid = generator.animation(run, "block1")
    image = gif_of(grid._repr_html_())
    assert image.n_frames == run.epochs == 3
    assert 'alt="block1, probe 0"' in grid._repr_html_()
    # the channel from a path; the PNG still is its last epoch
    one = generator.animation(tiny_store, "block2", channel=5, probe=1)
    assert gif_of(one._repr_html_()).n_frames == 3
    still = np.asarray(Image.open(io.BytesIO(one._repr_png_())).convert("RGB"))
    np.testing.assert_array_equal(still, one.frames.rgb()[-1])
    assert one.frames.frames.shape[1:] != grid.frames.frames.shape[1:]
    assert generator.animation(run, "hidden").frames.frames.shape[0] == 3  # a linear layer


def test_what_the_run_lacks_is_one_line(tiny_store: Path, tmp_path: Path) -> None:
    run = generator.open_run(tiny_store)
    for kwargs, error, words in [
        ({"channel": 4}, OptionError, "channel of layer 'block1'=4 is not one of 0..3"),
        ({"probe": 2}, OptionError, "probe=2 is not one of 0..1"),
    ]:
        with pytest.raises(error, match=re.escape(words)) as caught:
            generator.animation(run, "block1", **kwargs)
        assert "\n" not in str(caught.value)
    with pytest.raises(StoreError, match="no layer 'conv9'"):
        generator.animation(run, "conv9")
    empty = make_store(tmp_path / "empty.zarr", epochs=0)
    with pytest.raises(StoreError, match="no epoch is committed"):
        generator.animation(empty.path, "block1")
