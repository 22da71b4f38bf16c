"""The training loop: train an epoch -> evaluate -> record through the Recorder -> checkpoint.

Epoch 0 is recorded before the first update. Every epoch goes into the store through
``generator.Recorder``, the same path a user's own loop takes. The order inside an epoch
matters for crash safety: the store commits the epoch first and the checkpoint follows, so
after a kill ``--resume`` restarts from the newest checkpoint (``train.resume``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from generator.checkpoint import save_checkpoint, set_aside_orphans
from generator.config import TrainConfig
from generator.data import storable
from generator.errors import OptionError
from generator.faults import maybe_die
from generator.record.examples import split_pool
from generator.record.recorder import Recorder
from generator.store import StoreWriter
from generator.train.resume import reopen
from generator.train.session import (
    Session,
    check_out,
    choose_probes,
    main_output,
    model_input,
    start_session,
)

log = logging.getLogger(__name__)


def run_training(config: TrainConfig) -> Path:
    """Train (or resume) the run ``config.out`` and return the store's path."""
    check_out(config)
    if config.resume:
        session, writer = reopen(config)
        recorded_epoch0 = writer.epochs_committed == 0  # no checkpoint: epoch 0 again
        rec = _resumed_recorder(session, writer)
    else:
        session = start_session(config)
        rec, recorded_epoch0 = _new_recorder(session), True
    with rec:
        if recorded_epoch0:
            _after_commit(session, rec, 0)
        for epoch in range(rec.epochs_committed, config.epochs + 1):
            train_scalars = _train_one_epoch(session, epoch)
            rec.epoch(**train_scalars, **evaluate(session))
            _after_commit(session, rec, epoch)
        log.info("%s: %d epochs committed", config.out, rec.epochs_committed)
    return config.out


def _new_recorder(session: Session) -> Recorder:
    """A new store, with epoch 0 (the untrained network) recorded.

    A checkpoint folder already at its place belongs to a run whose store was deleted:
    it is moved aside first, so this run never resumes from or prunes it."""
    config = session.config
    probes = choose_probes(session)
    set_aside_orphans(config.out)
    return Recorder(
        session.model,
        probes=torch.from_numpy(probes.images),
        probe_labels=probes.labels.tolist(),
        probe_sources=probes.sources,
        out=config.out,
        class_names=session.dataset.class_names,
        layer_specs=session.layers,
        activation_dtype=config.activation_dtype,
        training=storable(config.to_json()),
        initial_metrics=evaluate(session),
        site=config.site,
        featviz_layers=config.featviz_layers,
        featviz_steps=config.featviz_steps,
        example_pool=split_pool(session.dataset, session.val_idx, config.example_pool),
    )


def _resumed_recorder(session: Session, writer: StoreWriter) -> Recorder:
    """The Recorder on the reopened, rewound store (its lock passes to the Recorder), on the
    stored probes; it records epoch 0 again when the rewind left none."""
    try:
        return Recorder(
            session.model,
            probes=torch.from_numpy(writer.probe_images()),
            out=session.config.out,
            class_names=session.dataset.class_names,
            layer_specs=session.layers,
            activation_dtype=session.config.activation_dtype,
            initial_metrics=evaluate(session) if writer.epochs_committed == 0 else None,
            writer=writer,
            featviz_steps=session.config.featviz_steps,
            site=session.config.site,
        )
    except BaseException:
        writer.close()  # what the Recorder has not released already
        raise


def _after_commit(session: Session, rec: Recorder, epoch: int) -> None:
    """Checkpoint the committed epoch (model + optimizer, bound to the store's run id)."""
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
        inputs, labels = model_input(images, session), labels.to(session.device)
        optimizer.zero_grad(set_to_none=True)
        logits = main_output(model(inputs))
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
    scalars = {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}
    log.info(
        "epoch %d: train loss %.4f acc %.3f",
        epoch,
        scalars["train_loss"],
        scalars["train_accuracy"],
    )
    return scalars


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
def evaluate(session: Session) -> dict[str, object]:
    """Validation loss and accuracy, and the (K, K) confusion matrix (rows = true class),
    as ``Recorder.epoch()`` takes them."""
    model, k = session.model, len(session.dataset.classes)
    model.eval()
    loss_sum, confusion = 0.0, torch.zeros(k * k, dtype=torch.int64)
    for images, labels in _loader(session, session.val_idx, None):
        logits = main_output(model(model_input(images, session))).cpu()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        confusion += torch.bincount(labels * k + logits.argmax(1), minlength=k * k)
    matrix = confusion.reshape(k, k).numpy()
    total = max(int(matrix.sum()), 1)
    log.info("validation loss %.4f acc %.3f", loss_sum / total, float(np.trace(matrix)) / total)
    return {
        "val_loss": loss_sum / total,
        "val_accuracy": float(np.trace(matrix)) / total,
        "confusion": matrix,
    }
