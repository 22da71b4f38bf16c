"""PyTorch Lightning: ``NetlapseCallback`` records a LightningModule through the Recorder.

    trainer = lightning.Trainer(callbacks=[NetlapseCallback(probes=images, out="runs/a.zarr")])

Epoch 0 (the untrained model) is recorded when fitting starts, then one epoch at the end
of every training epoch, after that epoch's validation, with the scalar metrics Lightning
has logged (``trainer.callback_metrics``): the epoch's training metrics and, when it ran a
validation, the validation metrics (an epoch without one does not repeat the last).
Only the global-zero process records, so a DDP run
writes one store. Needs the ``lightning`` extra: ``pip install "netlapse[lightning]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'generator.integrations.lightning needs Lightning: pip install "netlapse[lightning]"'
    ) from exc

from generator.record import Recorder, user_metric_name

# Lightning users often log accuracy as "*_acc"; the store's names are "*_accuracy".
ALIASES = {"train_acc": "train_accuracy", "val_acc": "val_accuracy"}


class NetlapseCallback(pl.Callback):
    """Records the LightningModule being fitted into the run store ``out``.

    ``probes`` and every other keyword are the ``Recorder``'s (``class_names``,
    ``layers``, ``activation_dtype``, ``output`` for a module that returns a dict or a
    tuple, ...). Fitting again from a checkpoint continues the store (``resume=True``)."""

    def __init__(self, *, probes: Any, out: str | Path, **recorder_options: Any) -> None:
        super().__init__()
        self.out = Path(out)
        self._options = {"probes": probes, "out": self.out, **recorder_options}
        self._recorder: Recorder | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_keys: set[str] = set()
        self._validated = False
        if trainer.is_global_zero and self._recorder is None:
            resume = trainer.current_epoch > 0 or self._options.pop("resume", False)
            self._recorder = Recorder(pl_module, resume=resume, **self._options)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._before_validation = logged_metrics(trainer.callback_metrics)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Learn which metrics validation logs (what it added or changed)."""
        before, after = self._before_validation, logged_metrics(trainer.callback_metrics)
        self._validation_keys |= {k for k, v in after.items() if before.get(k) != v}
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._recorder is None or not trainer.is_global_zero:
            return
        metrics = logged_metrics(trainer.callback_metrics)
        if not self._validated:  # the validation metrics there are an earlier epoch's
            metrics = {k: v for k, v in metrics.items() if k not in self._validation_keys}
        self._validated = False
        self._recorder.epoch(**metrics)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """A checkpoint never runs ahead of the store: the epoch recorded before it is
        committed first (the Recorder writes in the background)."""
        if self._recorder is not None:
            self._recorder.flush()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """The epochs committed so far (and the one in flight) stay, the lock is released,
        and the exception that stopped fitting is the one reported."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.release()


def logged_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Lightning's logged values that are single numbers, under the store's names; one
    named like an argument of ``Recorder.epoch()`` that is not a metric (``confusion``) is
    kept as ``logged/<name>``, never taken for netlapse's own."""
    out = {}
    for name, value in metrics.items():
        if getattr(value, "numel", lambda: 1)() == 1:
            out[ALIASES.get(name) or user_metric_name(name)] = float(value)
    return out
