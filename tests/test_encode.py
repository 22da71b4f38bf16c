"""Encoders: GIF palette frames exact and looping, MP4 H.264/yuv420p/faststart, atomic."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import imageio.v2 as iio
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from generator.encode import ffmpeg_exe, write_gif, write_mp4, write_png, write_poster
from generator.errors import EncodeError
from generator.render.colormaps import BACKGROUND_INDEX, palette


def _index_frames(t: int = 5, h: int = 20, w: int = 30) -> np.ndarray:
    """``(t, h, w)`` frames that differ from each other and use many indices."""
    base = (np.arange(h * w).reshape(h, w) * 7 % 256).astype(np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(t)])


@pytest.fixture
def keep_palette_frames() -> Iterator[None]:
    """Decode every GIF frame as ``P`` (Pillow turns later frames to RGB by default)."""
    before = GifImagePlugin.LOADING_STRATEGY
    strategy = GifImagePlugin.LoadingStrategy
    GifImagePlugin.LOADING_STRATEGY = strategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    yield
    GifImagePlugin.LOADING_STRATEGY = before


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.usefixtures("keep_palette_frames")
def test_gif_keeps_indices_and_palette_exactly(tmp_path: Path) -> None:
    frames, pal = _index_frames(), palette("diverging")
    out = write_gif(tmp_path / "a.gif", frames, pal, duration_ms=[100, 200, 300, 400, 500])
    with Image.open(out) as gif:
        assert gif.n_frames == len(frames) and gif.info["loop"] == 0
        got_pal = np.asarray(gif.getpalette(), dtype=np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(got_pal[:256], pal)
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            assert gif.mode == "P"
            np.testing.assert_array_equal(np.asarray(gif), frames[i])
            durations.append(gif.info["duration"])
    assert durations == [100, 200, 300, 400, 500]
    assert _leftovers(tmp_path) == []


def test_gif_from_rgb_uses_one_palette_without_flicker(tmp_path: Path) -> None:
    colours = np.array([[255, 0, 0], [0, 128, 255], [20, 20, 20], [250, 250, 250]], np.uint8)
    idx = _index_frames(4, 16, 24) % 4
    rgb = colours[idx]
    out = write_gif(tmp_path / "rgb.gif", rgb, duration_ms=50)
    decoded = np.stack([f.convert("RGB") for f in _frames(out)]).astype(int)
    assert decoded.shape == rgb.shape
    assert np.abs(decoded - rgb).max() <= 8  # few colours come back (nearly) exact


def _frames(path: Path) -> list[Image.Image]:
    with Image.open(path) as gif:
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(gif.copy())
        return out


def _ffmpeg_info(path: Path) -> str:
    """ffmpeg's stream description (``-i`` alone prints it to stderr, then fails)."""
    run = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    )
    return run.stderr


def test_mp4_is_h264_yuv420p_faststart_and_padded(tmp_path: Path) -> None:
    frames = np.zeros((7, 37, 53), dtype=np.uint8)  # odd sizes; index 0 = full red (seed)
    frames[:, :, 26:] = 250  # right half: full blue
    out = write_mp4(tmp_path / "a.mp4", frames, palette("seed"), fps=5)
    decoded = iio.mimread(out, format="FFMPEG", memtest=False)
    assert len(decoded) == 7
    assert decoded[0].shape == (48, 64, 3)  # padded to multiples of 16
    left, right = (
        decoded[3][10:30, 5:20].mean(axis=(0, 1)),
        decoded[3][10:30, 30:50].mean(axis=(0, 1)),
    )
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]
    margin = decoded[3][42:, 58:].astype(int)  # padding: the background colour
    assert np.abs(margin - palette("seed")[BACKGROUND_INDEX]).max() < 12
    info = _ffmpeg_info(out)
    assert re.search(r"Video: h264\b", info) and "yuv420p" in info and "48" in info
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
    assert _leftovers(tmp_path) == []


def test_mp4_from_rgb(tmp_path: Path) -> None:
    frames = np.full((3, 32, 32, 3), 128, dtype=np.uint8)
    out = write_mp4(tmp_path / "rgb.mp4", frames, fps=10)
    assert len(iio.mimread(out, format="FFMPEG")) == 3


def test_ffmpeg_failure_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16), dtype=np.uint8)
    with pytest.raises(EncodeError, match=r"bad\.mp4: ffmpeg failed") as err:
        write_mp4(tmp_path / "bad.mp4", frames, palette("seed"), preset="no-such-preset")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_raises_encode_error(tmp_path: Path) -> None:
    (tmp_path / "missing").write_text("a file where a folder should be")
    target = tmp_path / "missing" / "a.gif"
    with pytest.raises(EncodeError, match=r"missing/a\.gif: cannot write"):
        write_gif(target, _index_frames(2), palette("seed"))


def test_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.gif"
    target.write_bytes(b"old")
    write_gif(target, _index_frames(2), palette("seed"))
    assert target.read_bytes()[:6] == b"GIF89a"


def test_poster_is_the_chosen_frame(tmp_path: Path) -> None:
    frames, pal = _index_frames(3), palette("seed")
    last = write_poster(tmp_path / "last.png", frames, pal)
    first = write_poster(tmp_path / "first.png", frames, pal, which="first")
    with Image.open(last) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), frames[-1])
    with Image.open(first) as im:
        np.testing.assert_array_equal(np.asarray(im), frames[0])
    rgb = write_png(tmp_path / "rgb.png", pal[frames[0]])
    with Image.open(rgb) as im:
        np.testing.assert_array_equal(np.asarray(im), pal[frames[0]])


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_gif(tmp_path / "a.gif", np.zeros((2, 4, 4)), palette("seed"))
    with pytest.raises(ValueError, match="3 channels"):
        write_mp4(tmp_path / "a.mp4", np.zeros((2, 4, 4), dtype=np.uint8))


def test_durations_must_match_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 durations for 3 frames"):
        write_gif(tmp_path / "a.gif", _index_frames(3), palette("seed"), duration_ms=[1, 2])
