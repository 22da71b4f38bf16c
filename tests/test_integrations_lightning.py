"""NetlapseCallback with a real lightning.Trainer on the CPU (a tiny model, a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from generator.store import open_run

L = pytest.importorskip("lightning")
from generator.integrations.lightning import NetlapseCallback  # noqa: E402


class TinyClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _index):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _index):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, *, epochs: int, **trainer_options) -> tuple[TinyClassifier, NetlapseCallback]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 16, 16), torch.arange(16) % 2)
    probes = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    callback = NetlapseCallback(  # float32 kernels: the test compares them with the weights
        probes=probes, out=tmp_path / "run.zarr", class_names=["a", "b"], kernel_dtype="float32"
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
    )
    model = TinyClassifier()
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    return model, callback


def test_records_epoch_zero_and_every_epoch_with_the_logged_metrics(tmp_path):
    model, _ = fit(tmp_path, epochs=2)
    run = open_run(tmp_path / "run.zarr")  # closed at fit end: readable, lock released
    assert run.epochs == 3  # untrained + 2 epochs; the sanity check records nothing
    assert list(run.attrs.class_names) == ["a", "b"]
    assert np.isnan(run.scalar_metric("val_loss")[0])
    assert np.isfinite(run.scalar_metric("val_loss")[1:]).all()
    assert np.isfinite(run.scalar_metric("train_loss")[1:]).all()
    assert np.isfinite(run.scalar_metric("val_accuracy")[1:]).all()  # logged as val_acc
    final = model.net[0].weight.detach().numpy()
    assert np.array_equal(run.kernels("net.0", 2), final)


def test_an_epoch_without_validation_does_not_repeat_the_last(tmp_path):
    fit(tmp_path, epochs=3, check_val_every_n_epoch=2)
    run = open_run(tmp_path / "run.zarr")
    assert run.epochs == 4
    val_loss = run.scalar_metric("val_loss")
    assert np.isfinite(val_loss[2])  # validated in epoch 2 only
    assert np.isnan(val_loss[[1, 3]]).all()
    assert np.isfinite(run.scalar_metric("train_loss")[1:]).all()


def test_a_framework_metric_named_like_a_recorder_argument_is_kept_as_its_own():
    """Lightning's ``self.log("confusion", 1.0)`` is a user's metric, stored as
    ``logged/confusion`` beside netlapse's confusion matrix, never taken for it."""
    from generator.integrations.lightning import logged_metrics
    from generator.record.capture import loop_metrics

    logged = {"confusion": torch.tensor(1.0), "val_acc": torch.tensor(0.5), "mine": 2.0}
    metrics = logged_metrics(logged)
    assert metrics == {"logged/confusion": 1.0, "val_accuracy": 0.5, "mine": 2.0}
    stored = loop_metrics(3, **metrics)
    assert stored.extra == {"logged/confusion": 1.0, "mine": 2.0} and stored.confusion is None
    assert stored.scalars == {"val_accuracy": 0.5}
