"""``train``'s settings: everything a training run depends on, stored in the run's
``training`` attribute (``to_json``), so a store says how it was made."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator import defaults
from generator.architecture import REFERENCE_CHANNELS, REFERENCE_KERNEL, REFERENCE_MODEL
from generator.config.fields import (
    check_ranges,
    featviz_layer_list,
    int_list,
    option,
    storage_options,
)
from generator.errors import OptionError
from generator.store import ACTIVATION_DTYPES, StoreLocation, StoreURL, store_location

DEVICES = ("auto", "cpu", "cuda")
UINT32_MAX = 2**32 - 1


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
    storage_option: tuple[tuple[str, str], ...] = storage_options(
        "an object-storage client option for an --out URL, e.g. endpoint=http://HOST:9000 "
        "(repeatable; overrides the AWS_*/GOOGLE_*/AZURE_* environment variables)"
    )
    data: Path | None = option(
        None, help="ImageFolder root; omit to use the demo data", parse=Path, shown="demo data"
    )
    epochs: int = option(
        defaults.EPOCHS, help="epochs to train in total", parse=int, low=1, high=100_000
    )
    input_size: int | None = option(
        None,
        help="square input size in pixels",
        parse=int,
        high=4096,  # no low here: the architecture check names the minimum for the depth
        shown=f"{defaults.DEMO_INPUT_SIZE} for the demo data, "
        f"{defaults.DATA_INPUT_SIZE} for --data",
    )
    batch_size: int = option(
        defaults.BATCH_SIZE, help="training batch size", parse=int, low=1, high=65_536
    )
    lr: float = option(
        defaults.LEARNING_RATE, help="Adam learning rate", parse=float, positive=True, high=10
    )
    probes: int = option(
        defaults.PROBE_COUNT,
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
        defaults.VAL_FRACTION, help="share of each class held out for validation", parse=float
    )
    seed: int = option(
        defaults.SEED,
        help="seed for the split, shuffling, weights and demo data; "
        "same seed + data = identical store on CPU",
        parse=int,
        low=0,
        high=UINT32_MAX,
    )
    device: str = option(
        defaults.DEVICE, help="where to train", parse=str, choices=DEVICES, local=True
    )
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
        defaults.ACTIVATION_DTYPE,
        help="float16 halves the store and keeps 3 significant digits",
        parse=str,
        choices=ACTIVATION_DTYPES,
    )
    kernel_dtype: str = option(
        defaults.KERNEL_DTYPE,
        help="how conv kernels are stored: float16 halves the store",
        parse=str,
        choices=ACTIVATION_DTYPES,
    )
    overhead: float = option(
        defaults.TRAIN_OVERHEAD,
        help="recording's share of the training time; feature visualization and dataset "
        "examples adapt (0 = no limit)",
        parse=float,
    )
    no_gradients: bool = option(
        not defaults.GRADIENTS,
        help="record no gradient norms, update/weight ratios or weight, activation and "
        "gradient histograms (gathered by hooks during training otherwise)",
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
        defaults.KEEP_CHECKPOINTS,
        help="newest checkpoints to keep beside the store; 0 keeps all",
        parse=int,
        low=0,
        high=100_000,
        local=True,
    )
    demo_per_class: int = option(
        defaults.DEMO_PER_CLASS,
        help="demo images generated per class",
        parse=int,
        low=4,
        high=100_000,
    )
    featviz_layers: tuple[str, ...] | None = option(
        None,
        help="conv layers whose channels (the first 64) get a feature visualization each "
        "epoch, e.g. block1,block2; none turns it off",
        parse=featviz_layer_list,
        shown="the first 2 conv layers",
    )
    featviz_steps: int = option(
        defaults.FEATVIZ_STEPS,
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
            (
                self.kernel_dtype in ACTIVATION_DTYPES,
                f"--kernel-dtype must be one of {', '.join(ACTIVATION_DTYPES)}",
            ),
            (
                0 <= self.overhead <= 1,
                f"--overhead must be between 0 (no limit) and 1, got {self.overhead}",
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
        return defaults.DATA_INPUT_SIZE if self.data is not None else defaults.DEMO_INPUT_SIZE

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
