"""Settings of each command as frozen dataclasses; the CLI fills them, defaults live here.

Validation happens here, once, so every entry point (CLI, tests, benchmarks) refuses the
same bad values with the same one-line ``OptionError`` naming the option.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.architecture import REFERENCE_CHANNELS, REFERENCE_KERNEL
from generator.errors import OptionError
from generator.schema import ACTIVATION_DTYPES

DEMO_INPUT_SIZE = 128
DATA_INPUT_SIZE = 512
DEVICES = ("auto", "cpu", "cuda")


def default_cache_dir() -> Path:
    """Where generated demo data lives: $NETLAPSE_CACHE, else the XDG cache folder."""
    if os.environ.get("NETLAPSE_CACHE"):
        return Path(os.environ["NETLAPSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netlapse"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in the run's ``training`` attribute."""

    out: Path
    data: Path | None = None
    epochs: int = 10
    input_size: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    probes: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    activation_dtype: str = "float16"
    probe_images: tuple[Path, ...] = ()
    channels: tuple[int, ...] = REFERENCE_CHANNELS
    kernel_size: int = REFERENCE_KERNEL
    keep_checkpoints: int = 2
    demo_per_class: int = 120
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.probes >= 1, f"--probes must be at least 1, got {self.probes}"),
            (
                0 < self.val_fraction < 1,
                f"--val-fraction must be between 0 and 1, got {self.val_fraction}",
            ),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (
                self.activation_dtype in ACTIVATION_DTYPES,
                f"--activation-dtype must be one of {', '.join(ACTIVATION_DTYPES)}",
            ),
            (self.keep_checkpoints >= 0, "--keep-checkpoints must be 0 (all) or more"),
            (self.demo_per_class >= 4, "--demo-per-class must be at least 4"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)

    @property
    def resolved_input_size(self) -> int:
        """The input size: as given, else 128 px for the demo data and 512 px for user data."""
        if self.input_size is not None:
            return self.input_size
        return DATA_INPUT_SIZE if self.data is not None else DEMO_INPUT_SIZE

    def to_json(self) -> dict[str, Any]:
        """The settings that shape the recorded run (paths and resume flags left out)."""
        data = asdict(self)
        for key in ("out", "resume", "cache_dir", "keep_checkpoints", "device"):
            data.pop(key)
        data["data"] = str(self.data) if self.data else "demo"
        data["input_size"] = self.resolved_input_size
        data["probe_images"] = [str(p) for p in self.probe_images]
        data["channels"] = list(self.channels)
        return data


FORMATS = ("gif", "mp4")
AUTO_GIF_MAX_SIDE = 256


def parse_formats(text: str) -> tuple[str, ...]:
    """``auto`` or a comma list of gif/mp4 -> the formats, in a fixed order."""
    if text == "auto":
        return ("auto",)
    chosen = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = chosen - set(FORMATS)
    if not chosen or unknown:
        raise OptionError(f"--formats {text!r}: use auto or a comma list of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


@dataclass(frozen=True)
class BuildConfig:
    """What ``build`` renders and where. ``probes`` are 1-based, as captions show them."""

    stores: tuple[Path, ...]
    out: Path = Path("site")
    formats: tuple[str, ...] = ("auto",)
    colormap: str = "seed"
    scale: str = "channel"
    layers: tuple[str, ...] | None = None
    probes: tuple[int, ...] | None = None
    channel_probes: int = 2
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    fps: float = 4.0
    max_side: int = 1024
    channel_side: int = 256
    gif_max_side: int = AUTO_GIF_MAX_SIDE

    def __post_init__(self) -> None:
        from generator.render.colormaps import check_colormap, check_scale_mode

        check_colormap(self.colormap)
        check_scale_mode(self.scale)
        for fmt in self.formats:
            if fmt not in (*FORMATS, "auto"):
                raise OptionError(f"--formats: unknown format {fmt!r}; use auto, gif, mp4")
        checks = [
            (self.jobs >= 1, f"--jobs must be at least 1, got {self.jobs}"),
            (self.fps > 0, f"--fps must be positive, got {self.fps}"),
            (self.channel_probes >= 0, "--channel-probes must be 0 or more"),
            (self.max_side >= 64, f"--max-side must be at least 64, got {self.max_side}"),
            (self.channel_side >= 32, "--channel-side must be at least 32"),
            (
                self.probes is None or all(p >= 1 for p in self.probes),
                "--probes are numbered from 1, as in the captions",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)

    @property
    def auto_formats(self) -> bool:
        return self.formats == ("auto",)
