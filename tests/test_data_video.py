"""Video ingestion on a small clip made here: counts, crop, --every, re-runs and errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from generator.data import IngestReport, ingest_video, load_image_folder
from generator.data import video as video_module
from generator.errors import DataError

FRAMES, DARK = 20, range(5, 10)  # frames 5..9 are black
WIDTH, HEIGHT, BAND = 64, 48, 12  # red bands of 12 px at both sides, grey between
NAME = re.compile(r"^clip-[0-9a-f]{8}-f\d{6}\.png$")


def _frame(index: int) -> np.ndarray:
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    if index not in DARK:
        frame[:] = 150 + 4 * index
        frame[:, :BAND] = frame[:, -BAND:] = (255, 0, 0)
    return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with imageio.get_writer(path, fps=10, macro_block_size=16) as writer:
        for index in range(FRAMES):
            writer.append_data(_frame(index))
    return path


def _pngs(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_keeps_bright_frames_as_centre_crops(clip: Path, tmp_path: Path) -> None:
    report = ingest_video(clip, "town", tmp_path, size=32)
    assert report == IngestReport(
        kept=15, dropped_dark=5, existing=0, read=20, out_dir=tmp_path / "town"
    )
    names = sorted(_pngs(tmp_path / "town"))
    assert len(names) == 15 and all(NAME.match(name) for name in names)
    assert [int(name[-10:-4]) for name in names] == [i for i in range(FRAMES) if i not in DARK]
    for name in names:
        with Image.open(tmp_path / "town" / name) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
            pixels = np.asarray(image, dtype=np.float64)
        red, green, _ = pixels.mean(axis=(0, 1))
        assert abs(red - green) < 20  # the centre 32 columns miss both red bands


def test_every_keeps_every_nth_frame(clip: Path, tmp_path: Path) -> None:
    report = ingest_video(clip, "town", tmp_path, size=32, every=3)
    # frames 0, 3, 6, 9, 12, 15, 18: 6 and 9 are black
    assert (report.kept, report.dropped_dark, report.read) == (5, 2, 20)
    assert sorted(int(n[-10:-4]) for n in _pngs(tmp_path / "town")) == [0, 3, 12, 15, 18]


def test_dark_threshold_zero_keeps_everything(clip: Path, tmp_path: Path) -> None:
    report = ingest_video(clip, "town", tmp_path, size=32, dark_threshold=0.0)
    assert (report.kept, report.dropped_dark) == (20, 0)


def test_an_all_dark_video_leaves_no_empty_class_folder(clip: Path, tmp_path: Path) -> None:
    report = ingest_video(clip, "town", tmp_path, size=32, dark_threshold=256.0)
    assert (report.kept, report.dropped_dark) == (0, 20)
    assert not (tmp_path / "town").exists()  # an empty class would make the folder unloadable


def test_small_frames_are_resized_before_cropping(clip: Path, tmp_path: Path) -> None:
    ingest_video(clip, "town", tmp_path, size=64, every=5)
    for path in (tmp_path / "town").iterdir():
        with Image.open(path) as image:
            assert image.size == (64, 64)


def test_rerunning_adds_nothing_and_touches_nothing(clip: Path, tmp_path: Path) -> None:
    ingest_video(clip, "town", tmp_path, size=32, every=3)
    before = _pngs(tmp_path / "town")
    again = ingest_video(clip, "town", tmp_path, size=32, every=3)
    assert (again.kept, again.existing, again.dropped_dark) == (0, 5, 2)
    assert _pngs(tmp_path / "town") == before
    denser = ingest_video(clip, "town", tmp_path, size=32, every=1)
    assert (denser.kept, denser.existing) == (10, 5)
    assert len(_pngs(tmp_path / "town")) == 15


def test_names_follow_content_not_file_name_and_any_extension_reads(
    clip: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "clip.bin"  # imageio's own reader refuses unknown extensions
    shutil.copy(clip, renamed)
    ingest_video(clip, "a", tmp_path / "out", size=32)
    ingest_video(renamed, "b", tmp_path / "out", size=32)
    assert sorted(_pngs(tmp_path / "out" / "a")) == sorted(_pngs(tmp_path / "out" / "b"))


def test_ingested_frames_form_a_loadable_dataset(clip: Path, tmp_path: Path) -> None:
    ingest_video(clip, "town", tmp_path, size=32, every=4)
    ingest_video(clip, "beach", tmp_path, size=32, every=7)
    dataset = load_image_folder(tmp_path, 16)
    assert dataset.classes == ["beach", "town"] and dataset.skipped == 0
    assert not [p for p in tmp_path.rglob(".*")]  # no partial files left behind


def _text_as_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "sound.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=8000:cl=mono",
            "-t",
            "0.2",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.mp4", "does not exist"),
        (lambda tmp: tmp, "is not a file"),
        (_text_as_mp4, "cannot read .*notes.mp4 as a video"),
        (_empty, "empty"),
        (_audio_only, "no video stream"),
    ],
)
def test_unreadable_videos_are_one_line_data_errors(tmp_path: Path, make, message: str) -> None:
    video = make(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        ingest_video(video, "town", tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_video_without_frames_is_a_data_error(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_frames(path: str):
        yield {"size": (WIDTH, HEIGHT), "fps": 10.0, "duration": 0.0}

    monkeypatch.setattr(video_module.imageio_ffmpeg, "read_frames", no_frames)
    with pytest.raises(DataError, match="no video frames"):
        ingest_video(clip, "town", tmp_path)


@pytest.mark.parametrize("label", ["", "  ", ".", "..", "../up", "a/b", "a\\b", ".hidden"])
def test_unsafe_labels_are_refused(clip: Path, tmp_path: Path, label: str) -> None:
    with pytest.raises(DataError, match="--label"):
        ingest_video(clip, label, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "--every 0"),
        ({"size": 8}, "--size 8"),
    ],
)
def test_bad_options_are_refused(clip: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ingest_video(clip, "town", tmp_path / "out", **options)
