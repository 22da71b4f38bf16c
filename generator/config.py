"""Settings of each command as frozen dataclasses: the one place for every option's
default, help text, choices and range.

``__main__`` builds each command's argument parser from these fields (``option`` puts
the help, parser and range into the field's metadata), and validation happens here, once,
so every entry point (CLI, tests, benchmarks) refuses the same bad values with the same
one-line ``OptionError`` naming the option.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from generator.architecture import REFERENCE_CHANNELS, REFERENCE_KERNEL, REFERENCE_MODEL
from generator.errors import OptionError
from generator.render.captions import MAX_FONT, strip_height
from generator.render.colormaps import COLORMAPS, SCALE_MODES
from generator.store import (
    ACTIVATION_DTYPES,
    StoreLocation,
    StoreURL,
    parse_storage_option,
    store_location,
)

DEMO_INPUT_SIZE = 128
DATA_INPUT_SIZE = 512
DEVICES = ("auto", "cpu", "cuda")
# The smallest frame side that leaves a picture of at least 64 px above a caption strip.
MIN_FRAME_SIDE = strip_height(MAX_FONT) + 64
MAX_FRAME_SIDE = 8192
UINT32_MAX = 2**32 - 1


def option(
    default: Any = MISSING,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    shown: str | None = None,
    local: bool = False,
    cli: dict[str, Any] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field that is also a command-line option ``--field-name``.

    ``parse`` turns the text into the value (``store_true`` flags have none); ``low``,
    ``high`` and ``positive`` bound a number (each element of a tuple), checked by
    ``check_ranges``; ``shown`` is the default as the help prints it; ``local`` marks a
    setting that is never published (paths, worker counts); ``cli`` holds extra argparse
    keywords (``metavar``, ``nargs``, ``required``).
    """
    metadata = {
        "help": help,
        "parse": parse,
        "choices": choices,
        "low": low,
        "high": high,
        "positive": positive,
        "shown": shown,
        "local": local,
        "cli": cli or {},
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_name(name: str) -> str:
    """``max_side`` -> ``--max-side``."""
    return "--" + name.replace("_", "-")


def check_ranges(config: Any) -> None:
    """Refuse a number outside its field's range (NaN and inf included), naming the option."""
    for f in fields(config):
        meta = f.metadata
        if not (
            meta.get("low") is not None or meta.get("high") is not None or meta.get("positive")
        ):
            continue
        value = getattr(config, f.name)
        for number in value if isinstance(value, tuple) else (value,):
            problem = _range_problem(number, meta)
            if problem:
                raise OptionError(f"{flag_name(f.name)} must be {problem}, got {number}")


def _range_problem(number: Any, meta: Any) -> str | None:
    if number is None:
        return None
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        return "a finite number"
    if meta["positive"] and number <= 0:
        return "positive"
    if meta["low"] is not None and number < meta["low"]:
        return f"at least {meta['low']:g}"
    if meta["high"] is not None and number > meta["high"]:
        return f"at most {meta['high']:g}"
    return None


def int_list(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``; anything else is an argparse error naming the option."""
    import argparse

    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def name_list(text: str) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) or None


def featviz_layer_list(text: str) -> tuple[str, ...]:
    """``--featviz-layers``: comma-separated layer names; ``none`` turns it off (())."""
    return () if text.strip().lower() == "none" else name_list(text) or ()


def default_cache_dir() -> Path:
    """Where generated demo data lives: $NETLAPSE_CACHE, else the XDG cache folder."""
    if os.environ.get("NETLAPSE_CACHE"):
        return Path(os.environ["NETLAPSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netlapse"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in the run's ``training`` attribute."""

    out: StoreLocation = option(
        help="the run store to create, e.g. runs/demo.zarr or s3://bucket/runs/demo.zarr "
        "(refused if it exists, unless --resume)",
        parse=store_location,
        local=True,
        cli={"required": True},
    )
    checkpoints: Path | None = option(
        None,
        help="local folder for the checkpoints of an --out in object storage "
        "(they go to DIR/<store name>.ckpt)",
        parse=Path,
        shown="the current folder",
        local=True,
        cli={"metavar": "DIR"},
    )
    storage_option: tuple[tuple[str, str], ...] = option(
        (),
        help="an object-storage client option for an --out URL, e.g. endpoint=http://HOST:9000 "
        "(repeatable; overrides the AWS_*/GOOGLE_*/AZURE_* environment variables)",
        parse=parse_storage_option,
        shown="none",
        local=True,
        cli={"action": "append", "metavar": "KEY=VALUE"},
    )
    data: Path | None = option(
        None, help="ImageFolder root; omit to use the demo data", parse=Path, shown="demo data"
    )
    epochs: int = option(10, help="epochs to train in total", parse=int, low=1, high=100_000)
    input_size: int | None = option(
        None,
        help="square input size in pixels",
        parse=int,
        high=4096,  # no low here: the architecture check names the minimum for the depth
        shown="128 for the demo data, 512 for --data",
    )
    batch_size: int = option(16, help="training batch size", parse=int, low=1, high=65_536)
    lr: float = option(1e-3, help="Adam learning rate", parse=float, positive=True, high=10)
    probes: int = option(
        8,
        help="probe images recorded each epoch, spread across classes from the validation split",
        parse=int,
        low=1,
        high=1000,
    )
    example_pool: int | None = option(
        None,
        help="validation images searched each epoch for every conv channel's top 9 "
        "(dataset examples); 0 turns them off",
        parse=int,
        low=0,
        high=100_000,
        shown="256, or the whole validation split if smaller",
    )
    val_fraction: float = option(
        0.2, help="share of each class held out for validation", parse=float
    )
    seed: int = option(
        0,
        help="seed for the split, shuffling, weights and demo data; "
        "same seed + data = identical store on CPU",
        parse=int,
        low=0,
        high=UINT32_MAX,
    )
    device: str = option("auto", help="where to train", parse=str, choices=DEVICES, local=True)
    resume: bool = option(
        False,
        help="continue the run in --out from its newest checkpoint, appending to the same store",
        local=True,
    )
    site: Path | None = option(
        None,
        help="keep a gallery in this folder current while training: rebuilt after each "
        "committed epoch (pages, charts and each layer's first-probe animations, at low CPU "
        "priority), complete when training ends",
        parse=Path,
        shown="none",
        local=True,
    )
    activation_dtype: str = option(
        "float16",
        help="float16 halves the store and keeps 3 significant digits",
        parse=str,
        choices=ACTIVATION_DTYPES,
    )
    probe_images: tuple[Path, ...] = option(
        (),
        help="record these images instead of picking probes",
        parse=Path,
        shown="picked from the data",
        cli={"nargs": "+", "metavar": "FILE"},
    )
    model: str = option(
        REFERENCE_MODEL,
        help="the network to train: reference (netlapse's CNN), a torchvision classifier "
        "name such as resnet18 or mobilenet_v3_small (untrained: weights=None, nothing is "
        "downloaded) or pkg.module:function, called with num_classes=; list torchvision's "
        'names with: python -c "import torchvision.models as m; print(m.list_models(module=m))"',
        parse=str,
    )
    channels: tuple[int, ...] = option(
        REFERENCE_CHANNELS,
        help="output channels per block of the reference CNN",
        parse=int_list,
        low=1,
        high=4096,
        cli={"metavar": "C1,C2,..."},
    )
    kernel_size: int = option(
        REFERENCE_KERNEL, help="conv kernel size of the reference CNN", parse=int, low=1, high=31
    )
    keep_checkpoints: int = option(
        2,
        help="newest checkpoints to keep beside the store; 0 keeps all",
        parse=int,
        low=0,
        high=100_000,
        local=True,
    )
    demo_per_class: int = option(
        120, help="demo images generated per class", parse=int, low=4, high=100_000
    )
    featviz_layers: tuple[str, ...] | None = option(
        None,
        help="conv layers whose channels (the first 64) get a feature visualization each "
        "epoch, e.g. block1,block2; none turns it off",
        parse=featviz_layer_list,
        shown="the first 2 conv layers",
    )
    featviz_steps: int = option(
        8,  # record.featviz.DEFAULT_STEPS (not imported: config stays torch-free; tested)
        help="optimisation steps per epoch of each feature visualization (4x at epoch 0)",
        parse=int,
        low=1,
        high=100_000,
    )
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        object.__setattr__(self, "probe_images", tuple(self.probe_images))
        object.__setattr__(self, "storage_option", tuple(map(tuple, self.storage_option)))
        self._place_checkpoints()
        check_ranges(self)
        checks = [
            (
                0 < self.val_fraction < 1,
                f"--val-fraction must be between 0 and 1, got {self.val_fraction}",
            ),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (
                self.activation_dtype in ACTIVATION_DTYPES,
                f"--activation-dtype must be one of {', '.join(ACTIVATION_DTYPES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)

    def _place_checkpoints(self) -> None:
        """A URL ``--out`` carries the local folder of its checkpoints (``--checkpoints``,
        else the current folder); a local store keeps them beside itself."""
        out = store_location(self.out)
        if isinstance(out, StoreURL):
            folder = Path(self.checkpoints) if self.checkpoints else Path.cwd()
            out = StoreURL(out.url, checkpoints=folder.absolute())
        elif self.checkpoints is not None:
            raise OptionError(
                f"--checkpoints {self.checkpoints}: only for an --out in object storage; a "
                "local store keeps its checkpoints beside it"
            )
        object.__setattr__(self, "out", out)

    @property
    def resolved_input_size(self) -> int:
        """The input size: as given, else 128 px for the demo data and 512 px for user data."""
        if self.input_size is not None:
            return self.input_size
        return DATA_INPUT_SIZE if self.data is not None else DEMO_INPUT_SIZE

    def to_json(self) -> dict[str, Any]:
        """The settings that shape the recorded run (paths and resume flags left out)."""
        data = asdict(self)
        for key in (
            "out",
            "resume",
            "cache_dir",
            "keep_checkpoints",
            "device",
            "checkpoints",
            "storage_option",
            "site",
        ):
            data.pop(key)
        data["data"] = str(self.data) if self.data else "demo"
        data["input_size"] = self.resolved_input_size
        data["probe_images"] = [str(p) for p in self.probe_images]
        data["channels"] = list(self.channels)
        if self.featviz_layers is not None:
            data["featviz_layers"] = list(self.featviz_layers)
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

    stores: tuple[StoreLocation, ...] = field(metadata={"local": True})
    out: Path = option(Path("site"), help="site folder", parse=Path, local=True)
    formats: tuple[str, ...] = option(
        ("auto",),
        help="auto | gif | mp4 | gif,mp4. auto: WebM (AV1) and an MP4 fallback at --max-side; "
        "plus, as a download to share, a GIF at most --gif-max-side px of each layer's grid "
        "and class probabilities for probe 1 (when selected), its kernels and feature "
        "visualizations",
        parse=parse_formats,
        shown="auto",
    )
    colormap: str = option(
        "seed",
        help="seed: red < 0 < blue on black; diverging: red < 0 < blue on white",
        parse=str,
        choices=COLORMAPS,
    )
    scale: str = option(
        "channel",
        help="which values share one colour scale (channel: one per channel over all epochs)",
        parse=str,
        choices=SCALE_MODES,
    )
    layers: tuple[str, ...] | None = option(
        None, help="only these layers, e.g. block1,block2", parse=name_list, shown="all"
    )
    probes: tuple[int, ...] | None = option(
        None,
        help="only these probes, numbered from 1",
        parse=int_list,
        low=1,
        high=100_000,
        shown="all",
    )
    channel_probes: int = option(
        1,
        help="how many of the selected probes get per-channel animations on the channel "
        "pages (each adds a WebM and an MP4 per paged channel; every probe is in the grids)",
        parse=int,
        low=0,
        high=100_000,
    )
    contact_probes: int = option(
        1,
        help="how many of the selected probes get a contact sheet (a layer's channels x "
        "chosen epochs as one lossless still; each is about 1 MB at 512 px)",
        parse=int,
        low=0,
        high=100_000,
    )
    channel_pages: int = option(
        32,
        help="conv channels per layer (the first N) that get their own page and per-channel "
        "animations; every channel is always in the layer's grid (each page adds about "
        "0.1 s of build time per probe on one core)",
        parse=int,
        low=0,
        high=100_000,
    )
    jobs: int = option(
        help="parallel worker processes",
        parse=int,
        low=1,
        high=1024,
        shown="all cores",
        local=True,
        default_factory=lambda: os.cpu_count() or 1,
    )
    scheduler: str | None = option(
        None,
        help="run the jobs on this dask cluster's workers instead of --jobs local processes, "
        "e.g. tcp://HOST:8786; each worker needs netlapse and reads the store itself, "
        "this process writes the site (needs netlapse[cluster])",
        parse=str,
        shown="local processes",
        local=True,
        cli={"metavar": "ADDRESS"},
    )
    live: bool = option(
        False,
        help="the run is still training: pages say so and reload when a newer build is "
        "there (train --site and Recorder(site=...) set it)",
        local=True,
    )
    fps: float = option(4.0, help="epochs per second", parse=float, low=0.1, high=60)
    max_side: int = option(
        1024,
        help="largest frame side in px; bigger grids are downscaled",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )
    channel_side: int = option(
        256,
        help="side of per-channel animations in px",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )
    gif_max_side: int = option(
        AUTO_GIF_MAX_SIDE,
        help="with --formats auto, the GIFs to share are rendered at most this big",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )

    storage_option: tuple[tuple[str, str], ...] = option(
        (),
        help="an object-storage client option for --store URLs, e.g. "
        "endpoint=http://HOST:9000 (repeatable)",
        parse=parse_storage_option,
        shown="none",
        local=True,
        cli={"action": "append", "metavar": "KEY=VALUE"},
    )

    def __post_init__(self) -> None:
        from generator.render.colormaps import check_colormap, check_scale_mode

        check_colormap(self.colormap)
        check_scale_mode(self.scale)
        for fmt in self.formats:
            if fmt not in (*FORMATS, "auto"):
                raise OptionError(f"--formats: unknown format {fmt!r}; use auto, gif, mp4")
        check_ranges(self)

    @property
    def auto_formats(self) -> bool:
        return self.formats == ("auto",)


@dataclass(frozen=True)
class IngestConfig:
    """How ``ingest`` turns a video into a class folder of square frames."""

    label: str = option(
        help="class name: the folder under --out", parse=str, cli={"required": True}
    )
    out: Path = option(help="dataset root (ImageFolder)", parse=Path, cli={"required": True})
    size: int = option(512, help="square crop size", parse=int, low=16, high=8192)
    every: int = option(1, help="keep every N-th frame", parse=int, low=1, high=10**9)
    dark_threshold: float = option(
        16.0,
        help="drop frames whose mean brightness (0-255) is below this",
        parse=float,
        low=0,
        high=255,
    )

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class ServeConfig:
    """Where ``serve`` serves the built site (always on 127.0.0.1)."""

    site: Path = option(Path("site"), help="the built site", parse=Path)
    port: int = option(8000, help="port; 0 picks a free one", parse=int, low=0, high=65_535)

    def __post_init__(self) -> None:
        check_ranges(self)
