"""Deep-network build rows for ``bench/render.py --parts deep,demo,linear`` (issue 25).

- ``deep``: default builds of trained deep runs (``--deep-store``, e.g. densenet121 at
  32 px and convnext_tiny at 64 px, 3 epochs, 8 probes), new against ``--baseline`` in
  the same run: wall time, site MB, run page kB, artefacts, and the estimate printed
  before the build against what it took. Targets: <= 90 s, <= 60 MB, <= 500 kB.
- ``demo``: the demo run's default build, new against the baseline, medians of
  alternating runs (target: no slower, no larger).
- ``linear``: a densenet121 recorded through the Recorder for 12 epochs with drifting
  random weights (no training: rendering cost does not depend on why the numbers
  changed), built at 3 and at 12 epochs: time and size per epoch x layer must not grow.
"""

from __future__ import annotations

import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch


def site_bytes(site: Path) -> int:
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file())


def run_page_bytes(site: Path) -> int:
    """The largest run page (``runs/<slug>/index.html``) with what it inlines."""
    return max(p.stat().st_size for p in site.glob("runs/*/index.html"))


def build_once(store: Path, site: Path, code: Path, options: Sequence[str] = ()) -> dict:
    """One clean default CLI build of ``store`` with the ``generator`` found in ``code``:
    seconds, MB, run page kB and the estimate the build printed (new code only)."""
    shutil.rmtree(site, ignore_errors=True)
    command = [sys.executable, "-m", "generator", "build", "--store", str(store)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *options, "--out", str(site)], cwd=code, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode:
        raise SystemExit(f"build in {code} failed: {done.stderr[-2000:]}")
    said = re.search(
        r"a site of about ([\d.]+) (KB|MB|GB), about (?:(\d+) min )?(\d+) s", done.stderr
    )
    estimate = None
    if said:
        scale = {"KB": 2**10, "MB": 2**20, "GB": 2**30}[said[2]]
        estimate = (float(said[1]) * scale / 1e6, int(said[3] or 0) * 60 + int(said[4]))
    made = re.search(r"(\d+) artefacts made", done.stderr)
    return {
        "s": seconds,
        "cpu": cpu,
        "mb": site_bytes(site) / 1e6,
        "page_kb": run_page_bytes(site) / 1e3,
        "artefacts": int(made[1]) if made else 0,
        "estimate": estimate,
    }


def alternate_builds(
    store: Path, work: Path, codes: dict[str, Path], repeats: int
) -> dict[str, dict]:
    """Each code's build of ``store`` in turn, ``repeats`` times; medians of the time (the
    sizes do not change between repeats)."""
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for _ in range(repeats):
        for name, code in codes.items():
            result = build_once(store, work / f"site-{store.stem}-{name}", code)
            print(f"  {store.name} {name}: {result['s']:.1f} s", file=sys.stderr)
            runs[name].append(result)
    return {
        name: {
            **results[-1],
            "s": statistics.median(r["s"] for r in results),
            "cpu": statistics.median(r["cpu"] for r in results),
        }
        for name, results in runs.items()
    }


def deep_rows(stores: Sequence[Path], work: Path, codes: dict[str, Path], repeats: int) -> None:
    """``codes``: today's and the new code, or the new alone (today's default build of a
    densenet121 takes 5 minutes quiet, far more on a shared machine)."""
    from bench.record import print_table

    rows = []
    for store in stores:
        got = alternate_builds(store, work, codes, repeats)
        for name in codes:
            r = got[name]
            estimate = r["estimate"]
            rows.append(
                (
                    f"{store.name}, {name}",
                    f"{r['s']:.1f}",
                    f"{r['cpu']:.1f}",
                    f"{r['mb']:.1f}",
                    f"{r['page_kb']:.0f}",
                    str(r["artefacts"]),
                    f"{estimate[0]:.1f} MB, {estimate[1]} s" if estimate else "-",
                )
            )
    print_table(
        (
            "default build",
            "median wall s",
            "CPU s",
            "site MB",
            "run page kB",
            "artefacts",
            "estimate",
        ),
        rows,
    )
    print("targets: <= 90 s, <= 60 MB, run page <= 500 kB\n")


def demo_rows(demo: Path, work: Path, old: Path, new: Path, repeats: int) -> None:
    from bench.record import print_table

    got = alternate_builds(demo, work, {"today": old, "new": new}, repeats)
    print_table(
        (f"default build of {demo.name}", "median wall s", "CPU s", "site MB", "artefacts"),
        [
            (n, f"{r['s']:.1f}", f"{r['cpu']:.1f}", f"{r['mb']:.1f}", str(r["artefacts"]))
            for n, r in got.items()
        ],
    )
    t, n = got["today"], got["new"]
    print(
        f"new / today: wall {n['s'] / t['s']:.2f}, CPU {n['cpu'] / t['cpu']:.2f}, "
        f"size {n['mb'] / t['mb']:.2f} (<= 1)\n"
    )


def recorded_deep_store(path: Path, model_name: str, size: int, epochs: int) -> Path:
    """``epochs + 1`` epochs of a torchvision model through the Recorder, its weights
    drifting from their random start a little more each epoch (no training)."""
    if path.exists():
        return path
    import torchvision

    from generator import Recorder

    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, weights=None, num_classes=6).eval()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    drift = {n: torch.randn_like(p) * p.detach().std().nan_to_num() for n, p in start.items()}
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8)
    names = [f"class {k}" for k in range(6)]
    rec = Recorder(
        model,
        probes=images,
        probe_labels=[k % 6 for k in range(8)],
        out=path,
        class_names=names,
        overhead=None,
        featviz_layers=(),  # feature visualization runs backward passes: hours here
    )
    for epoch in range(1, epochs + 1):
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(start[name] + drift[name] * 0.1 * (epoch / epochs) ** 0.5)
        rec.epoch(train_loss=1 / epoch, val_loss=1 / epoch, val_accuracy=epoch / (epochs + 1))
        print(f"\r{path.name}: epoch {epoch}/{epochs}", end="", file=sys.stderr)
    rec.close()
    print(file=sys.stderr)
    return path


def linear_rows(work: Path, new: Path, repeats: int, set_committed) -> None:
    """Builds of one densenet121 store at 3 and at 12 epochs (see the module docstring)."""
    from bench.record import print_table
    from generator.store import open_run

    store = recorded_deep_store(work / "densenet121-drift.zarr", "densenet121", 32, 12)
    layers = len(open_run(store).layers)
    got = {}
    for epochs in (3, 12):
        set_committed(store, epochs + 1)
        got[epochs] = alternate_builds(store, work, {f"e{epochs}": new}, repeats)[f"e{epochs}"]
    set_committed(store, 13)
    rows = [
        (
            f"{layers} layers x {e} epochs",
            f"{r['s']:.1f}",
            f"{r['cpu']:.1f}",
            f"{r['mb']:.1f}",
            f"{1e3 * r['cpu'] / (layers * e):.1f}",
            f"{1e3 * r['mb'] / (layers * e):.1f}",
        )
        for e, r in got.items()
    ]
    print_table(
        ("default build", "wall s", "CPU s", "MB", "CPU ms / layer-epoch", "kB / layer-epoch"),
        rows,
    )
    growth = [got[12][k] / got[3][k] for k in ("s", "cpu", "mb")]
    print(
        f"12 / 3 epochs: wall {growth[0]:.2f}x, CPU {growth[1]:.2f}x, size {growth[2]:.2f}x "
        "(linear: <= 4x)\n"
    )
