"""``--resume``: refuse what cannot continue the stored run, load the newest checkpoint
bound to it, and rewind the store to that checkpoint's epoch.

A checkpoint is written after its epoch's commit, so the newest checkpoint whose epoch is
committed is where training continues; every epoch after it is rewound and trained again
(shuffling is seeded per epoch, so the redone epochs are bit-identical). A run killed
before its first checkpoint only ever committed the untrained epoch 0, which the seed
reproduces, so it is recorded again. ``docs/reliability.md`` has the proof.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from generator.config import TrainConfig
from generator.data import storable
from generator.errors import StoreError
from generator.record import Recording, Setting, recorded_kernels
from generator.store import StoreWriter, open_run
from generator.train.checkpoint import (
    check_owner,
    checkpoint_dir,
    checkpoint_path,
    load_checkpoint,
    move_to_current_layout,
    remove_stale_temps,
    resumable_checkpoints,
)
from generator.train.distributed import Ranks
from generator.train.session import Session, start_session

log = logging.getLogger(__name__)

# how ``--resume`` names each setting a store's epochs share
COMPATIBLE: dict[Setting, str] = {
    "class_names": "set of classes",
    "input_size": "input size",
    "layers": "network (--model, --channels, --kernel-size)",
    "activation_dtype": "activation dtype",
    "featviz": "feature visualizations (--featviz-layers)",
}

# What a resumed run may change; the change is recorded in ``training.resumes``. Every
# other setting in ``training`` shapes the numbers or the arrays, so a resumed run with
# another value would no longer be the run the store describes: refused.
CHANGEABLE_ON_RESUME = ("epochs",)


def reopen(config: TrainConfig, *, ranks: Ranks | None = None) -> tuple[Session, StoreWriter]:
    """Open the store for ``--resume``: refuse settings that cannot change before the data
    is loaded, then load the newest checkpoint (or rewind to nothing when there is none:
    epoch 0 is recorded again) and record what this resume changed."""
    writer = StoreWriter.open_for_resume(config.out)
    try:
        stored = dict(writer.attrs.training)
        changes = resume_changes(config, stored, committed=writer.epochs_committed)
        session = start_session(config, ranks=ranks)
        check_compatible(writer, session)
        first = _resume(session, writer)
        if changes:
            writer.update_training(with_resume(stored, changes, first=first))
    except BaseException:
        writer.close()
        raise
    return session, writer


def _resume(session: Session, writer: StoreWriter) -> int:
    """Load the newest usable checkpoint, rewind the store to it; the first epoch to train.

    A checkpoint is usable if its epoch is committed in the store. One of a later epoch
    cannot be this run's (a checkpoint is written after its epoch's commit, and a rewind
    never passes one): another run's.
    """
    config = session.config
    remove_stale_temps(config.out)
    checkpoints = resumable_checkpoints(config.out, made_before_run_ids=writer.attrs.run_id is None)
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
    so it is recorded again. With trained epochs committed that would lose them: refuse."""
    config = session.config
    if writer.epochs_committed > 1:
        raise StoreError(
            f"{config.out}: no checkpoint in {checkpoint_dir(config.out)} to "
            f"resume its {writer.epochs_committed} epochs from; delete the store "
            "to start again, or train into another --out"
        )
    log.info("%s: no checkpoint yet; recording epoch 0 again", config.out)
    writer.rewind(0)
    return 1


def _load_state(session: Session, writer: StoreWriter, path: Path, epoch: int) -> None:
    """Model and optimizer state from this store's checkpoint of ``epoch``, or a one-line
    error naming the file: of another run, of another network, or not loadable."""
    state = load_checkpoint(path)
    check_owner(path, state, store=session.config.out, run_id=writer.attrs.run_id)
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


def resumed_checkpoint(writer: StoreWriter) -> Path | None:
    """The checkpoint ``reopen`` loaded (in the current layout), or None when it found none
    and epoch 0 is recorded again: what the other ranks under torchrun load too."""
    committed = writer.epochs_committed
    return checkpoint_path(writer.path, committed - 1) if committed else None


def load_same_state(session: Session, path: Path | None) -> None:
    """Another rank's part of ``--resume``: the model and optimizer state rank 0 resumed
    from (rank 0 has checked the file; without one the seeded start is already the same)."""
    if path is None:
        return
    state = load_checkpoint(path)
    session.model.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])


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
    stored_as = run.attrs.kernel_dtype  # float16 kernels: compare as they were rounded
    for name, kernel in recorded_kernels(session.model, session.layers).items():
        rounded = np.asarray(kernel).astype(stored_as).astype(np.float32)
        if not np.array_equal(run.kernels(name, epoch), rounded, equal_nan=True):
            raise StoreError(
                f"{path}: its {name} weights differ from those {session.config.out} recorded "
                f"at epoch {epoch}: it belongs to another run; move {path.parent} aside and "
                "--resume again, or train into another --out"
            )


def check_compatible(writer: StoreWriter, session: Session) -> None:
    """Refuse to append epochs of another model or data to a store (one line, naming how
    the run was made): ``compatible.Recording``, the check the Recorder makes too."""
    stored = writer.attrs
    ours = Recording(
        class_names=tuple(session.dataset.class_names),
        input_size=session.config.resolved_input_size,
        layers=tuple(session.layers),
        activation_dtype=session.config.activation_dtype,
        featviz=stored.featviz,  # a resumed run continues the store's (``_resumed_recorder``)
    )
    different = ours.first_difference(Recording.of_store(stored))
    if different is not None:
        training = stored.training
        raise StoreError(
            f"{session.config.out}: --resume with a different {COMPATIBLE[different]} "
            f"than the run was made with (it used --model "
            f"{training.get('model', 'reference')} --input-size "
            f"{training.get('input_size')} --channels "
            f"{','.join(map(str, training.get('channels', [])))} --data "
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
