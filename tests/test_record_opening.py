"""Opening a Recorder's store: a Recorder that fails while creating its store leaves
nothing behind, on disk or in object storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from generator import Recorder
from generator.errors import StoreError
from generator.store import StoreWriter, store_location
from generator.store._backends import has_objects
from tests.test_store_backends import bucket, s3_server  # noqa: F401 - fixtures


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(3))


def failing_write(self: StoreWriter, epoch: int, record: object) -> None:
    raise StoreError(f"{self.path}: writing epoch {epoch} failed (the disk is full)")


def record_with_failing_write(out: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StoreWriter, "write_epoch", failing_write)
    model = tiny()
    model(torch.zeros(1, 3, 8, 8))  # the lazy layer gets its shape
    with pytest.raises(StoreError, match="disk is full"):
        Recorder(model, probes=torch.rand(2, 3, 8, 8), out=out, featviz_layers=[])


def test_a_recorder_whose_first_write_fails_leaves_no_folder(tmp_path: Path, monkeypatch):
    out = tmp_path / "run.zarr"
    record_with_failing_write(out, monkeypatch)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nor a staging folder or a lock


def test_a_recorder_whose_first_write_fails_leaves_no_object(bucket: str, monkeypatch):  # noqa: F811
    url = f"s3://{bucket}/runs/run.zarr"
    record_with_failing_write(url, monkeypatch)
    assert not has_objects(store_location(url))
    assert not has_objects(store_location(f"s3://{bucket}/runs"))
