"""Rendering and build figures, new pipeline against today's, all measured in one run.

    python bench/render.py [--epochs 30] [--probes 8] [--input-size 512] [--repeats 3]
                           [--demo-store runs/demo.zarr] [--baseline REV] [--skip-memory]
                           [--parts throughput,animation,bytes,rebuild]

"Today's pipeline" is the code at ``--baseline`` (default: the last commit that encoded
through one ffmpeg process per file), unpacked with ``git archive`` into the work folder
and run by the same Python on the same stores, so both sides differ only in their code.

1. Build throughput: full default builds of the demo run (``--demo-store``, else the
   demo is trained first), baseline and new alternating ``--repeats`` times; medians of
   artefacts per second. Target: new >= 3x. The defaults now make other artefacts (a
   WebM and an MP4 each, dataset-example photographs, per-channel pages for one probe and
   32 channels instead of two probes and all), so a third row builds today's artefact set
   (``TODAYS_SET``: MP4 only, every channel for two probes, every probe's contact sheet)
   with the new code: it also makes the kinds today's code does not (dataset examples,
   feature visualizations, kernel change), so its rate is a lower bound for equal work. A
   fourth row builds ``TODAYS_SET`` from a copy of the demo store without its dataset
   examples and feature visualizations (``without_new_views``): today's 1616 artefacts
   and the 8 kernel-change animations, the same work as today's build.
2. Per animation, every channel grid of the reference store (probe 1): render + encode
   against a baseline written as a typical user would (matplotlib ``FuncAnimation`` +
   ``PillowWriter``, one ``imshow`` per channel) on the same frames; medians of alternating
   repeats, per format. Target >= 15x.
3. Bytes of the default build of the reference store, baseline vs new, per format, and
   the PSNR of decoded video frames against the lossless frames.
4. The no-change rebuild as a share of a full build (target <= 5 %), and peak memory
   (RSS of the build and its workers) at 15 and 60 epochs (target: ratio <= 1.2).

The reference store is made with the project's own recorder and writer: the reference
CNN, ``--probes`` probes at ``--input-size`` px, with random-init weights plus a drift
that grows each epoch (training at 512 px on a CPU takes hours; rendering cost and bytes
do not depend on why the numbers changed, though trained maps compress better).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import make_record, print_table  # noqa: E402
from generator import encode  # noqa: E402
from generator.build.artefacts import layer_scales  # noqa: E402
from generator.model import NetlapseCNN  # noqa: E402
from generator.render.frames import layer_frames_by_epoch  # noqa: E402
from generator.render.layout import pad_frames  # noqa: E402
from generator.store import StoreWriter, open_run  # noqa: E402
from generator.store import _schema as schema  # noqa: E402

BASELINE = "6c594f3"  # the last commit with one ffmpeg process per file (imageio-ffmpeg)
CLASSES = ["dawnbreaker", "floodzone", "silk_road", "siege_of_shanghai", "lost_islands", "x"]


def make_store(path: Path, epochs: int, probes: int, size: int) -> Path:
    """A store of ``epochs + 1`` recorded epochs with drifting random weights."""
    torch.manual_seed(0)
    model = NetlapseCNN(6, size).eval()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    drift = {n: torch.randn_like(p) * p.detach().std() for n, p in model.named_parameters()}
    images = torch.rand(probes, 3, size, size)
    writer = StoreWriter.create(
        path,
        class_names=CLASSES,
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


def baseline_code(work: Path, rev: str) -> Path:
    """Today's pipeline: ``generator/`` and ``templates/`` of ``rev``, unpacked under ``work``."""
    folder = work / f"baseline-{rev}"
    if not (folder / "generator").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "generator", "templates"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def timed_build(
    store: Path, site: Path, code: Path = ROOT, options: Sequence[str] = ()
) -> tuple[float, float, int]:
    """Wall time, peak summed RSS (build + workers + encoders) and artefacts of one clean
    CLI build (default unless ``options``), with the ``generator`` package found in
    ``code``."""
    shutil.rmtree(site, ignore_errors=True)
    command = [sys.executable, "-m", "generator", "-q", "build", "--store", str(store)]
    command += options
    start = time.perf_counter()
    process = psutil.Popen([*command, "--out", str(site)], cwd=code)
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
    code_ = process.wait()
    done.set()
    watcher.join()
    if code_:
        raise SystemExit(f"build in {code} failed with exit code {code_}")
    seconds = time.perf_counter() - start
    artefacts = len(json.loads((site / "manifest.json").read_text())["artefacts"])
    return seconds, peak / 2**20, artefacts


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, called in turn ``repeats`` times (so a busier
    minute slows both sides alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(t) for name, t in times.items()}


# -- 1. build throughput ------------------------------------------------------------------
# Today's default artefacts, asked of the new code (see the module docstring).
TODAYS_SET = ("--formats", "mp4", "--channel-pages", "100000", "--channel-probes", "2")
TODAYS_SET += ("--contact-probes", "100000")


def without_new_views(store: Path, copy: Path) -> Path:
    """A copy of ``store`` without the groups that today's code never read (dataset
    examples and feature visualizations), so the new code builds no more than today's.
    Edits the root ``zarr.json`` by hand: schema-v1 stores keep no consolidated metadata,
    so removing the groups and their root attributes is the whole change."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    for group in (schema.EXAMPLES, schema.EXAMPLE_POOL, schema.FEATVIZ):
        shutil.rmtree(copy / group, ignore_errors=True)
    meta = copy / "zarr.json"
    node = json.loads(meta.read_text())
    for key in (schema.EXAMPLES, schema.FEATVIZ):
        node["attributes"].pop(key, None)
    meta.write_text(json.dumps(node))
    return copy


def build_throughput(demo: Path, work: Path, old: Path, repeats: int) -> None:
    counts: dict[str, int] = {}
    plain = without_new_views(demo, work / "demo-without-new-views.zarr")

    def run(
        name: str, code: Path, options: Sequence[str] = (), store: Path = demo
    ) -> Callable[[], float]:
        def once() -> float:
            site = work / ("demo-site-" + "".join(c if c.isalnum() else "-" for c in name))
            seconds, _, counts[name] = timed_build(store, site, code, options)
            print(f"  {name} build of the demo: {seconds:.1f} s", file=sys.stderr)
            return seconds

        return once

    runs = {"today": run("today", old), "new": run("new", ROOT)}
    runs["new, today's set"] = run("new, today's set", ROOT, TODAYS_SET)
    runs["new, today's set only"] = run("new, today's set only", ROOT, TODAYS_SET, plain)
    medians = alternate(runs, repeats)
    rate = {name: counts[name] / medians[name] for name in medians}
    print_table(
        (f"full build of {demo.name}", "median s", "artefacts", "artefacts/s"),
        [(n, f"{medians[n]:.1f}", str(counts[n]), f"{rate[n]:.1f}") for n in medians],
    )
    print(f"throughput new / today, default builds: {rate['new'] / rate['today']:.2f}x")
    same = rate["new, today's set"] / rate["today"]
    print(f"throughput new / today, today's artefacts and more: {same:.2f}x")
    only = rate["new, today's set only"] / rate["today"]
    print(f"throughput new / today, today's artefacts only: {only:.2f}x (target >= 3x)\n")


# -- 2. per animation ---------------------------------------------------------------------
def render_grid(values: np.ndarray, neg: np.ndarray, pos: np.ndarray):
    """The grid frames epoch by epoch, as the build renders them."""
    captions = [f"epoch {e}" for e in range(len(values))]
    frames = layer_frames_by_epoch(lambda e: values[e], neg, pos, captions=captions)
    return frames.frames, frames.palette


def ours(values: np.ndarray, neg: np.ndarray, pos: np.ndarray, out: Path, fmt: str) -> float:
    """Render + encode one grid animation in ``fmt`` (gif, webm or mp4)."""
    start = time.perf_counter()
    frames, palette = render_grid(values, neg, pos)
    if fmt == "gif":
        encode.write_gif(out / "ours.gif", frames, palette, duration_ms=250)
    else:
        encode.write_video(out / f"ours.{fmt}", frames, palette, codec=encode.VIDEO_CODECS[fmt])
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
    for c, ax in enumerate(np.ravel(axes)):
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


def per_animation(store: Path, out: Path, repeats: int) -> None:
    run = open_run(store)
    rows, worst = [], np.inf
    for layer in [spec.name for spec in run.layers if spec.is_conv]:
        values = run.layer_activations(layer, probe=0)
        scales = layer_scales(run, layer, "channel")
        neg, pos = scales.neg[:, 0], scales.pos[:, 0]
        scale = np.maximum(neg, pos).max(axis=0)
        medians = alternate(
            {
                "matplotlib": lambda v=values, s=scale: matplotlib_baseline(v, s, out),
                **{
                    fmt: lambda f=fmt, v=values, n=neg, p=pos: ours(v, n, p, out, f)
                    for fmt in ("gif", "webm", "mp4")
                },
            },
            repeats,
        )
        base = medians.pop("matplotlib")
        worst = min(worst, *(base / s for s in medians.values()))
        rows.append(
            (
                f"{layer} grid, {values.shape[1]} ch, {len(values)} frames",
                f"{base:.2f}",
                *(f"{medians[f]:.2f} ({base / medians[f]:.1f}x)" for f in ("gif", "webm", "mp4")),
            )
        )
    print_table(
        ("animation (probe 1)", "matplotlib GIF s", "ours GIF s", "ours WebM s", "ours MP4 s"),
        rows,
    )
    print(f"slowest speed-up over matplotlib: {worst:.1f}x (target >= 15x)\n")


# -- 3. bytes and quality -----------------------------------------------------------------
def sizes_by_format(site: Path) -> Counter[str]:
    totals: Counter[str] = Counter()
    for path in site.rglob("*"):
        if path.is_file():
            key = "poster png" if path.name.endswith(".poster.png") else path.suffix[1:]
            totals[{"png": "contact png"}.get(key, key)] += path.stat().st_size
    return totals


def video_psnr(store: Path, out: Path) -> list[tuple[str, ...]]:
    """PSNR (dB, RGB) of decoded frames against the lossless frames, over every conv
    layer's grid (probe 1), for today's MP4 settings and each new format."""
    import av

    today = encode.VideoCodec(
        "mp4", "libx264", {"crf": "20", "preset": "veryfast"}, ("threads", "{}")
    )
    codecs = {"today: H.264 CRF 20 veryfast": today, **encode.VIDEO_CODECS}
    run, errors = open_run(store), {name: [] for name in codecs}
    sizes = dict.fromkeys(codecs, 0)
    for layer in [spec.name for spec in run.layers if spec.is_conv]:
        scales = layer_scales(run, layer, "channel")
        values = run.layer_activations(layer, probe=0)
        frames, palette = render_grid(values, scales.neg[:, 0], scales.pos[:, 0])
        even = pad_frames(frames, 2, 253)
        for name, codec in codecs.items():
            path = encode.write_video(out / f"q.{codec.container}", frames, palette, codec=codec)
            sizes[name] += path.stat().st_size
            with av.open(str(path)) as container:
                decoded = np.stack(
                    [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
                )
            diff = decoded.astype(np.float64) - palette[even]
            errors[name].append(float(np.mean(diff**2)))
    return [
        (
            name,
            " ".join(f"{k}={v}" for k, v in codecs[name].options.items()),
            f"{10 * np.log10(255**2 / np.mean(errors[name])):.2f}",
            f"{sizes[name] / 2**20:.2f}",
        )
        for name in codecs
    ]


def bytes_and_quality(store: Path, work: Path, old: Path) -> tuple[float, float]:
    """Print bytes per format of both pipelines and the PSNR table; returns the new full
    build's seconds and peak RSS MB."""
    builds, new = {}, (0.0, 0.0)
    for name, code in (("today", old), ("new", ROOT)):
        seconds, peak, _ = timed_build(store, work / f"ref-site-{name}", code)
        new = (seconds, peak)
        builds[name] = sizes_by_format(work / f"ref-site-{name}")
        print(f"  {name} build of the reference store: {seconds:.1f} s", file=sys.stderr)
    formats = sorted(set(builds["today"]) | set(builds["new"]))
    mb = {name: {f: builds[name][f] / 2**20 for f in formats} for name in builds}
    total = {name: sum(mb[name].values()) for name in mb}
    print_table(
        (f"default build of {store.name}", "today MB", "new MB"),
        [
            *((f, f"{mb['today'][f]:.1f}", f"{mb['new'][f]:.1f}") for f in formats),
            ("total", f"{total['today']:.1f}", f"{total['new']:.1f}"),
        ],
    )
    print(f"bytes new / today: {total['new'] / total['today']:.2f} (target <= 0.5)\n")
    print_table(
        ("video settings", "options", "PSNR dB vs lossless", "MB (conv grids)"),
        video_psnr(store, work),
    )
    print()
    return new


# -- 4. rebuild and memory ----------------------------------------------------------------
def rebuild_and_memory(
    store: Path, work: Path, full: tuple[float, float], epochs: int, *, memory: bool
) -> None:
    """The no-change rebuild of the new site just built in ``full`` (seconds, peak MB)."""
    site, (full, peak) = work / "ref-site-new", full
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "generator",
            "-q",
            "build",
            "--store",
            str(store),
            "--out",
            str(site),
        ],
        cwd=ROOT,
        check=True,
    )
    again = time.perf_counter() - start
    rows = [
        ("full build s", f"{full:.1f}"),
        ("no-change rebuild s", f"{again:.2f}"),
        ("rebuild / full (target <= 5 %)", f"{100 * again / full:.1f} %"),
        ("full build peak RSS MB", f"{peak:.0f}"),
    ]
    if memory:
        peaks = {}
        for shown in (15, 60):
            set_committed(store, shown + 1)
            peaks[shown] = timed_build(store, work / f"site-{shown}")[1]
            rows.append((f"full build at {shown} epochs, peak RSS MB", f"{peaks[shown]:.0f}"))
        rows.append(("peak ratio 60 / 15 epochs (target <= 1.2)", f"{peaks[60] / peaks[15]:.2f}"))
        set_committed(store, epochs + 1)
    print_table(("build (new, default options, all cores)", "value"), rows)


def deep_parts(args: argparse.Namespace, parts: set[str]) -> None:
    """Issue 25's rows (bench/deep.py): deep runs, the demo and growth with epochs."""
    from bench import deep

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="netlapse-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = baseline_code(work, args.baseline)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    new = baseline_code(work, commit)  # the committed code: a shared tree changes under us
    print(
        f"today = {args.baseline}, new = {commit}; {psutil.cpu_count()} cores; load average "
        f"{' '.join(f'{x:.1f}' for x in psutil.getloadavg())}; medians of {args.repeats} "
        "alternating runs\n"
    )
    if "deep" in parts:
        codes = {"today": old, "new": new} if args.deep_today else {"new": new}
        deep.deep_rows([s.resolve() for s in args.deep_store], work, codes, args.repeats)
    if "demo" in parts:
        if args.demo_store is None:
            raise SystemExit("--parts demo needs --demo-store")
        deep.demo_rows(args.demo_store.resolve(), work, old, new, args.repeats)
    if "linear" in parts:
        deep.linear_rows(work, new, args.repeats, set_committed)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per median")
    parser.add_argument("--demo-store", type=Path, help="a demo run (default: train one)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of today's pipeline")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the stores and sites here")
    parser.add_argument(
        "--parts",
        default="throughput,animation,bytes,rebuild",
        help="which measurements, comma-separated (default: the first four); deep, demo and "
        "linear are issue 25's deep-network rows (bench/deep.py)",
    )
    parser.add_argument(
        "--deep-store",
        type=Path,
        action="append",
        default=[],
        help="a trained deep run for --parts deep (repeat), e.g. densenet121 at 32 px",
    )
    parser.add_argument(
        "--deep-today", action="store_true", help="--parts deep: build with today's code too"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts <= {"deep", "demo", "linear"}:
        deep_parts(args, parts)
        return
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="netlapse-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)  # absolute: builds run from two code folders
    old = baseline_code(work, args.baseline)
    demo = (args.demo_store or work / "demo.zarr").resolve()
    if not demo.exists() and "throughput" in parts:
        command = [sys.executable, "-m", "generator", "-q", "train", "--out", str(demo)]
        subprocess.run(command, cwd=ROOT, check=True)
    store = work / "reference.zarr"
    if not store.exists():
        make_store(
            store, max(args.epochs, 0 if args.skip_memory else 60), args.probes, args.input_size
        )
    set_committed(store, args.epochs + 1)
    print(
        f"reference store: {args.epochs + 1} epochs x {args.probes} probes at "
        f"{args.input_size} px; today = {args.baseline}; {psutil.cpu_count()} cores; "
        f"medians of {args.repeats} alternating runs\n"
    )
    if "throughput" in parts:
        build_throughput(demo, work, old, args.repeats)
    if "animation" in parts:
        per_animation(store, work, args.repeats)
    if "bytes" in parts or "rebuild" in parts:
        full = bytes_and_quality(store, work, old)
        if "rebuild" in parts:
            rebuild_and_memory(store, work, full, args.epochs, memory=not args.skip_memory)


if __name__ == "__main__":
    main()
