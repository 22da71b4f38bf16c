"""The training loop: train an epoch -> evaluate -> record through the Recorder -> checkpoint.

Epoch 0 is recorded before the first update. Every epoch goes into the store through
``generator.Recorder``, the same path a user's own loop takes. The order inside an epoch
matters for crash safety: the store commits the epoch first and the checkpoint follows, so
after a kill ``--resume`` restarts from the newest checkpoint (``train.resume``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from generator.config import TrainConfig
from generator.data import make_demo_dataset, storable, to_model_input
from generator.errors import OptionError
from generator.faults import maybe_die
from generator.record import (
    ExamplePool,
    FeatvizSettings,
    ProbeSet,
    Recorder,
    RecorderSetup,
    prepare_probes,
    recorded_settings,
    split_pool,
    training_recorder,
    with_sources,
)
from generator.store import StoreLocation, StoreWriter
from generator.train.checkpoint import save_checkpoint, set_aside_orphans
from generator.train.distributed import Ranks, from_environment, stop
from generator.train.resume import load_same_state, reopen, resumed_checkpoint
from generator.train.session import (
    Session,
    check_model_options,
    check_out,
    choose_probes,
    logits_of,
    model_input,
    pick_device,
    start_session,
)

log = logging.getLogger(__name__)


class TrainScalars(TypedDict):
    """One epoch's training loss and accuracy, as ``Recorder.epoch()`` takes them."""

    train_loss: float
    train_accuracy: float


class Validation(TypedDict):
    """One pass over the validation split, as ``Recorder.epoch()`` takes it: the loss and
    accuracy, and the (K, K) confusion matrix of counts (rows = true class)."""

    val_loss: float
    val_accuracy: float
    confusion: np.ndarray


def run_training(config: TrainConfig) -> StoreLocation:
    """Train (or resume) the run ``config.out`` and return the store's path.

    Under torchrun (``WORLD_SIZE`` > 1) every rank runs this: the options are checked on
    each before the ranks meet, so a bad ``--out`` stops them all alike."""
    check_out(config)
    check_model_options(config)
    ranks = from_environment(pick_device(config.device))
    try:
        if not ranks.is_main:
            _quiet()
        ranks.main_only(lambda: _prepare_data(config))  # the demo data, made once
        session, rec, record_epoch0 = _begin(config, ranks)
        with rec or contextlib.nullcontext():
            if record_epoch0:
                _after_commit(session, rec, 0)
            _train_epochs(session, rec)
    finally:
        stop(ranks)
    return config.out


def _begin(config: TrainConfig, ranks: Ranks) -> tuple[Session, Recorder | None, bool]:
    """Every rank's session (all from one state), rank 0's Recorder (the only one), and
    whether epoch 0 was recorded now (its checkpoint follows)."""
    if config.resume:
        return _begin_resumed(config, ranks)
    session = start_session(config, ranks=ranks)
    pool = ranks.main_only(  # a bad --example-pool is refused before any pass over data
        lambda: split_pool(session.dataset, session.val_idx, config.example_pool)
    )
    metrics0 = evaluate(session)
    rec = ranks.main_only(lambda: _new_recorder(session, metrics0, pool))
    session.go_parallel()
    return session, rec, True


def _begin_resumed(config: TrainConfig, ranks: Ranks) -> tuple[Session, Recorder | None, bool]:
    """``_begin`` for ``--resume``: rank 0 reopens and rewinds the store and loads the
    checkpoint; the other ranks load the same one."""
    opened = ranks.main_only(lambda: reopen(config, ranks=ranks))  # rank 0 only
    session = opened[0] if opened else start_session(config, ranks=ranks)
    writer = opened[1] if opened else None
    resumed_from = ranks.share(resumed_checkpoint(writer) if writer else None)
    if not ranks.is_main:
        load_same_state(session, resumed_from)
    record_epoch0 = ranks.share(writer.epochs_committed == 0 if writer else False)
    metrics0 = evaluate(session) if record_epoch0 else None
    rec = ranks.main_only(_resumed_recorder, session, writer, metrics0)  # rank 0: a writer
    session.go_parallel()
    return session, rec, record_epoch0


def _train_epochs(session: Session, rec: Recorder | None) -> None:
    """Train, evaluate, record and checkpoint each epoch after the committed ones."""
    ranks, config = session.ranks, session.config
    first = ranks.share(rec.epochs_committed if rec else 0)  # rank 0's count on every rank
    for epoch in range(first, config.epochs + 1):
        train_scalars = _train_one_epoch(session, epoch)
        metrics = evaluate(session)
        ranks.main_only(_record_epoch, rec, train_scalars, metrics)
        _after_commit(session, rec, epoch)
    if rec is not None:
        log.info("%s: %d epochs committed", config.out, rec.epochs_committed)


def _record_epoch(rec: Recorder, train: TrainScalars, validation: Validation) -> None:
    rec.epoch(**train, **validation)


def _prepare_data(config: TrainConfig) -> None:
    """Make the demo data (cached) before the ranks load it, so they never race to."""
    if config.data is None:
        make_demo_dataset(
            config.cache_dir,
            seed=config.seed,
            per_class=config.demo_per_class,
            size=config.resolved_input_size,
        )


def _quiet() -> None:
    """Log warnings only on the ranks other than 0: one log for the run."""
    logging.getLogger("generator").setLevel(logging.WARNING)


def _new_recorder(session: Session, metrics0: Validation, pool: ExamplePool | None) -> Recorder:
    """A new store, with epoch 0 (the untrained network) recorded.

    A checkpoint folder already at its place belongs to a run whose store was deleted:
    it is moved aside first, so this run never resumes from or prunes it."""
    config = session.config
    probes = choose_probes(session)
    set_aside_orphans(config.out)
    chosen = prepare_probes(torch.from_numpy(probes.images), labels=probes.labels.tolist())
    setup = _recorder_setup(
        session,
        with_sources(chosen, probes.sources),
        training=storable(config.to_json()),
        featviz_layers=config.featviz_layers,
        pool=pool,
    )
    return training_recorder(session.model, setup, initial_metrics=metrics0)


def _resumed_recorder(
    session: Session, writer: StoreWriter, metrics0: Validation | None
) -> Recorder:
    """The Recorder on the reopened, rewound store (its lock passes to the Recorder), on the
    stored probes and feature visualizations; it records epoch 0 again when the rewind
    left none."""
    try:
        setup = _recorder_setup(session, prepare_probes(torch.from_numpy(writer.probe_images())))
        return training_recorder(session.model, setup, initial_metrics=metrics0, writer=writer)
    except BaseException:
        writer.close()  # what the Recorder has not released already
        raise


def _recorder_setup(
    session: Session,
    probes: ProbeSet,
    *,
    training: dict[str, Any] | None = None,
    featviz_layers: tuple[str, ...] | None = None,
    pool: ExamplePool | None = None,
) -> RecorderSetup:
    """What the Recorder records of this run: the session's layers (the reference CNN
    names its own blocks) and classes, the probes (uint8 images, seen through the one
    normalisation) and the options of ``train`` that recording takes. ``featviz_layers``
    None: the default layers in a new store, the store's own on resume."""
    config = session.config
    return RecorderSetup(
        out=config.out,
        probes=probes,
        class_names=list(session.dataset.class_names),
        layers=session.layers,
        transform=to_model_input,
        activation_dtype=config.activation_dtype,
        kernel_dtype=config.kernel_dtype,
        overhead=config.overhead or None,
        gradients=not config.no_gradients,
        training=recorded_settings(session.model, training or {}),
        featviz=FeatvizSettings(featviz_layers, config.featviz_steps),
        pool=pool,
        site=config.site,
    )


def _after_commit(session: Session, rec: Recorder | None, epoch: int) -> None:
    """Checkpoint the committed epoch on rank 0; the other ranks wait for it."""
    session.ranks.main_only(_checkpoint, session, rec, epoch)  # rank 0 holds the Recorder


def _checkpoint(session: Session, rec: Recorder, epoch: int) -> None:
    """Checkpoint the committed epoch (model + optimizer, bound to the store's run id).
    The Recorder commits in the background; a checkpoint never runs ahead of its epoch."""
    rec.flush()
    maybe_die("train.committed", epoch)
    save_checkpoint(
        session.config.out,
        epoch,
        {
            "epoch": epoch,
            "run_id": rec.run_id,
            "model": session.model.state_dict(),
            "optimizer": session.optimizer.state_dict(),
        },
        session.config.keep_checkpoints,
    )
    maybe_die("train.epoch_end", epoch)
    log.info("epoch %d committed", epoch)


def _loader(session: Session, indices: np.ndarray, epoch: int | None) -> DataLoader:
    """Batches of (uint8 images, labels); shuffled with a per-epoch seed when training."""
    subset: Subset[tuple[torch.Tensor, int]] = Subset(session.dataset, indices.tolist())
    config, ranks = session.config, session.ranks
    if epoch is None:
        return DataLoader(subset, batch_size=config.batch_size, shuffle=False)
    if ranks.distributed:
        return _shard_loader(session, subset, epoch)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    # BatchNorm cannot train on a batch of one: drop such a last batch.
    drop_last = len(subset) % config.batch_size == 1
    return DataLoader(
        subset, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=drop_last
    )


def _shard_loader(session: Session, subset: Subset, epoch: int) -> DataLoader:
    """This rank's shuffled share of the training images (DistributedSampler, seeded per
    epoch; every rank gets as many batches, so the gradient all-reduces pair up)."""
    config, ranks = session.config, session.ranks
    sampler: DistributedSampler = DistributedSampler(
        subset, num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=config.seed
    )
    sampler.set_epoch(epoch)
    drop_last = sampler.num_samples % config.batch_size == 1
    return DataLoader(subset, batch_size=config.batch_size, sampler=sampler, drop_last=drop_last)


def _train_one_epoch(session: Session, epoch: int) -> TrainScalars:
    model, optimizer, loss_fn = session.trained, session.optimizer, nn.CrossEntropyLoss()
    ranks = session.ranks
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(
        _loader(session, session.train_idx, epoch),
        desc=f"epoch {epoch}",
        unit="batch",
        leave=False,
        disable=None if ranks.is_main else True,
    )
    for batch, (images, labels) in enumerate(bar):
        inputs, labels = model_input(images, session), labels.to(session.device)
        optimizer.zero_grad(set_to_none=True)
        logits = logits_of(model(inputs))
        loss = loss_fn(logits, labels)
        value = loss.item()
        if not math.isfinite(_on_every_rank(ranks, value)):
            raise _diverged(session, epoch, batch, value)
        loss.backward()
        maybe_die("train.batch", epoch, batch)
        optimizer.step()
        total_loss += value * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    bar.close()
    ranks.copy_buffers(session.model)
    if ranks.distributed:
        sums = ranks.sum(torch.tensor([total_loss, correct, seen], dtype=torch.float64))
        total_loss, correct, seen = float(sums[0]), int(sums[1]), int(sums[2])
    scalars = TrainScalars(
        train_loss=total_loss / max(seen, 1), train_accuracy=correct / max(seen, 1)
    )
    log.info(
        "epoch %d: train loss %.4f acc %.3f",
        epoch,
        scalars["train_loss"],
        scalars["train_accuracy"],
    )
    return scalars


def _on_every_rank(ranks: Ranks, loss: float) -> float:
    """The loss summed over ranks under torchrun: non-finite on one rank stops all ranks
    together (one stopping alone would leave the others waiting in the gradient sync)."""
    if not ranks.distributed:
        return loss
    return float(ranks.sum(torch.tensor([loss], dtype=torch.float64))[0])


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
def evaluate(session: Session) -> Validation:
    """Validation loss and accuracy, and the (K, K) confusion matrix (rows = true class),
    as ``Recorder.epoch()`` takes them."""
    model, k = session.model, len(session.dataset.classes)
    model.eval()
    loss_sum, confusion = 0.0, torch.zeros(k * k, dtype=torch.int64)
    for images, labels in _loader(session, session.ranks.shard(session.val_idx), None):
        logits = logits_of(model(model_input(images, session))).cpu()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        confusion += torch.bincount(labels * k + logits.argmax(1), minlength=k * k)
    if session.ranks.distributed:  # each rank saw its own share: add them up
        loss_sum = float(session.ranks.sum(torch.tensor([loss_sum], dtype=torch.float64))[0])
        confusion = session.ranks.sum(confusion)
    matrix = confusion.reshape(k, k).numpy()
    total = max(int(matrix.sum()), 1)
    log.info("validation loss %.4f acc %.3f", loss_sum / total, float(np.trace(matrix)) / total)
    return Validation(
        val_loss=loss_sum / total, val_accuracy=float(np.trace(matrix)) / total, confusion=matrix
    )
