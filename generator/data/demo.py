"""The built-in demo dataset: six synthetic "maps" a small CNN learns in a few epochs.

The classes differ in what first-layer kernels can see: orientation, spatial frequency,
colour and shape. Per-image jitter (angle, frequency, phase, position, hue, background,
lighting, noise) keeps it from being trivial; in some stripe images the colour is random so
orientation alone must decide. The result is real PNG files in an ImageFolder, generated
once per (seed, size, count) into a cache folder and reused afterwards.
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from generator.errors import DataError

log = logging.getLogger(__name__)

DEMO_VERSION = "v2"  # bump when the pictures change, so old caches are not reused
# Sorted, so that DEMO_CLASSES[label] is the class ImageFolder gives that label.
DEMO_CLASSES = (
    "checkers",
    "cool_stripes",
    "fine_diagonals",
    "green_discs",
    "triangles",
    "warm_stripes",
)
COMPLETE_MARKER = "complete"  # written last: its presence means every image is there

Grid = tuple[np.ndarray, np.ndarray]  # x, y: (S, S) float64 in [0, 1), x along the width
Span = tuple[float, float]  # (low, high) of a uniform random draw
Painter = Callable[[np.random.Generator, Grid], np.ndarray]


def make_demo_dataset(
    cache_dir: Path, *, seed: int = 0, size: int = 128, per_class: int = 120
) -> Path:
    """The demo ImageFolder for these settings: reused if complete, else generated once."""
    check_demo_options(seed, size, per_class)
    final = Path(cache_dir) / f"demo-{DEMO_VERSION}-s{seed}-{size}px-{per_class}"
    if (final / COMPLETE_MARKER).is_file():
        log.debug("demo dataset %s is complete; reusing it", final)
        return final
    try:
        _generate_into(final, seed, size, per_class)
    except OSError as exc:
        raise DataError(
            f"cannot write the demo dataset to {final} ({exc.strerror or exc}); "
            "free some space or point the cache folder elsewhere"
        ) from exc
    return final


def check_demo_options(seed: int, size: int, per_class: int) -> None:
    """Reject settings that cannot make a usable dataset, naming the setting."""
    if seed < 0:
        raise DataError(f"demo seed {seed} is negative; use a seed of 0 or more")
    if size < 16:
        raise DataError(f"demo image size {size} is too small; use at least 16 pixels")
    if per_class < 1:
        raise DataError(f"demo images per class {per_class} is too few; use at least 1")


def _generate_into(final: Path, seed: int, size: int, per_class: int) -> None:
    """Write into a hidden staging folder and rename it into place, so a killed run never
    leaves a folder that looks complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        started = time.perf_counter()
        write_demo_images(staging, seed, size, per_class)
        marker = {"classes": list(DEMO_CLASSES), "seed": seed, "size": size, "per_class": per_class}
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        _publish(staging, final)
        log.info(
            "generated demo dataset %s (%d images) in %.1f s",
            final,
            len(DEMO_CLASSES) * per_class,
            time.perf_counter() - started,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename worked


def _publish(staging: Path, final: Path) -> None:
    """Move the finished staging folder to ``final``, replacing an incomplete leftover."""
    if (final / COMPLETE_MARKER).is_file():
        return  # another process finished the same dataset meanwhile; its copy is identical
    if final.exists():
        shutil.rmtree(final)  # no marker, so a leftover from an older or killed run
    try:
        os.replace(staging, final)
    except OSError:
        if not (final / COMPLETE_MARKER).is_file():
            raise
        # another process finished the same dataset first; its copy is identical


def write_demo_images(folder: Path, seed: int, size: int, per_class: int) -> None:
    """``folder/<class>/<class>_0000.png``; image i of class c depends only on (seed, c, i)."""
    grid = _grid(size)
    for class_index, name in enumerate(DEMO_CLASSES):
        (folder / name).mkdir()
        for i in range(per_class):
            rng = np.random.default_rng([seed, class_index, i])
            pixels = _finish(rng, PAINTERS[name](rng, grid), grid)
            Image.fromarray(pixels, "RGB").save(
                folder / name / f"{name}_{i:04d}.png", compress_level=1
            )


def _grid(size: int) -> Grid:
    """Pixel-centre coordinates in [0, 1), so patterns scale with the image size."""
    axis = (np.arange(size) + 0.5) / size
    x, y = np.meshgrid(axis, axis)
    return x, y


# ---- colours and masks ------------------------------------------------------------------


def _colour(
    rng: np.random.Generator, hue: Span, sat: Span = (0.55, 1.0), val: Span = (0.6, 1.0)
) -> np.ndarray:
    """A random RGB colour (3,) in [0, 1] with hue, saturation and value in the given spans."""
    h, s, v = rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator) -> np.ndarray:
    """A dull, any-hue background colour (3,), so the background never names the class."""
    return _colour(rng, (0.0, 1.0), sat=(0.0, 0.35), val=(0.1, 0.55))


def _blend(base: np.ndarray, colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint ``colour`` over ``base`` ((S, S, 3) or (3,)) with coverage ``mask`` (S, S)."""
    return base + mask[..., None] * (colour - base)


def _soft(distance: np.ndarray, size: int) -> np.ndarray:
    """Coverage from a signed distance (inside > 0): antialiased over about one pixel."""
    return np.clip(distance * size + 0.5, 0.0, 1.0)


def _grating(grid: Grid, angle: float, cycles: float, phase: float) -> np.ndarray:
    """A sinusoid in [-1, 1] varying along direction ``angle`` (0 = along x: vertical bars)."""
    x, y = grid
    return np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase)


def _stripes(
    rng: np.random.Generator, grid: Grid, angle: float, cycles: Span, hue: Span
) -> np.ndarray:
    """Soft-edged bars; 30 % of the time in a random hue, so orientation must decide."""
    angle += rng.normal(0, 0.12)
    wave = _grating(grid, angle, rng.uniform(*cycles), rng.uniform(0, 2 * np.pi))
    mask = 0.5 + 0.5 * np.tanh(rng.uniform(2.0, 5.0) * wave)
    colour = _colour(rng, (0.0, 1.0) if rng.random() < 0.3 else hue)
    return _blend(_background(rng), colour, mask)


# ---- the six classes --------------------------------------------------------------------


def _warm_stripes(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Vertical bars (6-10 per image) in reds, oranges and yellows."""
    return _stripes(rng, grid, 0.0, (6.0, 10.0), (-0.04, 0.14))


def _cool_stripes(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Horizontal bars (8-13 per image) in cyans, blues and violets."""
    return _stripes(rng, grid, np.pi / 2, (8.0, 13.0), (0.48, 0.72))


def _fine_diagonals(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """A fine sinusoidal grating at +-45 degrees in any hue: frequency and angle decide."""
    angle = rng.choice([np.pi / 4, 3 * np.pi / 4]) + rng.normal(0, 0.1)
    wave = _grating(grid, angle, rng.uniform(14.0, 20.0), rng.uniform(0, 2 * np.pi))
    return _blend(_background(rng), _colour(rng, (0.0, 1.0)), 0.5 + 0.5 * wave)


def _checkers(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """A slightly rotated checkerboard of two random colours: edges in both directions."""
    angle, cycles = rng.normal(0, 0.15), rng.uniform(4.0, 7.0)
    across = _grating(grid, angle, cycles, rng.uniform(0, 2 * np.pi))
    down = _grating(grid, angle + np.pi / 2, cycles, rng.uniform(0, 2 * np.pi))
    mask = 0.5 + 0.5 * np.tanh(4.0 * across * down)
    return _blend(_colour(rng, (0.0, 1.0), val=(0.2, 0.6)), _colour(rng, (0.0, 1.0)), mask)


def _green_discs(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Two to six green discs of different sizes on a dull background."""
    x, y = grid
    image = np.broadcast_to(_background(rng), (*x.shape, 3))
    for _ in range(rng.integers(2, 7)):
        cx, cy, radius = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.07, 0.2)
        distance = radius - np.hypot(x - cx, y - cy)
        image = _blend(image, _colour(rng, (0.24, 0.42)), _soft(distance, x.shape[0]))
    return image


def _triangles(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """One to three triangles of random colour, size and rotation: straight edges, corners."""
    x, y = grid
    image = np.broadcast_to(_background(rng), (*x.shape, 3))
    for _ in range(rng.integers(1, 4)):
        centre, radius = rng.uniform(0.25, 0.75, size=2), rng.uniform(0.15, 0.35)
        angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.1, 4.2]) + rng.normal(0, 0.2, 3)
        corners = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        coverage = _soft(_inside_distance(grid, corners), x.shape[0])
        image = _blend(image, _colour(rng, (0.0, 1.0)), coverage)
    return image


def _inside_distance(grid: Grid, corners: np.ndarray) -> np.ndarray:
    """Signed distance (inside > 0) to a counter-clockwise triangle ``corners`` (3, 2)."""
    x, y = grid
    nearest = np.full(x.shape, np.inf)
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        edge = end - start
        cross = edge[0] * (y - start[1]) - edge[1] * (x - start[0])
        nearest = np.minimum(nearest, cross / np.hypot(*edge))
    return nearest


PAINTERS: dict[str, Painter] = {
    "warm_stripes": _warm_stripes,
    "cool_stripes": _cool_stripes,
    "fine_diagonals": _fine_diagonals,
    "checkers": _checkers,
    "green_discs": _green_discs,
    "triangles": _triangles,
}


def _finish(rng: np.random.Generator, image: np.ndarray, grid: Grid) -> np.ndarray:
    """Uneven lighting and sensor noise, then 8-bit: (S, S, 3) float in [0, 1] to uint8."""
    x, y = grid
    tilt = rng.normal(0, 0.15, size=2)
    light = rng.uniform(0.85, 1.15) + tilt[0] * (x - 0.5) + tilt[1] * (y - 0.5)
    noisy = image * light[..., None] + rng.normal(0, rng.uniform(0.01, 0.06), image.shape)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)
