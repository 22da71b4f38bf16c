"""ImageFolder loading: DIR/<class>/<image> to square uint8 tensors, skipping what cannot load.

Screenshot folders are messy (thumbnails, notes, half-copied files, a stray 300-megapixel
panorama), so every file is checked cheaply with PIL when the folder is loaded. What cannot
be used is skipped and counted in one warning instead of crashing an epoch later; a
folder that cannot make a classifier at all is a one-line ``DataError``.

Symbolic links inside the dataset (class folders and files alike) are not followed: a link
to ``.`` or to a parent would turn one folder into several classes with the same images
under contradictory labels. They are skipped and counted in one warning. The dataset folder
itself may be a link.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from generator.data.images import SUPPORTED_MODES, fit_box, to_chw, to_rgb
from generator.data.names import storable_text
from generator.errors import DataError

log = logging.getLogger(__name__)

# Decompression-bomb guard: larger images are skipped before any pixel is decoded.
MAX_PIXELS = 100_000_000
LAYOUT = "DIR/<class>/<image>"


class _UnusableImage(Exception):
    """Why one file cannot be used as an image; turned into a skip or a DataError."""


class ImageFolderData(ImageFolder):
    """An ImageFolder of square uint8 images: ``dataset[i]`` is ``((3, S, S) uint8, label)``.

    ``classes`` are the sorted class folder names (as the file system has them),
    ``class_names`` the same as stored (``names.storable_text``), ``samples`` only the usable
    images, ``skipped`` how many files were left out as unreadable, oversized or not images
    and ``links_skipped`` how many symbolic links inside the dataset were not followed.
    """

    def __init__(self, root: Path, input_size: int) -> None:
        if input_size < 1:
            raise DataError(f"input size {input_size} is too small; use at least 1 pixel")
        self.size = input_size
        self.skipped = 0
        self.links_skipped = 0
        self._links: list[Path] = []
        check_root(Path(root))
        super().__init__(Path(root))
        self.root = Path(root)

    @property
    def class_names(self) -> list[str]:
        """The class names as a store keeps them: valid UTF-8, undecodable bytes escaped."""
        return [storable_text(name) for name in self.classes]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        """Non-hidden sub-folders are the classes; fewer than two cannot train a classifier."""
        classes = list_class_folders(Path(directory), links=self._links)
        return classes, {name: index for index, name in enumerate(classes)}

    def make_dataset(
        self,
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        """Check every file with PIL instead of trusting extensions; count what is skipped."""
        samples: list[tuple[str, int]] = []
        rejected: list[tuple[Path, str]] = []
        for name, index in sorted(class_to_idx.items()):
            usable, unusable = scan_class_folder(Path(directory, name), links=self._links)
            samples.extend((str(path), index) for path in usable)
            rejected.extend(unusable)
        self.skipped = len(rejected)
        self.links_skipped = len(self._links)
        if self._links:
            log.warning(
                "%s: skipped %d symbolic links (first: %s); links inside a dataset are not "
                "followed, so copy the files in instead",
                directory,
                len(self._links),
                self._links[0],
            )
        if rejected:
            first, reason = rejected[0]
            log.warning(
                "%s: skipped %d of %d files that are not usable images (first: %s: %s)",
                directory,
                len(rejected),
                len(rejected) + len(samples),
                first,
                reason,
            )
        return samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return torch.from_numpy(decode_uint8(Path(path), self.size)), label

    def load_uint8(self, path: Path) -> np.ndarray:
        """One file (e.g. a probe image) exactly as the dataset would give it: (3, S, S)."""
        return load_uint8(path, self.size)


def load_image_folder(root: Path, input_size: int) -> ImageFolderData:
    """Load an ImageFolder whose images the model sees as ``input_size`` squares."""
    return ImageFolderData(root, input_size)


def check_root(root: Path) -> None:
    """Fail early, naming the path, when the dataset root is not a folder at all."""
    if root.is_symlink() and not root.exists():
        raise DataError(
            f"dataset folder {root} is a symbolic link that loops or points "
            "nowhere; pass the real folder"
        )
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; pass a folder laid out as {LAYOUT}")
    if not root.is_dir():
        raise DataError(
            f"{root} is a file, not a dataset folder; pass a folder laid out as {LAYOUT}"
        )


def list_class_folders(root: Path, *, links: list[Path] | None = None) -> list[str]:
    """Sorted non-hidden sub-folder names of ``root`` (as torchvision sorts them); links
    are not classes (appended to ``links`` when given)."""
    try:
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
        if links is not None:
            links.extend(sorted(Path(root, e.name) for e in entries if e.is_symlink()))
        names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError as exc:
        raise DataError(
            f"cannot list dataset folder {root} ({exc.strerror}); check its permissions"
        ) from exc
    if not names:
        raise DataError(f"{root} has no class folders; put the images in {root}/<class>/<image>")
    if len(names) < 2:
        raise DataError(
            f"{root} has only one class folder ({names[0]}); a classifier needs at "
            f"least 2, so add another {root}/<class>/ folder"
        )
    return names


def scan_class_folder(
    folder: Path, *, links: list[Path] | None = None
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split a class folder's files into usable images and (file, reason) rejects."""
    usable: list[Path] = []
    rejected: list[tuple[Path, str]] = []
    for path in list_files(folder, links=links):
        reason = unusable_reason(path)
        if reason is None:
            usable.append(path)
        else:
            rejected.append((path, reason))
    if not usable:
        detail = f"none of its {len(rejected)} files is a readable image" if rejected else "empty"
        raise DataError(
            f"class folder {folder} has no usable image ({detail}); add images to it or remove it"
        )
    return usable, rejected


def list_files(folder: Path, *, links: list[Path] | None = None) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted. Symbolic links (to folders or files)
    are not followed but appended to ``links``, so a link loop cannot hang the scan and no
    image is listed twice or under another class."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder, followlinks=False):
        linked = {n for n in dirs + files if not n.startswith(".") and Path(parent, n).is_symlink()}
        if links is not None:
            links.extend(Path(parent, name) for name in sorted(linked))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in linked)
        found.extend(
            Path(parent, name)
            for name in sorted(files)
            if not name.startswith(".") and name not in linked
        )
    return found


def unusable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be used (None if it can), reading headers and checksums only."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return f"not a regular file ({_kind(info.st_mode)})"  # never opened: a FIFO blocks
        if info.st_size == 0:
            return "empty file"
        with open_image(path) as img:
            kind = img.format
            img.verify()  # PNG: walks every chunk's CRC, so truncation shows up here
        if kind == "JPEG" and not _has_jpeg_end(path):
            return "truncated JPEG (no end marker)"
    except _UnusableImage as exc:
        return str(exc)
    except Exception as exc:  # PIL raises many types on malformed files
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """Open an image lazily, refusing oversized or unsupported ones before decoding pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise _UnusableImage(f"over the {MAX_PIXELS // 1_000_000} megapixel limit") from exc
    with img:
        if img.width * img.height > MAX_PIXELS:
            raise _UnusableImage(
                f"{img.width}x{img.height} is over the {MAX_PIXELS // 1_000_000} megapixel limit"
            )
        if img.mode not in SUPPORTED_MODES:
            raise _UnusableImage(f"colour mode {img.mode} is not supported")
        yield img


def _has_jpeg_end(path: Path) -> bool:
    """JPEG's verify() checks nothing, so look for the end-of-image marker near the end."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()


def decode_uint8(path: Path, size: int | tuple[int, ...]) -> np.ndarray:
    """Decode one already-checked image to ``(3, size, size)`` uint8 (``size`` (H, W):
    ``(3, H, W)``; (1, H, W): grey ``(1, H, W)``); DataError if it fails."""
    channels, height, width = _box(size)
    try:
        with open_image(path) as img:
            img.draft(img.mode, (width, height))  # JPEG: decode at the smallest scale >= size
            rgb = to_rgb(img)
    except _UnusableImage as exc:
        raise DataError(f"{path}: {exc}; remove it or pass another image") from exc
    except Exception as exc:  # PIL raises many types on malformed files
        raise DataError(f"{path}: cannot decode the image ({exc}); re-save or remove it") from exc
    if channels == 1:
        grey = np.array(fit_box(rgb, height, width).convert("L"), dtype=np.uint8)
        return np.ascontiguousarray(grey[None])
    return to_chw(fit_box(rgb, height, width))


def _box(size: int | tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) from a side, (H, W) or (C, H, W) with C 1 or 3."""
    box = (3, size, size) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(box) == 2:
        box = (3, *box)
    if len(box) != 3 or box[0] not in (1, 3) or min(box) < 1:
        raise DataError(f"input size {size} is not a side, (height, width) or (1 or 3, h, w)")
    return box[0], box[1], box[2]


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "a special file"


def load_uint8(path: Path, size: int | tuple[int, ...]) -> np.ndarray:
    """Check and decode a single file given by the user (a probe image): ``(3, size, size)``.
    Only a regular file is ever opened (a FIFO would block the run, /dev/zero never end)."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise DataError(f"image {path} does not exist; pass an existing image file") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(
            f"image {path} is {_kind(info.st_mode)}, not an image file; pass a PNG or JPEG file"
        )
    reason = unusable_reason(path)
    if reason is not None:
        raise DataError(f"{path}: {reason}; pass a PNG or JPEG image")
    return decode_uint8(path, size)
