"""Shared fixtures: small synthetic run stores written through the real StoreWriter, and
one small real training run shared by every end-to-end test that needs *a* trained run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from generator.store import (
    STAT_FIELDS,
    EpochRecord,
    ExamplePoolRecord,
    FeatvizSpec,
    LayerSpec,
    StoreWriter,
)

# Property tests draw the same examples on every run (CI must not turn red by chance): a
# failure is then reproducible, and a new corner case is added as an ``@example``.
settings.register_profile("netlapse", derandomize=True)
settings.load_profile("netlapse")

TINY_LAYERS = [
    LayerSpec("block1", "conv", (4, 8, 8), (4, 3, 3, 3), 120, 3),
    LayerSpec("block2", "conv", (6, 4, 4), (6, 4, 3, 3), 230, 8),
    LayerSpec("hidden", "linear", (5,), None, 35),
    LayerSpec("logits", "linear", (3,), None, 18),
]


# An example pool for stores made with ``examples=True``: 5 images, each channel's top 3.
TINY_POOL = ExamplePoolRecord(
    np.arange(5 * 8 * 8 * 3, dtype=np.uint8).reshape(5, 8, 8, 3),
    np.arange(5) % 3,
    tuple(f"pool {i}.png" for i in range(5)),
    3,
)


def synthetic_examples(epoch: int, layers: list[LayerSpec]) -> dict[str, dict[str, np.ndarray]]:
    """Dataset examples for ``TINY_POOL``: channel c's top images are c + epoch, ... mod 5."""
    examples = {}
    for layer in layers:
        if layer.is_conv:
            c, k = layer.channels, TINY_POOL.top_k
            index = (np.arange(c)[:, None] + epoch + np.arange(k)) % len(TINY_POOL.labels)
            examples[layer.name] = {
                "index": index.astype(np.int32),
                "position": np.zeros((c, k, 2), np.int32) + epoch % layer.shape[1],
                "value": np.linspace(1, 0, k, dtype=np.float32)[None].repeat(c, 0),
            }
    return examples


def synthetic_record(
    epoch: int,
    n_probes: int = 2,
    n_classes: int = 3,
    layers: list[LayerSpec] = TINY_LAYERS,
    *,
    examples: bool = False,
) -> EpochRecord:
    """An epoch whose values encode the epoch number, so tests can tell epochs apart."""
    rng = np.random.default_rng(epoch)
    activations = {
        layer.name: rng.standard_normal((n_probes, *layer.shape)) + epoch for layer in layers
    }
    stats = {}
    for name, value in activations.items():
        flat = value.reshape(n_probes, value.shape[1], -1)
        stats[name] = {
            "min": flat.min(2),
            "max": flat.max(2),
            "mean": flat.mean(2),
            "abs_mean": np.abs(flat).mean(2),
            "abs_max": np.abs(flat).max(2),
        }
    assert set(stats[layers[0].name]) == set(STAT_FIELDS)
    return EpochRecord(
        activations=activations,
        channel_stats=stats,
        kernels={
            layer.name: rng.standard_normal(layer.kernel_shape) + epoch
            for layer in layers
            if layer.kernel_shape
        },
        weight_change={layer.name: float("nan") if epoch == 0 else 0.1 * epoch for layer in layers},
        probe_probs=np.full((n_probes, n_classes), 1 / n_classes),
        confusion=np.eye(n_classes, dtype=np.int64) * (epoch + 1),
        scalars={}
        if epoch == 0
        else {
            "train_loss": 1 / epoch,
            "train_accuracy": 0.5,
            "val_loss": 1 / epoch,
            "val_accuracy": 0.4,
        },
        examples=synthetic_examples(epoch, layers) if examples else {},
    )


TINY_FEATVIZ = FeatvizSpec(size=8, channels={"block1": 2}, steps=2, first_steps=8)


def deep_layers(stages: int = 3, blocks: int = 12, channels: int = 4) -> list[LayerSpec]:
    """A synthetic deep net as the recorder describes one, 2 + stages x blocks x 3 layers
    (110 by default): a stem conv, then per stage ``blocks`` residual blocks of two convs
    each (``stages.S.B.conv1``/``conv2``, recorded before their block ``stages.S.B``), and
    the logits. Maps of ``channels`` x 4 x 4, cheap to write and to render."""

    def conv(path: str, parent: str) -> LayerSpec:
        kernel = (channels, channels if path != "stem" else 3, 3, 3)
        return LayerSpec(
            path,
            "conv",
            (channels, 4, 4),
            kernel,
            9 * channels**2,
            3,
            module=path,
            module_type="Conv2d",
            parent=parent,
            weights=path,
        )

    layers = [conv("stem", "")]
    for s in range(stages):
        for b in range(blocks):
            block = f"stages.{s}.{b}"
            layers += [conv(f"{block}.conv1", block), conv(f"{block}.conv2", block)]
            layers.append(
                LayerSpec(
                    block,
                    "block",
                    (channels, 4, 4),
                    None,
                    18 * channels**2,
                    5,
                    module=block,
                    module_type="Block",
                    parent=f"stages.{s}",
                )
            )
    return [
        *layers,
        LayerSpec(
            "logits",
            "linear",
            (3,),
            None,
            3 * channels + 3,
            module="head",
            module_type="Linear",
            parent="",
        ),
    ]


def make_store(
    path: Path,
    epochs: int = 3,
    n_probes: int = 2,
    trim: bool = True,
    n_classes: int = 3,
    *,
    featviz: bool = False,
    examples: bool = False,
    layers: list[LayerSpec] = TINY_LAYERS,
) -> StoreWriter:
    """A committed store of ``epochs`` entries written by the real writer; ``trim`` as a
    finished training run leaves it (arrays exactly ``epochs`` long); ``featviz`` adds
    feature visualizations of ``TINY_FEATVIZ``; ``examples`` keeps dataset examples of
    ``TINY_POOL``; ``layers``: e.g. ``deep_layers()`` for a 110-layer net."""
    writer = StoreWriter.create(
        path,
        class_names=["alpha", "beta", "gamma", *(f"class {k}" for k in range(3, n_classes))][
            :n_classes
        ],
        layers=layers,
        input_size=8,
        training={"epochs": epochs - 1, "seed": 0},
        probe_sources=["a.png", "b.png"][:n_probes],
        probe_images=np.arange(n_probes * 3 * 8 * 8, dtype=np.uint8).reshape(n_probes, 3, 8, 8),
        probe_labels=np.arange(n_probes),
        featviz=TINY_FEATVIZ if featviz else None,
        example_pool=TINY_POOL if examples else None,
    )
    for epoch in range(epochs):
        record = synthetic_record(epoch, n_probes, n_classes, layers, examples=examples)
        if featviz:
            record.featviz = {"block1": np.full((2, 8, 8, 3), epoch, np.uint8)}
        writer.write_epoch(epoch, record)
    if trim:
        writer.trim()
    return writer


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    make_store(tmp_path / "run.zarr")
    return tmp_path / "run.zarr"


# The shared run: the demo at 64 px, 10 images per class, 2 epochs (E = 3), 4 probes.
TRAINED_RUN_ARGS = ("--input-size", "64", "--demo-per-class", "10", "--batch-size", "8")
TRAINED_RUN_ARGS += ("--probes", "4")
TRAINED_RUN_ARGS += ("--overhead", "0")  # every epoch's examples found: tests compare them
TRAINED_RUN_ARGS += ("--kernel-dtype", "float32")  # tests compare kernels with the weights
TRAINED_RUN_EPOCHS = 2


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo images, made once per session (``NETLAPSE_CACHE``)."""
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Path:
    """One real run trained once per session through the CLI, with its checkpoints.

    Read-only for the tests that share it: a test that writes to a run uses
    ``copy_trained_run`` instead, so no test sees another test's changes.
    """
    from generator.__main__ import main

    out = tmp_path_factory.mktemp("trained") / "demo.zarr"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETLAPSE_CACHE", str(demo_cache))
        argv = ["-q", "train", "--out", str(out), *TRAINED_RUN_ARGS]
        assert main([*argv, "--epochs", str(TRAINED_RUN_EPOCHS)]) == 0
    return out


def copy_trained_run(trained_run: Path, folder: Path) -> Path:
    """A private copy of the shared run (store and every sibling it owns, such as its
    checkpoint folder) in ``folder``, for a test that changes it."""
    for sibling in trained_run.parent.iterdir():
        if sibling.name.startswith(trained_run.stem):
            shutil.copytree(sibling, folder / sibling.name, symlinks=True)
    return folder / trained_run.name


def record_model_run(
    out: Path,
    model: Any,
    *,
    epochs: int,
    probes: Any,
    size: int,
    steps: int = 2,
    class_names: tuple[str, ...] = ("alpha", "beta", "gamma"),
    seed: int = 0,
) -> Path:
    """A store of any ``nn.Module`` recorded through the Recorder API: ``steps`` SGD steps
    on random images per epoch, enough for the weights and activations to change.
    ``probes``: a count of random probe images (the same for every ``seed``), or anything
    ``Recorder`` takes; ``seed`` draws the training batches."""
    import torch

    from generator import Recorder

    torch.manual_seed(0)
    classes = len(class_names)
    labels = None
    if isinstance(probes, int):
        labels = [k % classes for k in range(probes)]
        probes = torch.randint(0, 256, (probes, 3, size, size), dtype=torch.uint8)
    if seed:
        torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = Recorder(
        model, probes=probes, probe_labels=labels, out=out, class_names=list(class_names)
    )
    for epoch in range(epochs):
        model.train()
        for _ in range(steps):
            batch = torch.randn(8, 3, size, size)
            loss = torch.nn.functional.cross_entropy(model(batch), torch.arange(8) % classes)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        rec.epoch(train_loss=loss.item(), val_loss=loss.item(), val_accuracy=1 / (epoch + 2))
    rec.close()
    return out


TORCHVISION_MODELS = ("resnet18", "mobilenet_v3_small")


@pytest.fixture(scope="session")
def torchvision_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A resnet18 and a mobilenet_v3_small run recorded through the Recorder API, once per
    session: 2 epochs, 3 probes at 32 px (the real layer structure, tiny maps)."""
    models = pytest.importorskip("torchvision.models")
    base = tmp_path_factory.mktemp("torchvision")
    return {
        name: record_model_run(
            base / f"{name}.zarr",
            getattr(models, name)(num_classes=3),
            epochs=2,
            probes=3,
            size=32,
        )
        for name in TORCHVISION_MODELS
    }


def tiny_cnn() -> Any:
    """Two 3x3 convs and a linear head: the cheapest real CNN to record (16 px inputs)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


@pytest.fixture(scope="session")
def seed_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two runs of ``tiny_cnn`` from seeds 0 and 1 (initial weights and batches) on the
    same 3 probe images, 2 epochs at 16 px through the Recorder: what a compare page
    compares."""
    import torch

    base = tmp_path_factory.mktemp("seeds")
    stores = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out = base / f"seed{seed}.zarr"
        stores.append(record_model_run(out, tiny_cnn(), epochs=2, probes=3, size=16, seed=seed))
    return stores[0], stores[1]


@pytest.fixture(scope="session")
def compare_site(
    tmp_path_factory: pytest.TempPathFactory, seed_runs: tuple[Path, Path]
) -> dict[str, Any]:
    """``seed_runs`` and a copy of seed 0 (a run compared with itself) built into one site
    in ``served/repo``, to be served from a sub-path (MP4 only, no contact sheets)."""
    from generator.build import build
    from generator.config import BuildConfig

    base = tmp_path_factory.mktemp("compare")
    twin = base / "seed0-twin.zarr"
    shutil.copytree(seed_runs[0], twin)
    stores = (*seed_runs, twin)
    site = base / "served" / "repo"
    config = BuildConfig(
        stores=stores, out=site, jobs=1, formats=("mp4",), contact_probes=0, channel_pages=1
    )
    return {"site": site, "manifest": build(config).manifest, "stores": stores}


@pytest.fixture(autouse=True)
def _no_stale_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process builds of the tests remove their stale files at once: the grace a reader
    gets (``defaults.STALE_GRACE_S``) is tested once, in tests/test_build_lock.py, and the
    builds run as processes keep it."""
    from generator import defaults

    monkeypatch.setattr(defaults, "STALE_GRACE_S", 0.0)


def restore_environment(saved: Mapping[str, str]) -> None:
    """``os.environ`` back to ``saved``. dask's Nanny writes its workers' settings
    (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``) into the
    environment of the process that starts a LocalCluster, for good: a ``train`` started
    later by a test in that process then ran on one thread, and its gradients differed in
    the last bit from the same run made on two."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _environment_kept() -> Iterator[None]:
    """Every test leaves the environment as it found it (a test's LocalCluster, a
    ``use_storage_options`` call), so no test's children inherit another's settings."""
    saved = dict(os.environ)
    yield
    restore_environment(saved)
