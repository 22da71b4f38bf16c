"""What a training run sets up before its first epoch: the ``--out`` checks, the data and
its split, the network (``--model``), the optimizer and the probe images."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generator.architecture import REFERENCE_MODEL
from generator.config import TrainConfig
from generator.data import (
    ImageFolderData,
    load_image_folder,
    make_demo_dataset,
    storable_text,
    to_model_input,
)
from generator.errors import (
    DataError,
    ModelOutputError,
    OptionError,
    StoreError,
    StoreNotFoundError,
)
from generator.model import (
    MODEL_LIST_HINT,
    NetlapseCNN,
    build_model,
    check_architecture,
    check_model_name,
)
from generator.record import (
    FeatvizSettings,
    describe_layers,
    featviz_spec,
    pick_indices,
    pick_logits,
    untouched,
)
from generator.store import LayerSpec, StoreURL, check_remote_out
from generator.train.checkpoint import SUFFIX
from generator.train.distributed import Ranks, rank_device, wrap

log = logging.getLogger(__name__)


@dataclass
class Probes:
    """The fixed probe images: (P, 3, S, S) uint8, labels (P,), and where each came from."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]


@dataclass
class Session:
    """What one training run holds while it loops over epochs."""

    config: TrainConfig
    dataset: ImageFolderData
    train_idx: np.ndarray
    val_idx: np.ndarray
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    layers: list[LayerSpec]
    ranks: Ranks = field(default_factory=Ranks.single)
    parallel: nn.Module | None = None  # DistributedDataParallel(model) under torchrun

    @property
    def trained(self) -> nn.Module:
        """What the training step calls: the DDP wrapper under torchrun, else ``model``.
        Everything else (evaluation, recording, checkpoints) uses ``model`` itself."""
        return self.parallel if self.parallel is not None else self.model

    def go_parallel(self) -> None:
        """Wrap the network for DDP once every rank holds its starting weights."""
        self.parallel = (
            wrap(self.model, self.ranks, self.device) if self.ranks.distributed else None
        )


def check_out(config: TrainConfig) -> None:
    """Refuse an ``--out`` that cannot hold this run, before any data is loaded: one
    inside ``--data`` (the store would be read as a class of its own dataset), and, for a
    new run, anything already there (a run store: resume it; anything else: never
    written into). A ``--site`` that the gallery's build would refuse is refused here too,
    before any training."""
    if config.site is not None:
        from generator.build.rebuilds import check_site  # only a --site run loads the build

        check_site(config.out, config.site)
    if isinstance(config.out, StoreURL):
        check_remote_out(config.out, resume=config.resume)
        return
    out = Path(config.out)
    if config.data is not None and _inside(out, Path(config.data)):
        raise OptionError(
            f"--out {out} is inside --data {config.data}: the run and its checkpoints "
            "would be read as a class of the dataset; choose an --out outside it"
        )
    if out.name.endswith(SUFFIX) or f"{SUFFIX}.orphan-" in out.name:
        raise OptionError(
            f"--out {out}: names ending in {SUFFIX} are where runs keep their checkpoints; "
            "choose another name such as runs/mine.zarr"
        )
    if config.resume:
        if not out.exists():
            raise StoreNotFoundError(
                f"{out}: no such store to resume; run without --resume to start it"
            )
        return
    if (out / "zarr.json").is_file():
        raise StoreError(
            f"{out}: already exists; pass --resume to continue that run "
            "or choose another --out (a run is never overwritten)"
        )
    if out.exists() or out.is_symlink():
        kind = "folder" if out.is_dir() else "file"
        raise StoreError(
            f"{out}: an existing {kind} that is not a run store; choose a new path for "
            "--out (netlapse never writes into an existing folder)"
        )


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or below it, through links (``realpath`` never raises on a
    link loop; the data loader reports that one)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def check_model_options(config: TrainConfig) -> None:
    """The checks that need no data (``--model``, ``--input-size`` for the reference
    network), so a bad option is refused before the demo data is made or loaded."""
    if config.model == REFERENCE_MODEL:
        check_architecture(2, config.resolved_input_size, config.channels, config.kernel_size)
    else:
        check_model_name(config.model)


def start_session(config: TrainConfig, *, ranks: Ranks | None = None) -> Session:
    """Load the data, split it, and build the seeded network and its optimizer (the same
    on every rank: each builds it from the seed)."""
    ranks = ranks or Ranks.single()
    check_model_options(config)
    root = config.data or make_demo_dataset(
        config.cache_dir,
        seed=config.seed,
        per_class=config.demo_per_class,
        size=config.resolved_input_size,
    )
    dataset = load_image_folder(root, config.resolved_input_size)
    check_two_images_per_class(dataset)
    train_idx, val_idx = split_indices(dataset_labels(dataset), config.val_fraction, config.seed)
    device = rank_device(pick_device(config.device), ranks)
    torch.manual_seed(config.seed)
    model = make_network(config, len(dataset.classes))
    layers = recorded_layers(model, config.resolved_input_size)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    log.info(
        "data %s: %d classes, %d train / %d validation images (%d skipped)",
        root,
        len(dataset.classes),
        len(train_idx),
        len(val_idx),
        dataset.skipped,
    )
    # refuse a bad --featviz-layers now, by its option name, before any store exists
    featviz_spec(
        layers,
        FeatvizSettings(config.featviz_layers, config.featviz_steps),
        option="--featviz-layers",
    )
    return Session(config, dataset, train_idx, val_idx, model, optimizer, device, layers, ranks)


def make_network(config: TrainConfig, num_classes: int) -> nn.Module:
    """The untrained network ``--model`` names, checked to turn a batch of input-size
    images into (N, classes) logits: one line naming ``--model`` or ``--input-size`` if not."""
    if config.model == REFERENCE_MODEL:
        return NetlapseCNN(
            num_classes, config.resolved_input_size, config.channels, config.kernel_size
        )
    model = build_model(config.model, num_classes=num_classes)
    check_classifier(model, name=config.model, size=config.resolved_input_size, k=num_classes)
    return model


def check_classifier(model: nn.Module, *, name: str, size: int, k: int) -> None:
    """One dry forward of two blank images, changing nothing (``untouched``)."""
    try:
        with untouched(model):
            output = model(torch.zeros(2, 3, size, size))
        logits = logits_of(output)
    except ModelOutputError as exc:
        raise OptionError(f"--model {name}: {exc}") from None
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise OptionError(
            f"--model {name} cannot run on --input-size {size} images ({first}); "
            "pass a larger --input-size"
        ) from None
    if tuple(logits.shape) != (2, k):
        shown = tuple(logits.shape)
        raise OptionError(
            f"--model {name} returns {shown} for 2 images, not class logits (2, {k}); "
            f"pass an image classifier ({MODEL_LIST_HINT})"
        )


def logits_of(output: object) -> torch.Tensor:
    """The logits of a model's output (``pick_logits``: the tensor itself, its ``logits``,
    or its one (N, classes) item), as the Recorder finds them; one line if none."""
    return pick_logits(output)


def recorded_layers(model: nn.Module, input_size: int) -> list[LayerSpec]:
    """The layers each epoch records: the reference CNN's own blocks and head, or what the
    Recorder chooses for any other model (its default layers)."""
    if isinstance(model, NetlapseCNN):
        return model.layer_specs()
    return describe_layers(model, torch.zeros(1, 3, input_size, input_size))[1]


def dataset_labels(dataset: ImageFolderData) -> np.ndarray:
    return np.array([label for _, label in dataset.samples], dtype=np.int64)


def check_two_images_per_class(dataset: ImageFolderData) -> None:
    """A class of one image cannot be on both sides of the validation split: name its
    folder (``split_indices`` only knows class numbers)."""
    counts = np.bincount(dataset_labels(dataset), minlength=len(dataset.classes))
    for index in np.flatnonzero(counts < 2):
        folder = Path(dataset.root, dataset.classes[index])
        raise DataError(
            f"class folder {folder} has a single image; a validation split needs at least "
            "2 per class, so add another image to it or remove the folder"
        )


def split_indices(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded train/validation split: every class has images on both sides."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        if n_val < 1:
            raise OptionError(f"class {cls} has a single image; a validation split needs 2")
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.concatenate(val)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA device is available; use --device cpu")
    return torch.device(name)


def choose_probes(session: Session) -> Probes:
    """Probes from --probe-images, else spread round-robin over the classes of the
    validation split, picked as the Recorder picks from a dataset (``pick_indices``)."""
    dataset, count = session.dataset, session.config.probes
    if session.config.probe_images:
        return _probes_from_files(dataset, session.config.probe_images)
    labels = dataset_labels(dataset)[session.val_idx]
    picked = pick_indices(labels.tolist(), len(labels), count)
    chosen = [int(session.val_idx[position]) for position in picked]
    if len(chosen) < count:
        log.warning(
            "only %d validation images: using %d probes, not %d", len(chosen), len(chosen), count
        )
    images = np.stack([dataset[i][0].numpy() for i in chosen])
    sources = [storable_text(_relative(dataset.samples[i][0], dataset.root)) for i in chosen]
    return Probes(images, dataset_labels(dataset)[chosen], sources)


def _probes_from_files(dataset: ImageFolderData, files: tuple[Path, ...]) -> Probes:
    """Probe images given by path; the label is the parent folder's class, else -1."""
    images = np.stack([dataset.load_uint8(Path(f)) for f in files])
    labels = [
        dataset.classes.index(Path(f).parent.name) if Path(f).parent.name in dataset.classes else -1
        for f in files
    ]
    sources = [storable_text(str(f)) for f in files]
    return Probes(images, np.array(labels, dtype=np.int64), sources)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def model_input(images: torch.Tensor, session: Session) -> torch.Tensor:
    """A batch of uint8 images as the network's input on its device."""
    return to_model_input(images).to(session.device)
