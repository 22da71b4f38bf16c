"""What the compare page's cross-run CKA costs, against the run page's own CKA.

    python bench/compare.py [--epochs 3] [--probes 8] [--size 64]

Records two torchvision ResNet-18s (``weights=None``, seeds 0 and 1, a few SGD steps of
random batches per epoch, the same probe images, no feature visualization) and times
``compare_runs`` on the pair against ``run_similarity`` on one run (the settle epochs every
run page computes); then two synthetic 110-layer stores (``tests/conftest.deep_layers``),
where the comparison keeps ``COMPARE_LAYERS`` layers a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torchvision.models

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator import Recorder, open_run  # noqa: E402
from generator.analysis.cka import run_similarity  # noqa: E402
from generator.analysis.compare import compare_runs  # noqa: E402
from tests.conftest import deep_layers, make_store  # noqa: E402

T = TypeVar("T")


def resnet_run(out: Path, probes: torch.Tensor, *, seed: int, epochs: int) -> Path:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    size = probes.shape[-1]
    with Recorder(
        model,
        probes=probes,
        out=out,
        class_names=["a", "b", "c"],
        featviz_layers=[],
        overhead=None,
    ) as rec:
        for _ in range(epochs):
            for _ in range(2):
                batch = torch.randn(8, 3, size, size)
                loss = torch.nn.functional.cross_entropy(model(batch), torch.arange(8) % 3)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            rec.epoch(train_loss=loss.item())
    return out


def timed(label: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = work()
    print(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="netlapse-compare-"))
    shape = (args.probes, 3, args.size, args.size)
    probes = torch.randint(
        0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    a, b = (
        open_run(resnet_run(work / f"seed{s}.zarr", probes, seed=s, epochs=args.epochs))
        for s in (0, 1)
    )
    print(f"resnet18: {len(a.layers)} layers, {a.epochs} epochs, {args.probes} probes")
    (pair,) = timed("compare_runs, the pair", lambda: compare_runs([a, b]))
    timed("run_similarity, one run", lambda: run_similarity(a))
    print("same layer, last epoch:", np.round(pair.matched[-1], 2).tolist())
    for name in ("deep1", "deep2"):
        make_store(work / f"{name}.zarr", n_probes=args.probes, layers=deep_layers())
    deep = [open_run(work / f"{name}.zarr") for name in ("deep1", "deep2")]
    (wide,) = timed("compare_runs, two 110-layer stores", lambda: compare_runs(deep))
    print(f"110-layer pair compared as {wide.values.shape[1]} x {wide.values.shape[2]} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
