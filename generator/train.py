"""The training loop: train an epoch -> evaluate -> record the probes -> append -> checkpoint.

Epoch 0 is recorded before the first update. The order inside an epoch matters for crash
safety: the store commits the epoch first and the checkpoint follows, so after a kill
``--resume`` restarts from the newest checkpoint, rewinds the store to it and re-trains
what was lost; shuffling is seeded per epoch, so the redone epochs are bit-identical. A run
killed before its first checkpoint only ever committed the untrained epoch 0, which the
seed reproduces, so ``--resume`` records it again. ``docs/reliability.md`` has the proof.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from generator.checkpoint import (
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from generator.config import TrainConfig
from generator.data import ImageFolderData, load_image_folder, make_demo_dataset, to_model_input
from generator.errors import OptionError, StoreError
from generator.faults import maybe_die
from generator.model import LOGITS_LAYER, NetlapseCNN, check_architecture
from generator.reader import open_run
from generator.recorder import record_probes, relative_change, snapshot_weights
from generator.store import EpochRecord, StoreWriter

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
    model: NetlapseCNN
    optimizer: torch.optim.Optimizer
    device: torch.device


def run_training(config: TrainConfig) -> Path:
    """Train (or resume) the run ``config.out`` and return the store's path."""
    if config.resume and not Path(config.out).exists():
        raise StoreError(f"{config.out}: no such store to resume; run without --resume to start it")
    session = _start_session(config)
    if config.resume:
        writer, first = _resume(session)
    else:
        writer, first = _create(session), 1
    try:
        probes = _probe_tensor(writer, session.device)
        previous = snapshot_weights(session.model.weights())
        for epoch in range(first, config.epochs + 1):
            scalars = _train_one_epoch(session, epoch)
            previous = _record_epoch(session, writer, probes, epoch, scalars, previous)
        writer.trim()
        log.info("%s: %d epochs committed", config.out, writer.epochs_committed)
    finally:
        writer.close()
    return config.out


def _start_session(config: TrainConfig) -> Session:
    # The class count is checked once the data is loaded; the rest before any work.
    check_architecture(2, config.resolved_input_size, config.channels, config.kernel_size)
    root = config.data or make_demo_dataset(
        config.cache_dir,
        seed=config.seed,
        per_class=config.demo_per_class,
        size=config.resolved_input_size,
    )
    dataset = load_image_folder(root, config.resolved_input_size)
    train_idx, val_idx = split_indices(dataset_labels(dataset), config.val_fraction, config.seed)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = NetlapseCNN(
        len(dataset.classes), config.resolved_input_size, config.channels, config.kernel_size
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    log.info(
        "data %s: %d classes, %d train / %d validation images (%d skipped)",
        root,
        len(dataset.classes),
        len(train_idx),
        len(val_idx),
        dataset.skipped,
    )
    return Session(config, dataset, train_idx, val_idx, model, optimizer, device)


def dataset_labels(dataset: ImageFolderData) -> np.ndarray:
    return np.array([label for _, label in dataset.samples], dtype=np.int64)


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
    """Probes from --probe-images, else spread round-robin over classes of the val split."""
    dataset, count = session.dataset, session.config.probes
    if session.config.probe_images:
        return _probes_from_files(dataset, session.config.probe_images)
    labels = dataset_labels(dataset)[session.val_idx]
    by_class = [list(session.val_idx[labels == cls]) for cls in range(len(dataset.classes))]
    chosen: list[int] = []
    while len(chosen) < count and any(by_class):
        for members in by_class:
            if members and len(chosen) < count:
                chosen.append(int(members.pop(0)))
    if len(chosen) < count:
        log.warning(
            "only %d validation images: using %d probes, not %d", len(chosen), len(chosen), count
        )
    images = np.stack([dataset[i][0].numpy() for i in chosen])
    sources = [_relative(dataset.samples[i][0], dataset.root) for i in chosen]
    return Probes(images, dataset_labels(dataset)[chosen], sources)


def _probes_from_files(dataset: ImageFolderData, files: tuple[Path, ...]) -> Probes:
    """Probe images given by path; the label is the parent folder's class, else -1."""
    images = np.stack([dataset.load_uint8(Path(f)) for f in files])
    labels = [
        dataset.classes.index(Path(f).parent.name) if Path(f).parent.name in dataset.classes else -1
        for f in files
    ]
    return Probes(images, np.array(labels, dtype=np.int64), [str(f) for f in files])


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _create(session: Session) -> StoreWriter:
    """A new store, with epoch 0 (the untrained network) recorded and checkpointed."""
    config, model = session.config, session.model
    probes = choose_probes(session)
    writer = StoreWriter.create(
        config.out,
        class_names=session.dataset.classes,
        layers=model.layer_specs(),
        input_size=config.resolved_input_size,
        training=config.to_json(),
        probe_images=probes.images,
        probe_labels=probes.labels,
        probe_sources=probes.sources,
        activation_dtype=config.activation_dtype,
    )
    try:
        _record_epoch(session, writer, _probe_tensor(writer, session.device), 0, {}, None)
    except BaseException:
        writer.close()
        raise
    return writer


def _resume(session: Session) -> tuple[StoreWriter, int]:
    """Reopen the store, check it matches this model, load the newest usable checkpoint.

    Returns the writer and the first epoch to train. A checkpoint is usable if its epoch
    is committed in the store; everything after it is rewound and trained again.
    """
    config = session.config
    writer = StoreWriter.open_for_resume(config.out)
    try:
        _check_compatible(writer, session)
        remove_stale_temps(config.out)
        usable = [e for e in list_checkpoints(config.out) if e < writer.epochs_committed]
        if not usable:
            return writer, _restart(session, writer)
        _load_state(session, list_checkpoints(config.out)[usable[-1]])
    except BaseException:
        writer.close()
        raise
    writer.rewind(usable[-1] + 1)
    log.info("resuming %s after epoch %d", config.out, usable[-1])
    return writer, usable[-1] + 1


def _restart(session: Session, writer: StoreWriter) -> int:
    """No checkpoint yet: the run died during epoch 0, which the seed reproduces exactly,
    so record it again. With trained epochs committed that would lose them: refuse."""
    config = session.config
    if writer.epochs_committed > 1:
        raise StoreError(
            f"{config.out}: no checkpoint in {checkpoint_dir(config.out)} to "
            f"resume its {writer.epochs_committed} epochs from; delete the store "
            "to start again, or train into another --out"
        )
    log.info("%s: no checkpoint yet; recording epoch 0 again", config.out)
    writer.rewind(0)
    _record_epoch(session, writer, _probe_tensor(writer, session.device), 0, {}, None)
    return 1


def _load_state(session: Session, path: Path) -> None:
    """Model and optimizer state from a checkpoint, or a one-line error naming the file."""
    state = load_checkpoint(path)
    try:
        session.model.load_state_dict(state["model"])
        session.optimizer.load_state_dict(state["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"{path}: the checkpoint does not fit this model ({first}); delete "
            "it to resume from the one before"
        ) from exc


COMPATIBLE = {
    "class_names": "set of classes",
    "input_size": "input size",
    "layers": "network (--channels, --kernel-size)",
    "activation_dtype": "activation dtype",
}


# Settings that change the numbers but not the shapes: a resumed run with another value
# would no longer be the run its ``training`` attribute describes.
RESUMED_SETTINGS = ("seed", "lr", "batch_size", "val_fraction")


def _check_compatible(writer: StoreWriter, session: Session) -> None:
    """Refuse to append epochs of another model or data to a store (one line, naming how
    the run was made)."""
    stored = writer.attrs
    _check_settings(session.config, stored.get("training", {}))
    ours = {
        "class_names": session.dataset.classes,
        "input_size": session.config.resolved_input_size,
        "layers": [layer.to_json() for layer in session.model.layer_specs()],
        "activation_dtype": session.config.activation_dtype,
    }
    for key, value in ours.items():
        if stored.get(key) != value:
            training = stored.get("training", {})
            raise StoreError(
                f"{session.config.out}: --resume with a different {COMPATIBLE[key]} "
                f"than the run was made with (it used --input-size {training.get('input_size')}"
                f" --channels {','.join(map(str, training.get('channels', [])))} --data "
                f"{training.get('data')}); pass the same options"
            )


def _check_settings(config: TrainConfig, stored: dict) -> None:
    ours = config.to_json()
    keys = RESUMED_SETTINGS + (("demo_per_class",) if stored.get("data") == "demo" else ())
    for key in keys:
        if key in stored and stored[key] != ours[key]:
            option = "--" + key.replace("_", "-")
            raise StoreError(
                f"{config.out}: --resume with a different {option} "
                f"({ours[key]}) than the run was made with ({stored[key]}); "
                "pass the same value"
            )


def _probe_tensor(writer: StoreWriter, device: torch.device) -> torch.Tensor:
    """The probes exactly as stored (uint8), as model input: what every epoch records."""
    return to_model_input(torch.from_numpy(open_run(writer.path).probe_images)).to(device)


def _loader(session: Session, indices: np.ndarray, epoch: int | None) -> DataLoader:
    """Batches of (uint8 images, labels); shuffled with a per-epoch seed when training."""
    subset = Subset(session.dataset, indices.tolist())
    config = session.config
    if epoch is None:
        return DataLoader(subset, batch_size=config.batch_size, shuffle=False)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    # BatchNorm cannot train on a batch of one: drop such a last batch.
    drop_last = len(subset) % config.batch_size == 1
    return DataLoader(
        subset, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=drop_last
    )


def _train_one_epoch(session: Session, epoch: int) -> dict[str, float]:
    model, optimizer, loss_fn = session.model, session.optimizer, nn.CrossEntropyLoss()
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(
        _loader(session, session.train_idx, epoch),
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=None,
    )
    for batch, (images, labels) in enumerate(bar):
        inputs, labels = to_model_input(images).to(session.device), labels.to(session.device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = loss_fn(logits, labels)
        loss.backward()
        maybe_die("train.batch", epoch, batch)
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    bar.close()
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


@torch.no_grad()
def evaluate(session: Session) -> tuple[dict[str, float], np.ndarray]:
    """Validation loss and accuracy, and the (K, K) confusion matrix (rows = true class)."""
    model, k = session.model, len(session.dataset.classes)
    model.eval()
    loss_sum, confusion = 0.0, torch.zeros(k * k, dtype=torch.int64)
    for images, labels in _loader(session, session.val_idx, None):
        logits = model(to_model_input(images).to(session.device)).cpu()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        confusion += torch.bincount(labels * k + logits.argmax(1), minlength=k * k)
    matrix = confusion.reshape(k, k).numpy()
    total = max(int(matrix.sum()), 1)
    return ({"val_loss": loss_sum / total, "val_accuracy": float(np.trace(matrix)) / total}, matrix)


def _record_epoch(
    session: Session,
    writer: StoreWriter,
    probes: torch.Tensor,
    epoch: int,
    scalars: dict[str, float],
    previous: dict[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """Evaluate, capture the probes, append the epoch, checkpoint; return the new weights."""
    model = session.model
    val_scalars, confusion = evaluate(session)
    capture = record_probes(
        model, model.recorded_modules(), probes, LOGITS_LAYER, session.config.activation_dtype
    )
    weights = model.weights()
    record = EpochRecord(
        activations=capture.activations,
        channel_stats=capture.channel_stats,
        kernels={
            name: block.conv.weight.detach().float().cpu().numpy() for name, block in model.blocks()
        },
        weight_change=relative_change(weights, previous),
        probe_probs=capture.probs,
        confusion=confusion,
        scalars={**scalars, **val_scalars},
    )
    writer.write_epoch(epoch, record)
    maybe_die("train.committed", epoch)
    save_checkpoint(
        session.config.out,
        epoch,
        {"epoch": epoch, "model": model.state_dict(), "optimizer": session.optimizer.state_dict()},
        session.config.keep_checkpoints,
    )
    maybe_die("train.epoch_end", epoch)
    _log_summary(epoch, record.scalars)
    return snapshot_weights(weights)


def _log_summary(epoch: int, scalars: dict[str, float]) -> None:
    train = (
        f"train loss {scalars['train_loss']:.4f} acc {scalars['train_accuracy']:.3f}"
        if "train_loss" in scalars
        else "untrained"
    )
    log.info(
        "epoch %d: %s | val loss %.4f acc %.3f",
        epoch,
        train,
        scalars["val_loss"],
        scalars["val_accuracy"],
    )
