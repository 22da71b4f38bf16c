"""Encoders: GIF palette frames exact and looping; MP4 (H.264) and WebM (AV1) decode close
to their source, yuv420p, BT.709-tagged, faststart; failures are one line; atomic."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from generator import encode, threads
from generator.encode import (
    AV1,
    H264,
    VIDEO_CODECS,
    PaletteYuv,
    write_gif,
    write_mp4,
    write_png,
    write_poster,
    write_video,
    write_videos,
    write_webm,
    yuv420_planes,
)
from generator.errors import EncodeError
from generator.render.colormaps import palette
from generator.threads import single_threaded

# Lowest PSNR (dB) of decoded frames against the lossless frames, for frames of 8x8
# palette-colour blocks (measured 42.5 for MP4 and 34.5 for WebM with the shipped settings;
# yuv420p halves the colour resolution, so no setting gets near lossless on such frames).
MIN_PSNR = {"mp4": 38.0, "webm": 31.0}


def _index_frames(t: int = 5, h: int = 20, w: int = 30) -> np.ndarray:
    """``(t, h, w)`` frames that differ from each other and use many indices."""
    base = (np.arange(h * w).reshape(h, w) * 7 % 256).astype(np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(t)])


def _block_frames(t: int = 6, h: int = 10, w: int = 14) -> np.ndarray:
    """``(t, 8h, 8w)`` index frames of 8x8 blocks of ramp colours, moving each frame: the
    kind of content a grid of small activation maps shows."""
    blocks = np.random.default_rng(0).integers(0, 251, (h, w), dtype=np.uint8)
    base = blocks.repeat(8, axis=0).repeat(8, axis=1)
    return np.stack([np.roll(base, 8 * i, axis=1) for i in range(t)])


def _psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((decoded.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def _decode(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    """All frames of ``path`` as RGB (PyAV converts with the file's colour tags), and what
    the file says about its stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        info = {
            "container": container.format.name,
            "decoder": context.name,
            "pix_fmt": context.pix_fmt,
            "colour": (context.colorspace, context.color_range),
            "fps": stream.average_rate,
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, info


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def keep_palette_frames() -> Iterator[None]:
    """Decode every GIF frame as ``P`` (Pillow turns later frames to RGB by default)."""
    before = GifImagePlugin.LOADING_STRATEGY
    strategy = GifImagePlugin.LoadingStrategy
    GifImagePlugin.LOADING_STRATEGY = strategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    yield
    GifImagePlugin.LOADING_STRATEGY = before


def _gif_frames(path: Path) -> list[Image.Image]:
    with Image.open(path) as gif:
        out = []
        for i in range(gif.n_frames):
            gif.seek(i)
            out.append(gif.copy())
        return out


# -- GIF ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("keep_palette_frames")
def test_gif_frames_decode_to_exactly_the_palette_colours(tmp_path: Path) -> None:
    frames, pal = _index_frames(), palette("diverging")
    out = write_gif(tmp_path / "a.gif", frames, pal, duration_ms=[100, 200, 300, 400, 500])
    with Image.open(out) as gif:
        assert gif.n_frames == len(frames) and gif.info["loop"] == 0
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), pal[frames[i]])
    assert durations == [100, 200, 300, 400, 500]
    decoded, info = _decode(out)  # FFmpeg's own decoder agrees
    np.testing.assert_array_equal(decoded, pal[frames])
    assert info["decoder"] == "gif"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("runs", [2, 3])
def test_a_gif_encoded_in_parallel_runs_is_the_file_one_encoder_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int
) -> None:
    """Large GIFs are encoded in runs of frames on threads; each frame is stored as its
    change from the frame before, across run boundaries too, so the bytes are the same."""
    frames, pal = _block_frames(7), palette("seed")
    frames[3:5, :8] = 253  # a still band, so the changed rectangle is not the whole frame
    durations = [100, 200, 300, 400, 500, 600, 700]
    monkeypatch.setattr(encode.gif, "GIF_RUN_PIXELS", 0)
    with single_threaded():
        one = write_gif(tmp_path / "one.gif", frames, pal, duration_ms=durations).read_bytes()
    monkeypatch.setattr(threads, "HELPER_THREADS", runs)
    split = write_gif(tmp_path / "split.gif", frames, pal, duration_ms=durations)
    assert split.read_bytes() == one
    np.testing.assert_array_equal(_decode(split)[0], pal[frames])


def test_gif_from_rgb_uses_one_palette_without_flicker(tmp_path: Path) -> None:
    colours = np.array([[255, 0, 0], [0, 128, 255], [20, 20, 20], [250, 250, 250]], np.uint8)
    idx = _index_frames(4, 16, 24) % 4
    rgb = colours[idx]
    out = write_gif(tmp_path / "rgb.gif", rgb, duration_ms=50)
    decoded = np.stack([f.convert("RGB") for f in _gif_frames(out)]).astype(int)
    assert decoded.shape == rgb.shape
    assert np.abs(decoded - rgb).max() <= 8  # few colours come back (nearly) exact
    # one colour, one decoded colour, in every frame: the palette is shared, never per frame
    for colour in range(4):
        assert len(np.unique(decoded[idx == colour], axis=0)) == 1


def test_durations_must_match_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 durations for 3 frames"):
        write_gif(tmp_path / "a.gif", _index_frames(3), palette("seed"), duration_ms=[1, 2])


# -- video -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["webm", "mp4"])
def test_video_decodes_close_to_its_source(tmp_path: Path, fmt: str) -> None:
    frames, pal = _block_frames(), palette("seed")
    out = write_video(tmp_path / f"a.{fmt}", frames, pal, codec=VIDEO_CODECS[fmt], fps=5)
    decoded, info = _decode(out)
    assert decoded.shape == (*frames.shape, 3)
    assert _psnr(decoded, pal[frames]) >= MIN_PSNR[fmt]
    assert info["fps"] == Fraction(5)
    assert _leftovers(tmp_path) == []


def test_one_pass_to_several_formats_writes_what_each_format_alone_writes(
    tmp_path: Path,
) -> None:
    """A build writes an artefact's WebM and MP4 in one pass over its frames; each file is
    the one a single-format write makes, so a rebuild with other formats changes nothing."""
    frames, pal = _block_frames(4), palette("seed")
    together = {tmp_path / "both" / f"a.{fmt}": VIDEO_CODECS[fmt] for fmt in ("webm", "mp4")}
    write_videos(together, frames, pal, fps=5)
    for path, codec in together.items():
        alone = write_video(tmp_path / "alone" / path.name, frames, pal, codec=codec, fps=5)
        assert path.read_bytes() == alone.read_bytes()


@pytest.mark.parametrize("broken_first", [True, False])
def test_a_failure_in_one_pass_names_the_failing_file_and_leaves_no_file(
    tmp_path: Path, broken_first: bool
) -> None:
    """Either order: the failing encoder is named (not the last one opened), and the
    other one's file, with frames already written when it comes first, goes too."""
    broken = replace(H264, options={"preset": "no-such-preset"})
    targets = {tmp_path / "bad.mp4": broken, tmp_path / "good.webm": AV1}
    if not broken_first:
        targets = dict(reversed(targets.items()))
    with pytest.raises(EncodeError, match=r"bad\.mp4: libx264 encoding failed") as err:
        write_videos(targets, _block_frames(2), palette("seed"))
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "container", "decoders"),
    [("webm", "matroska,webm", {"libdav1d", "libaom-av1", "av1"}), ("mp4", "mov", {"h264"})],
)
def test_video_is_yuv420p_bt709_and_padded_to_even_sides(
    tmp_path: Path, fmt: str, container: str, decoders: set[str]
) -> None:
    frames = np.zeros((7, 37, 53), dtype=np.uint8)  # odd sizes; index 0 = full red (seed)
    frames[:, :, 26:] = 250  # right half: full blue
    out = write_video(tmp_path / f"a.{fmt}", frames, palette("seed"), codec=VIDEO_CODECS[fmt])
    decoded, info = _decode(out)
    assert info["decoder"] in decoders and str(info["container"]).startswith(container)
    assert info["pix_fmt"] == "yuv420p" and decoded.shape == (7, 38, 54, 3)
    assert info["colour"] == (1, 1)  # BT.709, limited range
    left, right = decoded[3, 10:30, 5:20].mean(axis=(0, 1)), decoded[3, 10:30, 32:50].mean((0, 1))
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]


def test_mp4_is_h264_with_the_index_before_the_data(tmp_path: Path) -> None:
    out = write_mp4(tmp_path / "a.mp4", _block_frames(3), palette("seed"))
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: plays while loading
    assert _decode(out)[1]["decoder"] == "h264"


@pytest.mark.parametrize("writer", [write_mp4, write_webm])
def test_video_from_rgb(tmp_path: Path, writer) -> None:
    frames = np.full((3, 32, 32, 3), (200, 40, 90), dtype=np.uint8)
    decoded, _ = _decode(writer(tmp_path / "rgb.video", frames, fps=10))
    assert len(decoded) == 3 and np.abs(decoded.astype(int) - (200, 40, 90)).max() <= 6


def test_large_frames_get_two_x264_threads_and_small_ones_one(tmp_path: Path) -> None:
    """The thread count, which decides x264's bytes, follows the frame size alone (x264
    writes its settings into the file)."""
    large = write_mp4(tmp_path / "large.mp4", _block_frames(2, h=64, w=128), palette("seed"))
    small = write_mp4(tmp_path / "small.mp4", _block_frames(2, h=64, w=127), palette("seed"))
    assert b" threads=2 " in large.read_bytes() and b" threads=1 " in small.read_bytes()


def test_the_thread_count_joins_the_encoders_own_settings_without_replacing_them(
    tmp_path: Path,
) -> None:
    """SVT-AV1 takes its thread count in the same ``key=value`` list as its other settings:
    the count is appended, so the settings chosen for speed (no temporal filtering, no
    B-frames) reach the encoder with it; x264 writes what it used into the file."""
    assert AV1.options_for(2)["svtav1-params"].split(":") == ["enable-tf=0", "lp=2"]
    mp4 = write_mp4(tmp_path / "small.mp4", _block_frames(2, h=64, w=127), palette("seed"))
    written = mp4.read_bytes()
    assert all(f" {setting} ".encode() in written for setting in ("bframes=0", "threads=1"))


def test_the_av1_bytes_do_not_depend_on_the_encoder_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why only x264's thread count has to be fixed: SVT-AV1 writes the same file with any."""
    frames, pal = _block_frames(4, h=64, w=128), palette("seed")  # 512 x 1024
    monkeypatch.setattr(encode.video, "LARGE_FRAME_THREADS", 1)
    one = write_webm(tmp_path / "one.webm", frames, pal).read_bytes()
    monkeypatch.setattr(encode.video, "LARGE_FRAME_THREADS", 3)
    assert write_webm(tmp_path / "three.webm", frames, pal).read_bytes() == one


@pytest.mark.parametrize("fmt", sorted(encode.VIDEO_CODECS))
def test_a_video_converted_a_frame_ahead_is_the_file_converted_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Large frames are converted to yuv on a helper thread while the encoder works, small
    ones on the encoding thread: the frames reach the encoder in the same order either
    way, so a build writes the same file whichever path its frame size takes."""
    frames, pal = _block_frames(6, h=20, w=24), palette("seed")
    codec = encode.VIDEO_CODECS[fmt]
    monkeypatch.setattr(encode.video, "AHEAD_PIXELS", 1 << 40)
    in_turn = write_video(tmp_path / f"turn.{fmt}", frames, pal, codec=codec).read_bytes()
    monkeypatch.setattr(encode.video, "AHEAD_PIXELS", 0)
    ahead = write_video(tmp_path / f"ahead.{fmt}", frames, pal, codec=codec)
    assert ahead.read_bytes() == in_turn


def test_index_frames_give_the_planes_of_their_rgb_colours_within_one_level() -> None:
    """Index frames take the palette's lookups (chroma means in 1/64 steps); RGB frames the
    colour matrix per pixel: the planes agree, luma exactly."""
    rng = np.random.default_rng(1)
    for name in ("seed", "diverging"):
        pal = palette(name)
        frame = rng.integers(0, 256, (64, 48), dtype=np.uint8)
        by_index = yuv420_planes(frame, PaletteYuv.of(pal))
        by_rgb = yuv420_planes(pal[frame], None)
        np.testing.assert_array_equal(by_index[:64], by_rgb[:64])
        assert np.abs(by_index.astype(int) - by_rgb).max() <= 1


@pytest.mark.parametrize("shape", [(20, 34), (6, 130), (4, 64)])
def test_the_encoders_frame_holds_exactly_the_planes(shape: tuple[int, int]) -> None:
    """The planes are computed straight into the frame the encoders get, whose rows FFmpeg
    pads (34 and 130 px rows are stored 48 and 144 bytes apart): the frame decodes to the
    same Y, Cb and Cr as the array form, for index and RGB frames."""
    rng = np.random.default_rng(3)
    pal = palette("diverging")
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    for pixels, lookup in ((frame, PaletteYuv.of(pal)), (pal[frame], None)):
        image = encode.yuv420_frame(pixels, lookup)
        np.testing.assert_array_equal(image.to_ndarray(), yuv420_planes(pixels, lookup))


def test_a_frame_that_is_a_strided_view_gives_the_planes_of_its_copy() -> None:
    """Index frames are read two pixels at a time: a transposed or cut-out frame (not
    contiguous in memory) converts as its contiguous copy does."""
    rng = np.random.default_rng(2)
    lookup = PaletteYuv.of(palette("diverging"))
    wide = rng.integers(0, 256, (48, 70), dtype=np.uint8)
    for view in (wide[:, 2:66].T, wide[:, 1:65]):
        np.testing.assert_array_equal(
            yuv420_planes(view, lookup), yuv420_planes(view.copy(), lookup)
        )


@pytest.mark.parametrize("writer", [write_gif, write_mp4, write_webm])
def test_the_same_frames_make_the_same_bytes(tmp_path: Path, writer) -> None:
    """A rebuild, or a cluster's worker, writes the file a local build wrote (the WebM
    muxer's track UID was random)."""
    first = writer(tmp_path / "a", _block_frames(3), palette("seed")).read_bytes()
    assert writer(tmp_path / "b", _block_frames(3), palette("seed")).read_bytes() == first


# -- failures ----------------------------------------------------------------------------
def test_a_failing_encoder_is_one_line_naming_the_file_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    broken = replace(H264, options={"preset": "no-such-preset"})
    with pytest.raises(EncodeError, match=r"bad\.mp4: libx264 encoding failed") as err:
        write_video(tmp_path / "bad.mp4", _block_frames(2), palette("seed"), codec=broken)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_encoder_says_what_to_install(tmp_path: Path) -> None:
    missing = replace(AV1, encoder="no-such-encoder")
    with pytest.raises(EncodeError, match=r"a\.webm: .*no no-such-encoder encoder; pip") as err:
        write_video(tmp_path / "a.webm", _block_frames(2), palette("seed"), codec=missing)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", [write_gif, write_mp4, write_webm])
def test_unwritable_folder_raises_encode_error(tmp_path: Path, writer) -> None:
    (tmp_path / "missing").write_text("a file where a folder should be")
    target = tmp_path / "missing" / "a.out"
    with pytest.raises(EncodeError, match=r"missing/a\.out: cannot write") as err:
        writer(target, _index_frames(2), palette("seed"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("writer", [write_gif, write_mp4, write_webm])
def test_existing_file_is_replaced_whole_and_no_temp_file_stays(tmp_path: Path, writer) -> None:
    target = tmp_path / "a.out"
    target.write_bytes(b"old")
    writer(target, _block_frames(2), palette("seed"))
    assert target.stat().st_size > 100 and len(_decode(target)[0]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.out"]


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_gif(tmp_path / "a.gif", np.zeros((2, 4, 4)), palette("seed"))
    with pytest.raises(ValueError, match="3 channels"):
        write_mp4(tmp_path / "a.mp4", np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        write_webm(tmp_path / "a.webm", np.zeros((0, 4, 4), dtype=np.uint8), palette("seed"))
    assert list(tmp_path.iterdir()) == []


# -- stills ------------------------------------------------------------------------------
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


# Run in a fresh interpreter: SVT-AV1 decides once per process whether to use real-time
# threads. It samples every thread's policy while a WebM is written, then the caller's.
_SCHEDULING_PROBE = """
import os, threading, numpy as np
from generator.encode import write_webm

def policies():
    task = f"/proc/{os.getpid()}/task"
    return {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(task)}

before, seen, done = os.sched_getscheduler(0), set(), threading.Event()

def watch():
    while not done.is_set():
        try:
            seen.update(p for p in policies().values() if p != os.SCHED_OTHER)
        except OSError:  # a thread ended between listing and asking
            pass

watcher = threading.Thread(target=watch)
watcher.start()
frames = (np.random.default_rng(0).random((30, 128, 128, 3)) * 255).astype(np.uint8)
for number in range(2):
    write_webm(f"{number}.webm", frames)
large = (np.random.default_rng(1).random((4, 512, 1024, 3)) * 255).astype(np.uint8)
write_webm("large.webm", large)  # two encoder threads (lp=2)
done.set()
watcher.join()
print(before, os.sched_getscheduler(0), sorted(seen))
"""


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="SVT-AV1 asks for real-time threads only when run as root",
)
def test_encoding_as_root_leaves_every_thread_at_normal_priority(tmp_path: Path) -> None:
    """A WebM written as root must not turn the caller (a build worker, the user's
    training) or the encoder's own threads into real-time SCHED_FIFO threads."""
    result = subprocess.run(
        [sys.executable, "-c", _SCHEDULING_PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 0, result.stderr
    before, after, seen = result.stdout.split(maxsplit=2)
    assert (before, after, seen.strip()) == (str(os.SCHED_OTHER), str(os.SCHED_OTHER), "[]")


def test_palette_png_bytes_keep_the_indices_and_the_palette() -> None:
    indices = (np.arange(48 * 16).reshape(48, 16) % 251).astype(np.uint8)
    colours = palette("diverging")
    data = encode.palette_png_bytes(indices, colours)
    still = Image.open(io.BytesIO(data))
    assert still.mode == "P" and np.array_equal(np.asarray(still), indices)
    assert np.array_equal(np.asarray(still.getpalette(), np.uint8).reshape(-1, 3), colours)
