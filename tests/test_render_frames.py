"""Grids and frames: geometry, separators, upscaling, size limits, padding, captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator import threads as threads_module
from generator.render.colormaps import (
    BACKGROUND_INDEX,
    RAMP_SIZE,
    SEPARATOR_INDEX,
    TEXT_INDEX,
    ZERO_INDEX,
    palette,
)
from generator.render.frames import (
    Frames,
    channel_frames,
    grid_frames,
    layer_frames,
    layer_frames_by_epoch,
)
from generator.render.layout import (
    caption_font_size,
    caption_room,
    finish,
    grid_shape,
    pad_frames,
    resize_nearest,
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 1)), (4, (2, 2)), (5, (2, 3)), (10, (3, 4)), (64, (8, 8)), (65, (8, 9))],
)
def test_grid_is_near_square(n: int, expected: tuple[int, int]) -> None:
    assert grid_shape(n) == expected


def test_grid_geometry_separators_and_empty_cells() -> None:
    # 5 channels of 4x4, each a constant index: 2 rows x 3 cols, tiles upscaled x4 to 16 px.
    idx = np.broadcast_to(np.arange(10, 15, dtype=np.uint8)[None, :, None, None], (2, 5, 4, 4))
    frames = grid_frames(idx, min_tile=16)
    assert frames.shape == (2, 34, 50)  # 2*16+1 -> 34 (even), 3*16+2 = 50
    f = frames[0]
    assert (f[16, :] == SEPARATOR_INDEX).all()  # row separator between the rows
    assert (f[:33, 16] == SEPARATOR_INDEX).all() and (f[:33, 33] == SEPARATOR_INDEX).all()
    assert (f[:16, :16] == 10).all() and (f[:16, 17:33] == 11).all()
    assert (f[17:33, 17:33] == 14).all()
    assert (f[17:33, 34:] == BACKGROUND_INDEX).all()  # the empty sixth cell
    assert (f[33] == BACKGROUND_INDEX).all()  # the even-height padding row


def test_tile_content_is_an_exact_nearest_upscale() -> None:
    rng = np.random.default_rng(1)
    idx = rng.integers(0, RAMP_SIZE, (1, 1, 3, 5), dtype=np.uint8)
    frames = grid_frames(idx, min_tile=15)
    np.testing.assert_array_equal(frames[0, :9, :15], np.kron(idx[0, 0], np.ones((3, 3))))


def test_tiny_maps_are_upscaled_to_the_minimum_tile() -> None:
    frames = grid_frames(np.zeros((1, 9, 1, 1), dtype=np.uint8), min_tile=48)
    assert frames.shape[1:] == (3 * 48 + 2, 3 * 48 + 2)


@pytest.mark.parametrize("captions", [None, "block4 · epoch 1"])
def test_max_side_is_respected(captions: str | None) -> None:
    idx = np.zeros((2, 200, 64, 64), dtype=np.uint8)
    frames = grid_frames(idx, max_side=512, captions=captions)
    assert max(frames.shape[1:]) <= 512
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0


def test_resize_nearest_downscales_by_sampling() -> None:
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(resize_nearest(a, 2, 2), [[0, 2], [8, 10]])


def test_pad_frames_pads_without_rescaling() -> None:
    frames = np.full((3, 37, 53, 3), 7, dtype=np.uint8)
    padded = pad_frames(frames, 16, (1, 2, 3))
    assert padded.shape == (3, 48, 64, 3)
    assert (padded[:, :37, :53] == 7).all()
    assert (padded[:, 37:] == (1, 2, 3)).all() and (padded[:, :, 53:] == (1, 2, 3)).all()
    assert pad_frames(padded, 16) is padded


def test_caption_is_drawn_in_the_strip_only() -> None:
    idx = np.full((2, 4, 8, 8), ZERO_INDEX, dtype=np.uint8)
    texts = ["block2 · epoch 0 · probe 1 (floodzone)", "block2 · epoch 1 · probe 1 (floodzone)"]
    frames = grid_frames(idx, captions=texts)
    plain = grid_frames(idx)
    body_h = plain.shape[1]
    assert frames.shape[2] >= 256  # widened so the text stays legible
    strip = frames[:, body_h:]
    assert (strip == TEXT_INDEX).sum(axis=(1, 2)).min() > 50
    assert set(np.unique(strip)) <= {TEXT_INDEX, BACKGROUND_INDEX}
    assert not (frames[:, :body_h] == TEXT_INDEX).any()
    assert not np.array_equal(strip[0], strip[1])  # each frame has its own epoch


def test_caption_on_top() -> None:
    idx = np.full((1, 4, 8, 8), ZERO_INDEX, dtype=np.uint8)
    frames = grid_frames(idx, captions="epoch 3", position="top")
    assert (frames[0, :10] == TEXT_INDEX).any()
    assert not (frames[0, -10:] == TEXT_INDEX).any()


def test_layer_frames_colours_and_scales() -> None:
    values = np.zeros((2, 2, 4, 4), dtype=np.float16)
    values[:, 0] = 1.0
    values[:, 1] = -1.0
    f = layer_frames(values, neg=np.ones((2, 2)), pos=np.ones((2, 2)), min_tile=4)
    assert isinstance(f, Frames) and f.indexed and f.nonfinite == 0
    assert f.frames.shape == (2, 4, 10)  # 1x2 grid: 4 + 1 + 4 = 9 -> 10
    assert f.frames[0, 0, 0] == RAMP_SIZE - 1 and f.frames[0, 0, 5] == 0
    rgb = f.rgb()
    assert rgb.shape == (2, 4, 10, 3)
    assert tuple(rgb[0, 0, 0]) == tuple(palette("seed")[RAMP_SIZE - 1])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_layer_grid_rendered_epoch_by_epoch_on_threads_is_each_epochs_grid(
    monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """What the build animates: each epoch read on its own, its frame the epoch's own grid
    with a caption strip sized for the longest caption, whatever the threads."""
    monkeypatch.setattr(threads_module, "HELPER_THREADS", threads)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 6, 9, 9)).astype(np.float16)
    values[3, 2, 4, 4] = np.nan
    neg, pos = rng.uniform(1, 3, (5, 6)), rng.uniform(1, 3, (5, 6))
    captions = ["epoch 0", "epoch 1", "epoch 2", "a much longer caption for epoch 3", "e4"]
    read = []
    out = layer_frames_by_epoch(
        lambda e: read.append(e) or values[e], neg, pos, captions=captions, max_side=200
    )
    assert sorted(read) == list(range(5)) and out.nonfinite == 1
    room = 200 - caption_room("")
    size = caption_font_size(captions, out.frames.shape[2])
    for e in range(5):
        grid = layer_frames(values[e][None], neg[e : e + 1], pos[e : e + 1], max_side=room)
        framed = finish(grid.frames, captions[e], font_size=size)
        np.testing.assert_array_equal(out.frames[e], framed[0])


def test_linear_layer_renders_as_cells() -> None:
    values = np.array([[0.0, 1.0, -1.0, np.nan, 0.5]], dtype=np.float32)
    f = layer_frames(
        values, neg=np.ones((1, 5)), pos=np.ones((1, 5)), min_tile=8, colormap="diverging"
    )
    assert f.nonfinite == 1
    assert f.frames.shape == (1, 18, 26)  # 2x3 cells of 8 px, 1 px separators
    assert f.frames[0, 0, 9] == RAMP_SIZE - 1  # unit 1 positive -> full blue
    assert (f.palette[f.frames[0, :8, :8]] == 255).all()  # unit 0 is zero -> white


def test_channel_frames_are_upscaled_for_a_close_look() -> None:
    values = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    f = channel_frames(values, neg=np.ones(3), pos=np.ones(3), min_side=256)
    assert f.frames.shape[0] == 3 and min(f.frames.shape[1:]) >= 5 * 37
    assert max(f.frames.shape[1:]) <= 1024


def _channel_stats(a: np.ndarray) -> dict[str, np.ndarray]:
    """The store's per-channel statistics of ``(P, C, H, W)`` (or per unit of ``(P, N)``)."""
    axes = tuple(range(2, a.ndim))

    def reduce(f, x):
        return f(x, axis=axes) if axes else x

    return {
        "min": reduce(np.min, a),
        "max": reduce(np.max, a),
        "mean": reduce(np.mean, a),
        "abs_mean": reduce(np.mean, np.abs(a)),
        "abs_max": reduce(np.max, np.abs(a)),
    }


def test_store_arrays_render_end_to_end(tmp_path: Path) -> None:
    """What the reader returns (stats (E, P, C), activations (E, C, H, W) / (E, N)) renders."""
    from generator.render.colormaps import compute_scales
    from generator.store import EpochRecord, LayerSpec, RunReader, StoreWriter

    layers = [
        LayerSpec("block1", "conv", (3, 4, 4), (3, 3, 3, 3), 84),
        LayerSpec("fc", "linear", (5,), None, 0),
    ]
    writer = StoreWriter.create(
        tmp_path / "run.zarr",
        class_names=list("abcde"),
        layers=layers,
        input_size=8,
        training={},
        probe_images=np.zeros((2, 3, 8, 8), np.uint8),
        probe_labels=np.array([0, 1]),
        probe_sources=["x", "y"],
    )
    rng = np.random.default_rng(0)
    for epoch in range(3):
        acts = {
            "block1": rng.normal(size=(2, 3, 4, 4)) * (epoch + 1),
            "fc": rng.normal(size=(2, 5)),
        }
        stats = {name: _channel_stats(a) for name, a in acts.items()}
        writer.write_epoch(
            epoch,
            EpochRecord(
                activations=acts,
                channel_stats=stats,
                kernels={"block1": rng.normal(size=(3, 3, 3, 3))},
                weight_change={"block1": 0.0},
                probe_probs=np.full((2, 5), 0.2),
                confusion=np.zeros((5, 5)),
            ),
        )
    run = RunReader(tmp_path / "run.zarr")
    for name in ("block1", "fc"):
        s = compute_scales(
            run.channel_stats(name, "min"),
            run.channel_stats(name, "max"),
            "channel",
            share_channels=name == "fc",
        )
        f = layer_frames(
            run.layer_activations(name, probe=1),
            s.neg[:, 1],
            s.pos[:, 1],
            captions=[f"{name} · epoch {e}" for e in range(3)],
        )
        assert f.frames.shape[0] == 3 and f.nonfinite == 0
        assert (f.frames < ZERO_INDEX).any()  # negatives: red side
        assert ((f.frames > ZERO_INDEX) & (f.frames < RAMP_SIZE)).any()  # positives: blue


def test_a_linear_unit_renders_as_one_cell_per_epoch() -> None:
    f = channel_frames(np.array([-1.0, 0.0, 1.0]), neg=1.0, pos=1.0, min_side=64)
    assert f.frames.shape == (3, 64, 64)
    assert [int(f.frames[i, 0, 0]) for i in range(3)] == [0, ZERO_INDEX, RAMP_SIZE - 1]


def test_long_text_is_cut_to_fit_keeping_both_ends_when_asked() -> None:
    from generator.render.captions import fit_text, text_width

    name = "class_with_a_rather_long_name_14"
    end, middle = fit_text(name, 100, 12), fit_text(name, 100, 12, cut="middle")
    assert text_width(end, 12) <= 100 and text_width(middle, 12) <= 100
    assert end.endswith("…") and middle.endswith("_14") and middle.startswith("class")
    assert fit_text("short", 100, 12) == "short"
