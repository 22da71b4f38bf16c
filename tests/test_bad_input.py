"""The bad-input matrix, end to end through the CLI: one clear line, the right exit code.

Every row runs ``generator.__main__.main([...])`` on something broken — a dataset, a run
store, an option, the environment, a video — and checks what the user sees: a single line
on stderr that names the file or option, no traceback, exit code 2 where the command cannot
go on; or, where skipping is right (one bad image in a dataset), exit 0 and one logged
warning naming the skipped file. Unit tests of the same cases live beside each module
(test_data_*, test_store_reader, test_cli, test_build); this is the one place that walks all of
them through the real command line.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.__main__ import main
from generator.train.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint
from tests.test_faults import TINY_TRAIN, one_line_error

pytestmark = pytest.mark.slow

CHUNK = "activations/block1/c/1/0/0/0/0"  # epoch 1, probe 0 of the tiny run's first layer
BUILD = ["--layers", "block1", "--probe-index", "1", "--channel-probes", "0", "--formats", "gif"]


@dataclass
class Ctx:
    """Where a row works: a temp folder, a copy of a trained tiny store, a small dataset."""

    tmp: Path
    trained: Path

    @property
    def store(self) -> Path:
        """A fresh copy of the trained store (and its checkpoints) to break."""
        copy = self.tmp / "run.zarr"
        if not copy.exists():
            shutil.copytree(self.trained, copy)
            shutil.copytree(checkpoint_dir(self.trained), checkpoint_dir(copy))
        return copy

    @property
    def data(self) -> Path:
        """Two classes of four small, good PNGs."""
        root = self.tmp / "data"
        if not root.exists():
            rng = np.random.default_rng(0)
            for name in ("a", "b"):
                (root / name).mkdir(parents=True)
                for i in range(4):
                    pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / name / f"{i}.png")
        return root


@dataclass(frozen=True)
class Row:
    """One bad input: how to make it (returns argv), the exit code, what the line names
    and what it must not say (a misleading hint)."""

    prepare: Callable[[Ctx], list[str]]
    code: int
    names: tuple[str, ...]
    absent: tuple[str, ...] = ()


def train_data(ctx: Ctx, *extra: str) -> list[str]:
    return [
        "train",
        "--out",
        str(ctx.tmp / "out.zarr"),
        "--data",
        str(ctx.data),
        *TINY_TRAIN,
        "--epochs",
        "1",
        *extra,
    ]


def with_file(name: str, write: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    """A dataset with one extra file in class ``a``, made by ``write(path)``."""

    def prepare(ctx: Ctx) -> list[str]:
        write(ctx.data / "a" / name)
        return train_data(ctx)

    return prepare


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def crafted_png(width: int, height: int, depth: int, colour: int, pixels: bytes) -> bytes:
    """A PNG with correct checksums around whatever ``pixels`` (zlib'd) says."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(pixels))
        + _png_chunk(b"IEND", b"")
    )


def write_truncated_png(path: Path) -> None:
    Image.new("RGB", (40, 40), (200, 10, 10)).save(path)
    path.write_bytes(path.read_bytes()[:-30])


def write_truncated_jpeg(path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:-200])


def write_huge_png(path: Path) -> None:
    """A real 20000 x 20000 PNG, 400 megapixels (1.2 GB as RGB), a few KB on disk: from a
    1-bit image, so making it costs 50 MB; the guard must refuse it before decoding."""
    Image.new("1", (20000, 20000)).save(path, optimize=False)


def single_image_class(root: Path) -> None:
    one_class(root)
    (root / "pair").mkdir()
    for i in range(2):
        Image.new("RGB", (20, 20), (i, 0, 0)).save(root / "pair" / f"{i}.png")


def write_symlink_loops(path: Path) -> None:
    (path.parent / "loop_dir").symlink_to(path.parent, target_is_directory=True)
    path.symlink_to(path.with_name("loop_b.png"))
    path.with_name("loop_b.png").symlink_to(path)


def replace_data(build: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    """``--data`` pointing at a folder (or not) that ``build(root)`` makes."""

    def prepare(ctx: Ctx) -> list[str]:
        root = ctx.tmp / "bad-data"
        build(root)
        return ["train", "--out", str(ctx.tmp / "out.zarr"), "--data", str(root), *TINY_TRAIN]

    return prepare


def one_class(root: Path) -> None:
    (root / "only").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(root / "only" / "0.png")


def empty_class(root: Path) -> None:
    one_class(root)
    (root / "empty").mkdir()


def looping_root(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    root.symlink_to(root)


def mode_images(
    mode: str, make: Callable[[], Image.Image], suffix: str
) -> Callable[[Ctx], list[str]]:
    """Every image of class ``a`` replaced by one of another colour mode or size."""

    def prepare(ctx: Ctx) -> list[str]:
        for old in (ctx.data / "a").iterdir():
            old.unlink()
        for i in range(4):
            make().save(ctx.data / "a" / f"{mode}-{i}{suffix}")
        return train_data(ctx)

    return prepare


DATA_ROWS = {
    "data: missing folder": Row(replace_data(lambda root: None), 2, ("bad-data", "does not exist")),
    "data: a file, not a folder": Row(
        replace_data(lambda root: root.write_text("x")), 2, ("bad-data", "is a file")
    ),
    "data: empty folder": Row(
        replace_data(lambda root: root.mkdir()), 2, ("bad-data", "has no class folders")
    ),
    "data: one class only": Row(replace_data(one_class), 2, ("bad-data", "only one class")),
    "data: an empty class folder": Row(
        replace_data(empty_class), 2, ("bad-data/empty", "has no usable image (empty)")
    ),
    "data: the folder is a symlink loop": Row(
        replace_data(looping_root), 2, ("bad-data", "loops or points nowhere")
    ),
    "data: corrupt image (random bytes)": Row(
        with_file("noise.png", lambda p: p.write_bytes(os.urandom(3000))),
        0,
        ("a/noise.png", "skipped 1"),
    ),
    "data: truncated PNG": Row(
        with_file("cut.png", write_truncated_png), 0, ("a/cut.png", "skipped 1")
    ),
    "data: truncated JPEG": Row(
        with_file("cut.jpg", write_truncated_jpeg), 0, ("a/cut.jpg", "truncated JPEG")
    ),
    "data: zero-byte file": Row(
        with_file("empty.png", lambda p: p.write_bytes(b"")), 0, ("a/empty.png", "empty file")
    ),
    "data: non-image file": Row(
        with_file("notes.txt", lambda p: p.write_text("hello")),
        0,
        ("a/notes.txt", "not a readable image"),
    ),
    "data: huge image (20000x20000)": Row(
        with_file("huge.png", write_huge_png), 0, ("a/huge.png", "megapixel limit")
    ),
    "data: symlink loops (folder and file)": Row(
        with_file("loop_a.png", write_symlink_loops), 0, ("skipped 3 symbolic links", "a/loop_")
    ),
    "data: symlinks to the dataset and to itself": Row(
        lambda ctx: (
            (ctx.data / "zz_parent").symlink_to("."),
            (ctx.data / "zy_loop").symlink_to(Path("..") / "data"),
            train_data(ctx),
        )[-1],
        0,
        ("skipped 2 symbolic links", "data/zy_loop", "not followed"),
    ),
    "data: a class of a single image": Row(
        replace_data(single_image_class), 2, ("bad-data/only", "single image")
    ),
    "data: --out inside --data": Row(
        lambda ctx: [*train_data(ctx), "--out", str(ctx.data / "run.zarr")],
        2,
        ("--out", "data/run.zarr", "inside --data"),
    ),
    "data: train --out the dataset folder": Row(
        lambda ctx: (ctx.data, ["train", "--out", str(ctx.tmp / "data"), *TINY_TRAIN])[1],
        2,
        ("data", "not a run store"),
        ("--resume",),
    ),
    "option: train --out a checkpoint folder's name": Row(
        lambda ctx: ["train", "--out", str(ctx.tmp / "runs" / "a.ckpt"), *TINY_TRAIN],
        2,
        ("--out", "a.ckpt", "checkpoints"),
    ),
    "data: image passes the check, fails to decode (DataLoader)": Row(
        with_file(
            "undecodable.png", lambda p: p.write_bytes(crafted_png(32, 32, 8, 2, b"\0" * 50))
        ),
        2,
        ("a/undecodable.png", "cannot decode the image"),
    ),
    "data: tiny images (2x2, smaller than the input)": Row(
        mode_images("tiny", lambda: Image.new("RGB", (2, 2), (9, 99, 199)), ".png"), 0, ()
    ),
    "data: 16-bit images": Row(
        mode_images(
            "i16",
            lambda: Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 150),
            ".png",
        ),
        0,
        (),
    ),
    "data: CMYK images": Row(
        mode_images("cmyk", lambda: Image.new("CMYK", (20, 20), (0, 80, 160, 20)), ".jpg"), 0, ()
    ),
    "probe image: missing": Row(
        lambda ctx: train_data(ctx, "--probe-images", str(ctx.tmp / "nope.png")),
        2,
        ("nope.png", "does not exist"),
    ),
    "probe image: a folder": Row(
        lambda ctx: train_data(ctx, "--probe-images", str(ctx.data / "a")),
        2,
        ("data/a", "is a folder"),
        ("does not exist",),
    ),
    "probe image: /dev/zero": Row(
        lambda ctx: train_data(ctx, "--probe-images", "/dev/zero"),
        2,
        ("/dev/zero", "is a character device"),
        ("does not exist",),
    ),
    "probe image: a FIFO (never opened, so never blocks)": Row(
        lambda ctx: (
            os.mkfifo(ctx.tmp / "fifo.png"),
            train_data(ctx, "--probe-images", str(ctx.tmp / "fifo.png")),
        )[1],
        2,
        ("fifo.png", "is a FIFO"),
        ("does not exist",),
    ),
    "probe image: over the pixel limit": Row(
        lambda ctx: (
            write_huge_png(ctx.tmp / "huge.png"),
            train_data(ctx, "--probe-images", str(ctx.tmp / "huge.png")),
        )[1],
        2,
        ("huge.png", "megapixel limit"),
    ),
}


def break_store(damage: Callable[[Path], None], *command: str) -> Callable[[Ctx], list[str]]:
    """A copy of the trained store, damaged, given to ``info`` / ``build`` / ``train``."""

    def prepare(ctx: Ctx) -> list[str]:
        damage(ctx.store)
        if command[0] == "build":
            return [
                "build",
                "--store",
                str(ctx.store),
                "--out",
                str(ctx.tmp / "site"),
                *BUILD,
                *command[1:],
            ]
        if command[0] == "train":
            return ["train", "--out", str(ctx.store), *TINY_TRAIN, *command[1:]]
        return [*command, str(ctx.store)]

    return prepare


def edit_root_attrs(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """A damage that changes the store's root attributes in place with ``edit``."""

    def damage(store: Path) -> None:
        meta = json.loads((store / "zarr.json").read_text())
        edit(meta["attributes"])
        (store / "zarr.json").write_text(json.dumps(meta))

    return damage


def set_root_attr(key: str, value: object) -> Callable[[Path], None]:
    return edit_root_attrs(lambda attrs: attrs.update({key: value}))


def drop_root_attrs(*keys: str) -> Callable[[Path], None]:
    return edit_root_attrs(lambda attrs: [attrs.pop(key, None) for key in keys])


def both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        for each in damages:
            each(store)

    return damage


def truncate_chunk(store: Path) -> None:
    chunk = store / CHUNK
    chunk.write_bytes(chunk.read_bytes()[:40])


def scramble_chunk(store: Path) -> None:
    chunk = store / CHUNK
    chunk.write_bytes(np.random.default_rng(2).bytes(chunk.stat().st_size))


def flip_chunk_body(store: Path) -> None:
    """Header intact (passes the open-time size check), body damaged: found on read."""
    chunk = store / CHUNK
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


def break_newest_checkpoint(store: Path) -> None:
    newest = list(list_checkpoints(store).values())[-1]
    newest.write_bytes(b"not a checkpoint" * 10)


def edit_newest_checkpoint(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        newest = list(list_checkpoints(store).values())[-1]
        state = load_checkpoint(newest)
        edit(state)
        torch.save(state, newest)

    return damage


def another_network(state: dict) -> None:
    """The weights of a network with 8 channels in its first block, not 4."""
    state["model"]["block1.conv.weight"] = torch.zeros(8, 3, 5, 5)


def resume_with_other_data(ctx: Ctx) -> list[str]:
    """A run on ``data``, then ``--resume`` on a copy with the same class names."""
    assert main(["-q", *train_data(ctx)]) == 0
    shutil.copytree(ctx.data, ctx.tmp / "data2")
    return [*train_data(ctx, "--resume"), "--data", str(ctx.tmp / "data2")]


STORE_ROWS = {
    "store: missing path (info)": Row(
        lambda ctx: ["info", str(ctx.tmp / "none.zarr")], 2, ("none.zarr", "no such store")
    ),
    "store: missing path (build)": Row(
        lambda ctx: [
            "build",
            "--store",
            str(ctx.tmp / "none.zarr"),
            "--out",
            str(ctx.tmp / "site"),
        ],
        2,
        ("none.zarr", "no such store"),
    ),
    "store: a folder, not a zarr store": Row(
        lambda ctx: (ctx.tmp.joinpath("plain").mkdir(), ["info", str(ctx.tmp / "plain")])[1],
        2,
        ("plain", "not a zarr store"),
    ),
    "store: damaged root zarr.json": Row(
        break_store(lambda s: (s / "zarr.json").write_text("{nope"), "info"),
        2,
        ("zarr.json", "unreadable"),
    ),
    "store: newer schema_version": Row(
        break_store(set_root_attr("schema_version", 99), "info"),
        2,
        ("run.zarr", "schema_version 99 is newer"),
    ),
    "store: a root attribute of the wrong type": Row(
        break_store(set_root_attr("class_names", "alpha"), "info"), 2, ("run.zarr", "class_names")
    ),
    "store: a layer name that escapes the store": Row(
        break_store(
            both(
                set_root_attr("layers", [{"name": "../../etc", "kind": "linear", "shape": [3]}]),
                # the recorded extras name conv layers that this store no longer lists
                drop_root_attrs("featviz", "examples"),
            ),
            "info",
        ),
        2,
        # schema v2 escapes any name into one folder name: it is looked up inside the store
        ("run.zarr", "activations/%2E.%2F..%2Fetc is missing"),
    ),
    "store: missing array": Row(
        break_store(lambda s: shutil.rmtree(s / "activations" / "block2"), "info"),
        2,
        ("activations/block2", "is missing"),
    ),
    "store: damaged array metadata": Row(
        break_store(
            lambda s: (s / "activations/block1/zarr.json").write_bytes(b"\x00garbage"), "info"
        ),
        2,
        ("activations/block1", "unreadable metadata"),
    ),
    "store: truncated chunk (info)": Row(
        break_store(truncate_chunk, "info"), 2, ("activations/block1", "c/1/0/0/0/0", "truncated")
    ),
    "store: truncated chunk (build)": Row(
        break_store(truncate_chunk, "build"), 2, ("activations/block1", "c/1/0/0/0/0", "truncated")
    ),
    "store: overwritten chunk (info)": Row(
        break_store(scramble_chunk, "info"), 2, ("activations/block1", "c/1/0/0/0/0", "corrupted")
    ),
    "store: chunk body flipped, read in a worker (build --jobs 2)": Row(
        break_store(flip_chunk_body, "build", "--jobs", "2"), 2, ("activations/block1", "checksum")
    ),
    "store: --resume with another input size": Row(
        break_store(lambda s: None, "train", "--resume", "--epochs", "3", "--input-size", "32"),
        2,
        ("run.zarr", "--resume with a different --input-size (32)", "(16)"),
    ),
    "store: --resume with another model": Row(
        break_store(lambda s: None, "train", "--resume", "--epochs", "3", "--channels", "8,8"),
        2,
        ("run.zarr", "--resume with a different --channels (8,8)", "(4,4)"),
    ),
    "store: --resume with another --seed": Row(
        break_store(lambda s: None, "train", "--resume", "--epochs", "3", "--seed", "7"),
        2,
        ("run.zarr", "--resume with a different --seed (7)", "(0)"),
    ),
    "store: --resume with another --probes (fixed when the run was made)": Row(
        break_store(lambda s: None, "train", "--resume", "--epochs", "3", "--probes", "7"),
        2,
        ("run.zarr", "--resume with a different --probes (7)", "(2)"),
    ),
    "store: --resume with another --data of the same class names": Row(
        resume_with_other_data, 2, ("out.zarr", "different --data", "data2", "data)")
    ),
    "store: --resume with fewer --epochs than trained": Row(
        break_store(lambda s: None, "train", "--resume", "--epochs", "1"),
        2,
        ("run.zarr", "--epochs 1", "already trained 2"),
    ),
    "store: --resume from a checkpoint of another run": Row(
        break_store(
            edit_newest_checkpoint(lambda state: state.update(run_id="0" * 32)),
            "train",
            "--resume",
            "--epochs",
            "3",
        ),
        2,
        ("epoch-0002.pt", "belongs to another run", "aside"),
    ),
    "store: --resume from a checkpoint of another network": Row(
        break_store(edit_newest_checkpoint(another_network), "train", "--resume", "--epochs", "3"),
        2,
        ("epoch-0002.pt", "another network", "block1.conv.weight is [8, 3, 5, 5]"),
        ("Error(s) in loading",),
    ),
    "store: --out on an existing store without --resume": Row(
        break_store(lambda s: None, "train", "--epochs", "1"), 2, ("run.zarr", "already exists")
    ),
    "store: --resume on no store": Row(
        lambda ctx: ["train", "--out", str(ctx.tmp / "none.zarr"), "--resume"],
        2,
        ("none.zarr", "no such store to resume"),
    ),
    "store: --resume without any checkpoint": Row(
        break_store(
            lambda s: shutil.rmtree(checkpoint_dir(s)), "train", "--resume", "--epochs", "3"
        ),
        2,
        ("run.zarr.ckpt", "no checkpoint", "delete the store"),
    ),
    "store: --resume from a damaged checkpoint": Row(
        break_store(break_newest_checkpoint, "train", "--resume", "--epochs", "3"),
        2,
        ("epoch-0002.pt", "unreadable checkpoint"),
    ),
}


def train_opts(*options: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["train", "--out", str(ctx.tmp / "x.zarr"), *options]


def build_opts(*options: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: [
        "build",
        "--store",
        str(ctx.store),
        "--out",
        str(ctx.tmp / "site"),
        *options,
    ]


OPTION_ROWS = {
    f"option: {' '.join(opts)}": Row(train_opts(*opts), 2, (opts[0], expected))
    for opts, expected in [
        (("--epochs", "0"), "at least 1"),
        (("--epochs", "-3"), "at least 1"),
        (("--batch-size", "0"), "at least 1"),
        (("--batch-size", "-8"), "at least 1"),
        (("--probes", "0"), "at least 1"),
        (("--probes", "-2"), "at least 1"),
        (("--lr", "0"), "positive"),
        (("--lr", "-0.1"), "positive"),
        (("--input-size", "32"), "too small for 8 blocks"),
        (("--input-size", "0"), "too small for 8 blocks"),
    ]
} | {
    **{
        f"option: --lr {lr} (too large to train)": Row(
            lambda ctx, lr=lr: ["train", "--out", str(ctx.tmp / "x.zarr"), *TINY_TRAIN, "--lr", lr],
            2,
            ("--lr", reason),
        )
        for lr, reason in (("1e30", "at most 10"), ("inf", "finite"))
    },
    "option: --colormap unknown": Row(build_opts("--colormap", "jet"), 2, ("--colormap", "'jet'")),
    "option: --formats unknown": Row(build_opts("--formats", "webm"), 2, ("--formats 'webm'",)),
    "option: --scale unknown": Row(build_opts("--scale", "global"), 2, ("'global'",)),
    "option: --jobs 0": Row(build_opts("--jobs", "0"), 2, ("--jobs must be at least 1",)),
}


def under_a_file(ctx: Ctx) -> Path:
    """An output folder nobody can create, even root: its parent is a regular file."""
    blocker = ctx.tmp / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "out"


def read_only_folder(ctx: Ctx) -> Path:
    """A folder without write permission; as root permissions do not stop writes, so
    there the folder is /proc's, which nobody can create entries in."""
    if os.geteuid() == 0:
        return Path("/proc/netlapse-test/out")
    folder = ctx.tmp / "read-only"
    folder.mkdir(mode=0o500)
    return folder / "out"


ENVIRONMENT_ROWS = {
    "environment: train --out under a regular file": Row(
        lambda ctx: [
            "train",
            "--out",
            str(under_a_file(ctx) / "run.zarr"),
            "--data",
            str(ctx.data),
            *TINY_TRAIN,
            "--epochs",
            "1",
        ],
        2,
        ("blocker/out/run.zarr", "cannot create the store (Not a directory)"),
    ),
    "environment: train --out in a read-only folder": Row(
        lambda ctx: [
            "train",
            "--out",
            str(read_only_folder(ctx) / "run.zarr"),
            "--data",
            str(ctx.data),
            *TINY_TRAIN,
            "--epochs",
            "1",
        ],
        2,
        ("out/run.zarr", "cannot create the store"),
    ),
    "environment: build --out under a regular file": Row(
        lambda ctx: ["build", "--store", str(ctx.store), "--out", str(under_a_file(ctx)), *BUILD],
        2,
        ("blocker/out", "Not a directory"),
    ),
    "environment: ingest --out a file": Row(
        lambda ctx: [
            "ingest",
            str(make_video(ctx)),
            "--label",
            "a",
            "--out",
            str(ctx.tmp / "clip.mp4"),
        ],
        2,
        ("--out", "clip.mp4 is a file, not a folder"),
        ("free some space",),
    ),
    "environment: ingest --out under a regular file": Row(
        lambda ctx: [
            "ingest",
            str(make_video(ctx)),
            "--label",
            "a",
            "--out",
            str(under_a_file(ctx)),
            "--size",
            "16",
        ],
        2,
        ("blocker", "is a file, not a folder"),
        ("free some space",),
    ),
}


def make_video(ctx: Ctx) -> Path:
    """A real 8-frame MP4, written by the same ffmpeg ingestion uses."""
    import imageio_ffmpeg

    path = ctx.tmp / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (32, 32), fps=4, macro_block_size=16)
    writer.send(None)
    for i in range(8):
        writer.send(np.full((32, 32, 3), 60 + 20 * i, dtype=np.uint8).tobytes())
    writer.close()
    return path


def video(write: Callable[[Path], None], name: str) -> Callable[[Ctx], list[str]]:
    def prepare(ctx: Ctx) -> list[str]:
        path = ctx.tmp / name
        write(path)
        return ["ingest", str(path), "--label", "clip", "--out", str(ctx.tmp / "frames")]

    return prepare


VIDEO_ROWS = {
    "video: missing": Row(video(lambda p: None, "none.mp4"), 2, ("none.mp4", "does not exist")),
    "video: not a video (text)": Row(
        video(lambda p: p.write_text("hello\n"), "notes.mp4"),
        2,
        ("notes.mp4", "cannot read", "as a video"),
    ),
    "video: zero-length": Row(
        video(lambda p: p.write_bytes(b""), "empty.mp4"), 2, ("empty.mp4", "empty (0 bytes)")
    ),
    "video: unreadable codec (random bytes)": Row(
        video(lambda p: p.write_bytes(np.random.default_rng(3).bytes(20000)), "noise.mp4"),
        2,
        ("noise.mp4", "cannot read", "as a video"),
    ),
}

ROWS = DATA_ROWS | STORE_ROWS | OPTION_ROWS | ENVIRONMENT_ROWS | VIDEO_ROWS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny run of 2 epochs (E = 3) with its checkpoints, made once."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLAPSE_CACHE", str(root / "cache"))
        assert (
            main(["-q", "train", "--out", str(root / "run.zarr"), *TINY_TRAIN, "--epochs", "2"])
            == 0
        )
    return root / "run.zarr"


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_bad_input(
    row: Row,
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("NETLAPSE_CACHE", str(trained.parent / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = row.prepare(Ctx(tmp_path, trained))
    capsys.readouterr()
    code = main(["-q", *argv])
    if row.code:
        line = one_line_error(capsys)
        assert line.startswith(f"netlapse {argv[0]}: error: ")
    else:  # usable: exit 0, and at most one warning, naming the skipped file
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) <= 1, err
        line = err
    assert code == row.code, line
    for name in row.names:
        assert name in line, f"{name!r} not in {line!r}"
    for misleading in row.absent:
        assert misleading not in line, f"{misleading!r} in {line!r}"
    if not row.names:
        assert line == ""


def test_a_store_error_in_a_build_worker_reaches_the_cli_as_one_line(
    trained: Path, tmp_path: Path
) -> None:
    """The flipped-chunk row again, asserting the error really crossed the process pool."""
    from generator.build import build
    from generator.config import BuildConfig
    from generator.errors import StoreError

    ctx = Ctx(tmp_path, trained)
    flip_chunk_body(ctx.store)
    config = BuildConfig(
        stores=(ctx.store,),
        out=tmp_path / "site",
        layers=("block1",),
        probe_index=(1,),
        channel_probes=0,
        formats=("gif",),
        jobs=2,
    )
    with pytest.raises(StoreError) as info:
        build(config)
    assert type(info.value.__cause__).__name__ == "_RemoteTraceback"  # raised in a worker
    assert "\n" not in str(info.value) and "activations/block1" in str(info.value)
