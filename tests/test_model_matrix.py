"""Issue 23: any model, end to end. Ten torchvision families (``weights=None``) and the
small nets users write (grey, 4-channel and non-square inputs; dict and ``.logits``
outputs; a module called twice; weight_norm, spectral_norm and pruned convs) are each
recorded through the Recorder (epoch 0, one optimizer step, epoch 1, with one feature
visualization step), then every store is built into ONE site with cheap options.

For each model: it recorded, its run is in the site, every link of its pages resolves, and
every recorded layer has a non-empty animation. Kept cheap (tiny inputs, 2 probes, MP4
only, no channel pages) so the whole matrix is a few minutes on one core; ViT-B/16 runs at
the 224 px its position embedding needs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.models as models
from torch import nn
from torch.nn.utils import parametrizations, prune

from generator import Recorder, open_run
from generator.build import build
from generator.config import BuildConfig
from generator.site.manifest import ArtefactKind, Manifest
from tests.test_site import html_pages, parse, resolve

pytestmark = pytest.mark.slow
CLASSES = 3
PROBES = 2


@dataclass(frozen=True)
class Case:
    """A model to record: its factory, its input (C, H, W), the training batch size and
    what else the Recorder needs for it."""

    make: Callable[[], nn.Module]
    shape: tuple[int, int, int]
    batch: int = 4
    recorder: dict[str, Any] = field(default_factory=dict)


def torchvision(name: str, size: int = 32, batch: int = 4) -> Case:
    def make() -> nn.Module:
        return getattr(models, name)(weights=None, num_classes=CLASSES)

    return Case(make, (3, size, size), batch)


# -- small nets as users write them ------------------------------------------------------
def small(channels: int = 3) -> nn.Sequential:
    """Two convs and a linear head, for any input channel count and size."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, CLASSES),
    )


class DictOut(nn.Module):
    """Returns ``{"logits": ..., "embedding": ...}``: two 2-D tensors, so ``output=``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = small()[:-1]
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.features(x)
        return {"logits": self.head(embedding), "embedding": embedding}


class LogitsObject:
    """A Hugging Face style output."""

    def __init__(self, logits: torch.Tensor, hidden: torch.Tensor) -> None:
        self.logits, self.hidden_states = logits, hidden


class ObjectOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = small()

    def forward(self, x: torch.Tensor) -> LogitsObject:
        return LogitsObject(self.body(x), x.mean(1))


class Twice(nn.Module):
    """One conv applied at two resolutions in each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.shared(x).relu().mean((2, 3))
        half = self.shared(nn.functional.avg_pool2d(x, 2)).relu().mean((2, 3))
        return self.head(full + half)


def weight_normed() -> nn.Module:
    model = small()
    parametrizations.weight_norm(model[0])
    return model


def spectral_normed() -> nn.Module:
    model = small()
    parametrizations.spectral_norm(model[2])
    return model


def pruned() -> nn.Module:
    model = small()
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    return model


CASES: dict[str, Case] = {
    "resnet18": torchvision("resnet18"),
    "mobilenet_v3_small": torchvision("mobilenet_v3_small"),
    "efficientnet_b0": torchvision("efficientnet_b0"),
    "convnext_tiny": torchvision("convnext_tiny"),
    "regnet_x_400mf": torchvision("regnet_x_400mf"),
    "densenet121": torchvision("densenet121"),
    "squeezenet1_1": torchvision("squeezenet1_1"),
    "shufflenet_v2_x0_5": torchvision("shufflenet_v2_x0_5"),
    "swin_t": torchvision("swin_t"),
    "vit_b_16": torchvision("vit_b_16", size=224, batch=2),
    "grey_28x28": Case(lambda: small(1), (1, 28, 28)),
    "four_channel": Case(lambda: small(4), (4, 16, 16)),
    "non_square_48x64": Case(small, (3, 48, 64)),
    "dict_output": Case(DictOut, (3, 16, 16), recorder={"output": "logits"}),
    "logits_object": Case(ObjectOut, (3, 16, 16)),
    "module_called_twice": Case(Twice, (3, 16, 16)),
    "weight_norm": Case(weight_normed, (3, 16, 16)),
    "spectral_norm": Case(spectral_normed, (3, 16, 16)),
    "pruned": Case(pruned, (3, 16, 16)),
}


def logits_of(output: Any) -> torch.Tensor:
    if isinstance(output, dict):
        return output["logits"]
    return output if isinstance(output, torch.Tensor) else output.logits


def record(case: Case, out: Path) -> Path:
    """Epoch 0, one optimizer step on two random batches, epoch 1. Adam at ``train``'s
    learning rate: the gradients of BatchNorm over 1 x 1 maps of a batch of 4 reach 1e5,
    and plain SGD then sends an EfficientNet's or a RegNet's activations to inf."""
    torch.manual_seed(0)
    model = case.make()
    probes = torch.randint(0, 256, (PROBES, *case.shape), dtype=torch.uint8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with Recorder(
        model,
        probes=probes,
        probe_labels=list(range(PROBES)),
        out=out,
        class_names=[f"class {k}" for k in range(CLASSES)],
        featviz_steps=1,
        overhead=None,  # one featviz step however fast the tiny training is (no budget)
        **case.recorder,
    ) as rec:
        model.train()
        optimizer.zero_grad()
        for _ in range(2):
            batch = torch.randn(case.batch, *case.shape)
            labels = torch.arange(case.batch) % CLASSES
            loss = nn.functional.cross_entropy(logits_of(model(batch)), labels)
            loss.backward()
        optimizer.step()
        rec.epoch(train_loss=loss.item(), val_loss=loss.item(), val_accuracy=0.5)
    return out


def failure(exc: BaseException) -> str:
    """The error's last line first (what the report names), then its traceback."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"{last}\n{''.join(traceback.format_exception(exc))}"


def site_options(stores: tuple[Path, ...], out: Path) -> BuildConfig:
    return BuildConfig(
        stores=stores,
        out=out,
        jobs=1,
        formats=("mp4",),
        probe_index=(1,),
        all_layers=True,  # every layer animated, however deep the model
        channel_probes=0,
        contact_probes=0,
        channel_pages=0,
        max_side=256,
        channel_side=128,
    )


@dataclass
class Matrix:
    """What happened to each model: its store or why it failed, and the one build."""

    stores: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # wall, CPU
    site: Path | None = None
    manifest: Manifest | None = None
    slugs: dict[str, str] = field(default_factory=dict)
    build_error: str | None = None


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """Every model recorded (a failure is kept for that model's test), then one build of
    every store that recorded into one site."""
    base = tmp_path_factory.mktemp("matrix")
    found = Matrix()
    for name, case in CASES.items():
        start = time.perf_counter(), time.process_time()
        try:
            found.stores[name] = record(case, base / "runs" / f"{name}.zarr")
        except Exception as exc:  # noqa: BLE001 - kept for this model's test to report
            found.errors[name] = failure(exc)
        found.seconds[name] = (time.perf_counter() - start[0], time.process_time() - start[1])
    found.site = base / "site"
    names = tuple(found.stores)
    start = time.perf_counter(), time.process_time()
    try:
        result = build(site_options(tuple(found.stores.values()), found.site))
    except Exception as exc:  # noqa: BLE001 - every model's test reports it
        found.build_error = failure(exc)
    else:
        found.manifest = result.manifest
        found.slugs = {
            name: entry.slug for name, entry in zip(names, result.manifest.runs, strict=True)
        }
    found.seconds["(build)"] = (time.perf_counter() - start[0], time.process_time() - start[1])
    for name, (wall, cpu) in found.seconds.items():
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    return found


def test_one_build_makes_every_recorded_store(matrix: Matrix) -> None:
    assert matrix.build_error is None, matrix.build_error
    assert matrix.manifest is not None
    assert len(matrix.manifest.runs) == len(matrix.stores)
    for page in html_pages(matrix.site) if matrix.site else []:
        if "runs" not in page.relative_to(matrix.site).parts:  # the home and 404 pages
            for _, attr, link in parse(page).found:
                target = None if link.startswith("data:") else resolve(matrix.site, page, link)
                assert target is None or target.is_file(), f"{page}: {attr}={link}"


@pytest.mark.parametrize("model", list(CASES))
def test_model_records_and_builds_with_every_layer_animated(matrix: Matrix, model: str) -> None:
    if model in matrix.errors:
        pytest.fail(f"{model} did not record: {matrix.errors[model]}", pytrace=False)
    if matrix.build_error is not None:
        pytest.fail(f"the build failed: {matrix.build_error}", pytrace=False)
    assert matrix.site is not None and matrix.manifest is not None
    site, slug = matrix.site, matrix.slugs[model]
    run = open_run(matrix.stores[model])
    assert run.epochs == 2

    # every local link of every page of this run resolves
    pages = html_pages(site / "runs" / slug)
    assert len(pages) > len(run.layers)  # the run page and one page per layer
    for page in pages:
        for _, attr, link in parse(page).found:
            target = None if link.startswith("data:") else resolve(site, page, link)
            assert target is None or target.is_file(), f"{page}: {attr}={link}"

    # every recorded layer has a non-empty animation of its channels
    entry = next(e for e in matrix.manifest.runs if e.slug == slug)
    records = [matrix.manifest.artefacts[a] for a in entry.artefacts]
    for layer in run.layers:
        grids = [r for r in records if r.kind == ArtefactKind.GRID and r.layer == layer.name]
        assert grids, f"{model}: no animation of layer {layer.name!r}"
        for grid in grids:
            video = site / grid.files["mp4"]
            assert video.is_file() and video.stat().st_size > 0, (layer.name, video)
