"""Issue 23's cost row for ``bench/record.py --cost``: what the default Recorder costs a
real training loop, and how fast its store grows.

torchvision resnet18 (10 classes), ``--images`` random 32 px images an epoch (default
10,000), batch 64, SGD; baseline = the same loop without a Recorder, in the same run,
alternating with the recorded one, ``--repeats`` times, medians. Recording = the extra
wall time of an epoch with ``epoch()`` (capture, featviz, examples, the background write
competing with training) plus ``Recorder()`` and ``close()`` spread over 10 epochs, as a
percentage of the baseline epoch (target <= 3 %). The recording time is measured directly
(each ``epoch()``'s wall time, the background writes' own time, ``Recorder()`` and
``close()``), since on a shared machine the difference of two epoch times swings by more
than the 3 % it would measure; the epoch with ``epoch()`` is printed beside it. Growth =
the store's bytes per epoch after epoch 0 / the model's float32 parameter bytes, 8 probes
(target <= 0.5x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from generator import Recorder, open_run

SIZE, CLASSES, SPREAD = 32, 10, 10  # Recorder() and close() are spread over 10 epochs


def _data(images: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 3, SIZE, SIZE), generator=generator)
    return pixels.to(torch.uint8), torch.randint(0, CLASSES, (images,), generator=generator)


def _train_epoch(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    images, labels = data
    for start in range(0, len(images), batch):
        inputs = (images[start : start + batch].float() / 255 - 0.5) / 0.25
        loss = nn.functional.cross_entropy(model(inputs), labels[start : start + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _run(args: argparse.Namespace, data, out: Path | None) -> dict[str, float | list[float]]:
    """One run of ``args.epochs``: epoch wall times, and with ``out`` the Recorder's."""
    torch.manual_seed(0)
    model = resnet18(num_classes=CLASSES)
    times: dict[str, float | list[float]] = {"epochs": []}
    rec = None
    if out is not None:
        start = time.perf_counter()
        rec = Recorder(model, probes=data[0][:8], out=out, gradients=not args.no_gradients)
        times["open"] = time.perf_counter() - start
        opened_writes = rec._writer.write_seconds if rec._writer else 0.0  # epoch 0's, in open
        times["bytes0"] = _bytes(out)
    recording = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        _train_epoch(model, data, args.batch)
        if rec is not None:
            called = time.perf_counter()
            rec.epoch(train_loss=0.0)
            recording.append(time.perf_counter() - called)
        times["epochs"].append(time.perf_counter() - start)  # type: ignore[union-attr]
        print(f"{'recorded' if rec else 'baseline'} epoch: {times['epochs'][-1]:.2f} s")  # type: ignore[index]
    if rec is not None and out is not None:
        start = time.perf_counter()
        writes = rec._writer.write_seconds if rec._writer else 0.0  # the writes' own time
        monitor = rec._epochs.gradients  # the gradient hooks' own time, inside training
        times["monitor"] = (monitor.sampler.seconds if monitor else 0.0) / args.epochs
        rec.close()
        times["close"] = time.perf_counter() - start
        times["calls"] = statistics.median(recording)
        times["writes"] = (writes - opened_writes) / args.epochs  # epoch 0's is in "open"
        times["steps"] = open_run(out).attrs.budget["featviz_steps"]  # type: ignore[index]
        times["growth"] = (_bytes(out) - times["bytes0"]) / args.epochs  # type: ignore[operator]
        times["params"] = sum(p.numel() * 4 for p in model.parameters())
    return times


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def measure_cost(args: argparse.Namespace, folder: Path) -> list[tuple[str, str]]:
    """The table's rows: baseline and recorded epoch medians, the overhead and growth."""
    data = _data(args.images)
    base, recorded, opens, closes, growth, params = [], [], [], [], [], 1.0
    calls, writes, steps, monitors = [], [], [], []
    for repeat in range(args.repeats):
        base += _run(args, data, None)["epochs"]  # type: ignore[operator]
        got = _run(args, data, folder / f"run{repeat}.zarr")
        recorded += got["epochs"]  # type: ignore[operator]
        opens.append(got["open"])
        closes.append(got["close"])
        growth.append(got["growth"])
        calls.append(got["calls"])
        writes.append(got["writes"])
        monitors.append(got["monitor"])
        steps.append(got["steps"])
        params = float(got["params"])  # type: ignore[arg-type]
    epoch, with_rec = statistics.median(base), statistics.median(recorded)
    spread = (statistics.median(opens) + statistics.median(closes)) / SPREAD
    call, write = statistics.median(calls), statistics.median(writes)
    monitor = statistics.median(monitors)
    overhead = (call + write + monitor + spread) / epoch
    return [
        ("training epoch, no Recorder (baseline), s", f"{epoch:.2f}"),
        ("training epoch + epoch() (wall, for comparison), s", f"{with_rec:.2f}"),
        ("epoch() call, s", f"{call:.2f}"),
        ("background write per epoch, s", f"{write:.2f}"),
        ("gradient monitor per epoch (inside backward), s", f"{monitor:.2f}"),
        ("Recorder() + close(), s (spread over 10 epochs)", f"{spread * SPREAD:.2f}"),
        ("featviz steps per epoch (budget), per run", " / ".join(map(str, steps))),
        ("**recording / training epoch** (target <= 3 %)", f"**{overhead:.1%}**"),
        ("store growth per epoch, MB", f"{statistics.median(growth) / 1e6:.1f}"),
        (
            "**growth / float32 parameter bytes** (target <= 0.5x)",
            f"**{statistics.median(growth) / params:.2f}x**",
        ),
    ]
