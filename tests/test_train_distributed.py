"""``torchrun -m generator train`` with 2 CPU ranks (gloo on loopback): one store, written
by rank 0, counting the whole validation split, equal to its own final checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.config import TrainConfig
from generator.data import load_image_folder, make_demo_dataset, to_model_input
from generator.model import NetlapseCNN
from generator.store import open_run
from generator.train import split_indices
from generator.train.checkpoint import checkpoint_path, load_checkpoint
from generator.train.distributed import Ranks
from generator.train.session import dataset_labels
from tests.test_faults import assert_same_epochs

TINY = (
    "--input-size",
    "32",
    "--channels",
    "4,8,8,16",
    "--demo-per-class",
    "10",
    "--batch-size",
    "4",
    "--probes",
    "3",
)
TINY += ("--device", "cpu", "--featviz-steps", "2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node 2 -m generator train`` on loopback, as a user runs it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    command += ["-m", "generator", "-q", "train", "--out", str(out), *TINY, *extra]
    env = {**os.environ, "NETLAPSE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _validation_size(cache: Path) -> int:
    """How many images the run's validation split holds (the same split every rank makes)."""
    config = TrainConfig(out=cache / "unused.zarr", input_size=32, demo_per_class=10)
    root = make_demo_dataset(cache, seed=config.seed, per_class=10, size=32)
    labels = dataset_labels(load_image_folder(root, 32))
    return len(split_indices(labels, config.val_fraction, config.seed)[1])


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-epoch run trained by 2 ranks, and its demo-data cache."""
    folder, cache = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("ddp-cache")
    out = folder / "ddp.zarr"
    done = torchrun(out, cache, "--epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, cache


def test_validation_shards_cover_the_split_once() -> None:
    indices = np.arange(11)
    shards = [Ranks(rank=r, world=3, local_rank=r).shard(indices) for r in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == indices.tolist()


@pytest.mark.slow
def test_every_epoch_is_committed_and_counts_the_whole_validation_split(
    ddp_run: tuple[Path, Path],
) -> None:
    out, cache = ddp_run
    run = open_run(out)
    assert run.epochs == 3
    assert run.confusion().sum(axis=(1, 2)).tolist() == [_validation_size(cache)] * 3
    assert not np.isnan(run.scalar_metric("train_loss")[1:]).any()


@pytest.mark.slow
def test_last_epoch_equals_a_fresh_forward_of_the_final_checkpoint(
    ddp_run: tuple[Path, Path],
) -> None:
    out, _ = ddp_run
    run = open_run(out)
    model = NetlapseCNN(len(run.attrs.class_names), 32, (4, 8, 8, 16))
    model.load_state_dict(load_checkpoint(checkpoint_path(out, 2))["model"])
    model.eval()
    inputs = to_model_input(torch.from_numpy(run.probe_images))
    with torch.no_grad():
        logits = model(inputs)
        block1 = model.block1(inputs)
    np.testing.assert_allclose(run.layer_at("block1", 2), block1.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(run.layer_at("logits", 2), logits.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(run.probe_probs()[2], torch.softmax(logits, 1).numpy(), atol=1e-5)


@pytest.mark.slow
def test_resume_under_torchrun_finishes_the_same_store_as_an_uninterrupted_run(
    ddp_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Stopped after epoch 1 and ``--resume``d under torchrun, a 2-rank run ends bit for
    bit as the uninterrupted 2-rank run: rank 0 reopens the store, every rank loads the
    same checkpoint (weights, optimizer, RNG) and the samplers go on from that epoch."""
    reference, cache = ddp_run
    out = tmp_path / "resumed.zarr"
    first = torchrun(out, cache, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert open_run(out).epochs == 2
    resumed = torchrun(out, cache, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert open_run(out).epochs == 3
    assert_same_epochs(out, reference, epochs=3)
