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
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from generator.checkpoint import (
    SUFFIX,
    check_owner,
    checkpoint_dir,
    load_checkpoint,
    move_to_current_layout,
    remove_stale_temps,
    resumable_checkpoints,
    save_checkpoint,
    set_aside_orphans,
)
from generator.config import TrainConfig
from generator.data import (
    ImageFolderData,
    load_image_folder,
    make_demo_dataset,
    storable,
    storable_text,
    to_model_input,
)
from generator.errors import DataError, OptionError, StoreError
from generator.faults import maybe_die
from generator.model import LOGITS_LAYER, NetlapseCNN, check_architecture
from generator.reader import open_run
from generator.record.examples import ExamplePool, resumed_pool, split_pool, top_examples
from generator.record.featviz import (
    FeatureVisualizer,
    FeatvizSettings,
    follow_store,
    visualizer_for,
)
from generator.recorder import record_probes, relative_change, snapshot_weights
from generator.storage import StoreURL
from generator.store import EpochRecord, ExamplePoolRecord, StoreWriter
from generator.storefiles import check_remote_out

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
    featviz: FeatureVisualizer | None = None
    examples: ExamplePool | None = None  # dataset examples' pool (--example-pool)


def run_training(config: TrainConfig) -> Path:
    """Train (or resume) the run ``config.out`` and return the store's path."""
    check_out(config)
    if config.resume:
        session, writer, first = _reopen(config)
    else:
        session = _start_session(config)
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


def check_out(config: TrainConfig) -> None:
    """Refuse an ``--out`` that cannot hold this run, before any data is loaded: one
    inside ``--data`` (the store would be read as a class of its own dataset), and, for a
    new run, anything already there (a run store: resume it; anything else: never
    written into)."""
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
            raise StoreError(f"{out}: no such store to resume; run without --resume to start it")
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
    check_two_images_per_class(dataset)
    train_idx, val_idx = split_indices(dataset_labels(dataset), config.val_fraction, config.seed)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = NetlapseCNN(
        len(dataset.classes), config.resolved_input_size, config.channels, config.kernel_size
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    featviz = visualizer_for(
        model,
        model.layer_specs(),
        FeatvizSettings(config.featviz_layers, config.featviz_steps, seed=config.seed),
        transform=to_model_input,
        option="--featviz-layers",
    )
    log.info(
        "data %s: %d classes, %d train / %d validation images (%d skipped)",
        root,
        len(dataset.classes),
        len(train_idx),
        len(val_idx),
        dataset.skipped,
    )
    return Session(config, dataset, train_idx, val_idx, model, optimizer, device, featviz)


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


def _create(session: Session) -> StoreWriter:
    """A new store, with epoch 0 (the untrained network) recorded and checkpointed.

    A checkpoint folder already at its place belongs to a run whose store was deleted:
    it is moved aside first, so this run never resumes from or prunes it."""
    config, model = session.config, session.model
    probes = choose_probes(session)
    session.examples = split_pool(session.dataset, session.val_idx, config.example_pool)
    set_aside_orphans(config.out)
    writer = StoreWriter.create(
        config.out,
        class_names=session.dataset.class_names,
        layers=model.layer_specs(),
        input_size=config.resolved_input_size,
        training=storable(config.to_json()),
        probe_images=probes.images,
        probe_labels=probes.labels,
        probe_sources=probes.sources,
        activation_dtype=config.activation_dtype,
        featviz=session.featviz.spec if session.featviz else None,
        example_pool=session.examples and ExamplePoolRecord(*session.examples.stored()),
    )
    try:
        _record_epoch(session, writer, _probe_tensor(writer, session.device), 0, {}, None)
    except BaseException:
        writer.close()
        raise
    return writer


def _reopen(config: TrainConfig) -> tuple[Session, StoreWriter, int]:
    """Open the store for ``--resume``: refuse settings that cannot change before the data
    is loaded, then load the newest checkpoint and record what this resume changed."""
    writer = StoreWriter.open_for_resume(config.out)
    try:
        stored = dict(writer.attrs.get("training", {}))
        changes = resume_changes(config, stored, committed=writer.epochs_committed)
        session = _start_session(config)
        _check_compatible(writer, session)
        session.featviz = follow_store(session.featviz, writer.attrs.get("featviz"))
        session.examples = resumed_pool(None, writer.example_pool())
        first = _resume(session, writer)
        if session.featviz is not None:  # continue from the images of the epoch before
            run = open_run(config.out, verify=False)
            spec = session.featviz.spec
            session.featviz.warm_start({n: run.featviz(n, first - 1) for n in spec.channels})
        if changes:
            writer.update_training(with_resume(stored, changes, first=first))
    except BaseException:
        writer.close()
        raise
    return session, writer, first


def _resume(session: Session, writer: StoreWriter) -> int:
    """Load the newest usable checkpoint and return the first epoch to train.

    A checkpoint is usable if its epoch is committed in the store; everything after it is
    rewound and trained again. One of a later epoch cannot be this run's (a checkpoint is
    written after its epoch's commit, and a rewind never passes one): another run's.
    """
    config = session.config
    remove_stale_temps(config.out)
    checkpoints = resumable_checkpoints(
        config.out, made_before_run_ids="run_id" not in writer.attrs
    )
    committed = writer.epochs_committed
    later = [epoch for epoch in checkpoints if epoch >= committed]
    if later:
        path = checkpoints[later[0]]
        raise StoreError(
            f"{path}: a checkpoint of epoch {later[0]}, but {config.out} has only "
            f"{committed} epochs committed: it belongs to another run; move "
            f"{path.parent} aside and --resume again, or train into another --out"
        )
    if not checkpoints:
        return _restart(session, writer)
    epoch = max(checkpoints)
    _load_state(session, writer, checkpoints[epoch], epoch)
    move_to_current_layout(config.out, checkpoints[epoch])
    writer.rewind(epoch + 1)
    log.info("resuming %s after epoch %d", config.out, epoch)
    return epoch + 1


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


def _load_state(session: Session, writer: StoreWriter, path: Path, epoch: int) -> None:
    """Model and optimizer state from this store's checkpoint of ``epoch``, or a one-line
    error naming the file: of another run, of another network, or not loadable."""
    state = load_checkpoint(path)
    check_owner(path, state, store=session.config.out, run_id=writer.attrs.get("run_id"))
    problem = architecture_problem(session.model.state_dict(), state.get("model"))
    if problem:
        raise StoreError(
            f"{path}: holds the weights of another network ({problem}), not this run's; "
            f"move {path.parent} aside and --resume again, or train into another --out"
        )
    try:
        session.model.load_state_dict(state["model"])
        session.optimizer.load_state_dict(state["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"{path}: the checkpoint does not fit this model ({first[:200]}); delete "
            "it to resume from the one before"
        ) from exc
    _check_recorded_kernels(session, path, epoch)


def architecture_problem(ours: dict[str, torch.Tensor], theirs: object) -> str | None:
    """The first way a checkpoint's model weights differ in shape from this network's."""
    if not isinstance(theirs, dict):
        return "it holds no model weights"
    missing, extra = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    if missing or extra:
        return f"{len(missing)} weights missing, {len(extra)} unknown, e.g. {(missing or extra)[0]}"
    for key, tensor in ours.items():
        other = theirs[key]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = list(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"{key} is {shape}, this network's is {list(tensor.shape)}"
    return None


def _check_recorded_kernels(session: Session, path: Path, epoch: int) -> None:
    """The loaded weights must be the ones the store recorded at ``epoch``: binds a
    checkpoint to its store by content too, also for stores made before ``run_id``."""
    run = open_run(session.config.out)
    for name, kernel in conv_kernels(session.model).items():
        if not np.array_equal(run.kernels(name, epoch), kernel, equal_nan=True):
            raise StoreError(
                f"{path}: its {name} weights differ from those {session.config.out} recorded "
                f"at epoch {epoch}: it belongs to another run; move {path.parent} aside and "
                "--resume again, or train into another --out"
            )


def conv_kernels(model: NetlapseCNN) -> dict[str, np.ndarray]:
    """(O, I, kh, kw) float32 weights of every conv block: what each epoch records."""
    return {
        name: block.conv.weight.detach().float().cpu().numpy() for name, block in model.blocks()
    }


COMPATIBLE = {
    "class_names": "set of classes",
    "input_size": "input size",
    "layers": "network (--channels, --kernel-size)",
    "activation_dtype": "activation dtype",
}


# What a resumed run may change; the change is recorded in ``training.resumes``. Every
# other setting in ``training`` shapes the numbers or the arrays, so a resumed run with
# another value would no longer be the run the store describes: refused.
CHANGEABLE_ON_RESUME = ("epochs",)


def _check_compatible(writer: StoreWriter, session: Session) -> None:
    """Refuse to append epochs of another model or data to a store (one line, naming how
    the run was made)."""
    stored = writer.attrs
    ours = {
        "class_names": session.dataset.class_names,
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


def resume_changes(
    config: TrainConfig, stored: dict[str, object], *, committed: int
) -> dict[str, tuple[object, object]]:
    """Check ``--resume``'s settings against the stored ones: refuse (one line naming the
    option and the stored value) any that cannot change; return the changes to record."""
    ours = storable(config.to_json())
    changes = {}
    for key, value in ours.items():
        if key not in stored or _same_setting(key, stored[key], value, stored):
            continue
        option = "--" + key.replace("_", "-")
        if key not in CHANGEABLE_ON_RESUME:
            raise StoreError(
                f"{config.out}: --resume with a different {option} ({_shown(value)}) than "
                f"the run was made with ({_shown(stored[key])}); pass the same value"
            )
        changes[key] = (stored[key], value)
    if config.epochs < committed - 1:
        raise StoreError(
            f"{config.out}: --resume with --epochs {config.epochs}, but the run has "
            f"already trained {committed - 1}; pass --epochs {committed - 1} or more"
        )
    return changes


def _same_setting(key: str, stored: object, ours: object, training: dict[str, object]) -> bool:
    if key == "demo_per_class" and training.get("data") != "demo":
        return True  # only the demo data is made from it
    if key == "data" and stored != ours and "demo" not in (stored, ours):
        return os.path.realpath(str(stored)) == os.path.realpath(str(ours))  # another spelling
    return stored == ours


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def with_resume(
    training: dict[str, object], changes: dict[str, tuple[object, object]], *, first: int
) -> dict[str, object]:
    """``training`` with the new values, and the resume appended to ``training.resumes``
    (the first epoch it trained and each change as {"from", "to"})."""
    resumes = list(training.get("resumes", []))  # type: ignore[call-overload]
    resumes.append(
        {
            "first_epoch": first,
            "changed": {key: {"from": old, "to": new} for key, (old, new) in changes.items()},
        }
    )
    return {**training, **{key: new for key, (_, new) in changes.items()}, "resumes": resumes}


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
        value = loss.item()
        if not math.isfinite(value):
            raise _diverged(session, epoch, batch, value)
        loss.backward()
        maybe_die("train.batch", epoch, batch)
        optimizer.step()
        total_loss += value * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    bar.close()
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


def _diverged(session: Session, epoch: int, batch: int, loss: float) -> OptionError:
    """Stop at the first non-finite loss: every later epoch would record NaNs. Nothing of
    this epoch is written yet, so the committed epochs stay as they are."""
    config = session.config
    return OptionError(
        f"epoch {epoch}, batch {batch}: the training loss is {loss}, so training stopped "
        f"with {epoch} committed epoch{'s' * (epoch != 1)} of {config.out} intact; --lr "
        f"{config.lr} is probably too large: train again with a smaller --lr into a new --out"
    )


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
        kernels=conv_kernels(model),
        weight_change=relative_change(weights, previous),
        probe_probs=capture.probs,
        confusion=confusion,
        scalars={**scalars, **val_scalars},
        featviz=session.featviz.visualize(epoch) if session.featviz else {},
        examples={}
        if session.examples is None
        else top_examples(model, session.examples, model.layer_specs()),
    )
    writer.write_epoch(epoch, record)
    maybe_die("train.committed", epoch)
    save_checkpoint(
        session.config.out,
        epoch,
        {
            "epoch": epoch,
            "run_id": writer.attrs.get("run_id"),
            "model": model.state_dict(),
            "optimizer": session.optimizer.state_dict(),
        },
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
