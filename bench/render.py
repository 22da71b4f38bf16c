"""Rendering and build figures on a reference-sized store, all measured in one run.

    python bench/render.py [--epochs 30] [--probes 8] [--input-size 512] [--skip-memory]

1. Makes a store with the project's own recorder and writer: the reference CNN at 512 px,
   8 probes, ``--epochs`` epochs, and 60 for the memory figure. Training at 512 px on
   CPU would take hours, so the weights are the random init plus a drift that grows each
   epoch (every layer moves, as in training); rendering cost does not depend on why the
   numbers changed.
2. Per-animation render + encode time against a baseline written as a typical user would
   (matplotlib ``FuncAnimation`` + ``PillowWriter``, one ``imshow`` per channel) on the
   same frames; target >= 15x.
3. A full default build, then the no-change rebuild as a share of it (target <= 5 %).
4. Peak memory (RSS of the build and its workers together) of a full build at 15 and at
   60 epochs (target: 60-epoch peak <= 1.2x the 15-epoch peak).
5. The total size of the default build's artefacts per format.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import make_record, print_table  # noqa: E402
from generator.artefacts import layer_scales  # noqa: E402
from generator.encode import write_gif, write_mp4  # noqa: E402
from generator.model import NetlapseCNN  # noqa: E402
from generator.reader import open_run  # noqa: E402
from generator.render.frames import layer_frames  # noqa: E402
from generator.store import StoreWriter  # noqa: E402


def make_store(path: Path, epochs: int, probes: int, size: int) -> Path:
    """A store of ``epochs + 1`` recorded epochs with drifting random weights."""
    torch.manual_seed(0)
    model = NetlapseCNN(6, size).eval()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    drift = {n: torch.randn_like(p) * p.detach().std() for n, p in model.named_parameters()}
    images = torch.rand(probes, 3, size, size)
    writer = StoreWriter.create(
        path,
        class_names=[
            "dawnbreaker",
            "floodzone",
            "silk_road",
            "siege_of_shanghai",
            "lost_islands",
            "zavod_311",
        ],
        layers=model.layer_specs(),
        input_size=size,
        training={"bench": True},
        probe_images=(images * 255).to(torch.uint8).numpy(),
        probe_labels=np.arange(probes) % 6,
        probe_sources=[f"p{i}" for i in range(probes)],
    )
    inputs = images * 2 - 1
    for epoch in range(epochs + 1):
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(start[name] + drift[name] * (epoch / max(epochs, 1)) ** 0.5)
        writer.write_epoch(epoch, make_record(model, inputs))
        print(f"\rstore: epoch {epoch}/{epochs}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return path


def set_committed(path: Path, epochs: int) -> None:
    """Make the store read as if only ``epochs`` were committed (the prefix of a longer run)."""
    meta = path / "zarr.json"
    node = json.loads(meta.read_text())
    node["attributes"]["epochs_committed"] = epochs
    meta.write_text(json.dumps(node))


def ours(values: np.ndarray, scales: tuple[np.ndarray, np.ndarray], out: Path, fmt: str) -> float:
    """Render the grid frames epoch by epoch (as the build does) and encode them."""
    start = time.perf_counter()
    parts = [
        layer_frames(
            values[e][None], scales[0][e : e + 1], scales[1][e : e + 1], captions=f"epoch {e}"
        )
        for e in range(len(values))
    ]
    frames = np.concatenate([part.frames for part in parts])
    if fmt == "gif":
        write_gif(out / "ours.gif", frames, parts[0].palette, duration_ms=250)
    else:
        write_mp4(out / "ours.mp4", frames, parts[0].palette, fps=4)
    return time.perf_counter() - start


def matplotlib_baseline(values: np.ndarray, scale: np.ndarray, out: Path) -> float:
    """What a typical user writes: a subplot per channel, FuncAnimation, PillowWriter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    start = time.perf_counter()
    channels = values.shape[1]
    cols = int(np.ceil(np.sqrt(channels)))
    rows = int(np.ceil(channels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10.24, 10.24), dpi=100)
    images = []
    for c, ax in enumerate(axes.flat):
        ax.axis("off")
        if c < channels:
            limit = float(scale[c]) or 1.0
            images.append(
                ax.imshow(
                    values[0, c].astype(np.float32), cmap="seismic_r", vmin=-limit, vmax=limit
                )
            )

    def update(epoch: int) -> list:
        for c, image in enumerate(images):
            image.set_data(values[epoch, c].astype(np.float32))
        fig.suptitle(f"epoch {epoch}")
        return images

    FuncAnimation(fig, update, frames=len(values)).save(
        out / "baseline.gif", writer=PillowWriter(fps=4)
    )
    plt.close(fig)
    return time.perf_counter() - start


def per_animation(store: Path, out: Path, layers: list[str]) -> list[tuple[str, ...]]:
    run = open_run(store)
    rows = []
    for layer in layers:
        values = run.layer_activations(layer, probe=0)
        scales = layer_scales(run, layer, "channel")
        neg, pos = scales.neg[:, 0], scales.pos[:, 0]
        base = matplotlib_baseline(values, np.maximum(neg, pos).max(axis=0), out)
        ours_gif = ours(values, (neg, pos), out, "gif")
        mp4 = ours(values, (neg, pos), out, "mp4")
        rows.append(
            (
                f"{layer} grid, {values.shape[1]} ch, {len(values)} frames",
                f"{base:.2f}",
                f"{ours_gif:.2f}",
                f"{base / ours_gif:.1f}x",
                f"{mp4:.2f}",
                f"{base / mp4:.1f}x",
            )
        )
    return rows


def timed_build(store: Path, site: Path, extra: list[str] = ()) -> tuple[float, float]:
    """Wall time and peak summed RSS (build + workers + ffmpeg) of one CLI build."""
    command = [
        sys.executable,
        "-m",
        "generator",
        "-q",
        "build",
        "--store",
        str(store),
        "--out",
        str(site),
        *extra,
    ]
    start = time.perf_counter()
    process = psutil.Popen(command, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [process, *process.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = process.wait()
    done.set()
    watcher.join()
    if code:
        raise SystemExit(f"build failed with exit code {code}")
    return time.perf_counter() - start, peak / 2**20


def sizes_by_format(site: Path) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for path in site.rglob("*"):
        if path.is_file():
            key = "poster png" if path.name.endswith(".poster.png") else path.suffix[1:]
            totals[key] += path.stat().st_size
    return {k: v / 2**20 for k, v in sorted(totals.items())}


def report_speed_and_size(store: Path, work: Path) -> None:
    print_table(
        ("animation (probe 1)", "matplotlib s", "ours GIF s", "speed-up", "ours MP4 s", "speed-up"),
        per_animation(store, work, ["block1", "block2", "block5"]),
    )
    site = work / "site"
    full, full_peak = timed_build(store, site)
    again, _ = timed_build(store, site)
    sizes = sizes_by_format(site)
    print()
    print_table(
        ("build (default options, all cores)", "value"),
        [
            ("full build s", f"{full:.1f}"),
            ("no-change rebuild s", f"{again:.2f}"),
            ("rebuild / full", f"{100 * again / full:.1f} %"),
            ("full build peak RSS MB", f"{full_peak:.0f}"),
            *((f"size {fmt} MB", f"{mb:.1f}") for fmt, mb in sizes.items()),
            ("total size MB", f"{sum(sizes.values()):.1f}"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--only-memory", action="store_true", help="only the 15- vs 60-epoch peak memory builds"
    )
    parser.add_argument("--workdir", type=Path, help="keep the store and sites here")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="netlapse-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    longest = max(args.epochs, 0 if args.skip_memory else 60)
    store = work / "reference.zarr"
    if not store.exists():
        make_store(store, longest, args.probes, args.input_size)
    set_committed(store, args.epochs + 1)

    print(
        f"store: {args.epochs + 1} epochs x {args.probes} probes at {args.input_size} px, "
        f"{psutil.cpu_count()} cores\n"
    )
    if not args.only_memory:
        report_speed_and_size(store, work)
    if not args.skip_memory:
        rows = []
        for epochs in (15, 60):
            set_committed(store, epochs + 1)
            shutil.rmtree(work / f"site-{epochs}", ignore_errors=True)
            seconds, peak = timed_build(store, work / f"site-{epochs}")
            rows.append((epochs, seconds, peak))
        print()
        print_table(
            ("full build at", "seconds", "peak RSS MB"),
            [(f"{e} epochs", f"{s:.1f}", f"{p:.0f}") for e, s, p in rows],
        )
        print(f"peak ratio 60 / 15 epochs: {rows[1][2] / rows[0][2]:.2f}")
        set_committed(store, args.epochs + 1)


if __name__ == "__main__":
    main()
