"""Recording overhead at the reference config: what capture + store write cost per epoch.

    python bench/record.py [--probes 8] [--input-size 512] [--repeats 3] [--layouts]
    python bench/record.py --model resnet18 --input-size 224 [--repeats 5] [--loop-epochs 3]

With ``--model`` (any torchvision classifier, untrained) the Recorder's default layers are
measured instead: a bare no-grad forward, the capture alone and ``Recorder.epoch()`` (the
capture and the hand-over of the record to the write thread: what the training loop waits
for) are timed in turn, ``--repeats`` times alternating, then the background write until
it is committed; the medians are printed with the ratio epoch() / bare forward (target
<= 1.5) and, for the whole cost, (epoch() + write) / bare forward.

Everything is measured in this one run on this machine and printed as a table:
a bare no-grad forward pass of the probes (the baseline), the same pass with the recorder's
hooks and statistics, the store write of one epoch, one training step at batch 16, and the
ratio (capture + write) / bare forward (target <= 1.5). ``--layouts`` adds the chunk-layout
and codec comparison quoted in docs/store.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
import zarr.codecs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timed  # noqa: E402  (bench/timing.py, beside this script)

from generator.model import NetlapseCNN  # noqa: E402
from generator.record.hooks import capture_outputs, untouched  # noqa: E402
from generator.store import EpochRecord, StoreWriter  # noqa: E402


def make_record(model: NetlapseCNN, probes: torch.Tensor) -> EpochRecord:
    """What ``Recorder.epoch()`` captures (the same hooks), as the store takes it."""
    with untouched(model), capture_outputs(model.recorded_modules(), dtype=torch.float16) as got:
        logits = model(probes)
    k = model.head.logits.out_features
    return EpochRecord(
        activations={name: value.numpy() for name, value in got.activations.items()},
        channel_stats={
            name: {stat: value.numpy() for stat, value in stats.items()}
            for name, stats in got.channel_stats.items()
        },
        kernels={n: b.conv.weight.detach().numpy() for n, b in model.blocks()},
        weight_change={n: 0.0 for n in model.weights()},
        probe_probs=torch.softmax(logits, dim=1).numpy(),
        confusion=np.zeros((k, k), np.int64),
        scalars={},
    )


def measure_recording(args: argparse.Namespace, folder: Path) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    model = NetlapseCNN(6, args.input_size).eval()
    probes = torch.randn(args.probes, 3, args.input_size, args.input_size)
    with torch.no_grad():
        bare = timed(lambda: model(probes), args.repeats)
    capture = timed(lambda: make_record(model, probes), args.repeats)
    record = make_record(model, probes)
    writer = StoreWriter.create(
        folder / "bench.zarr",
        class_names=[f"c{i}" for i in range(6)],
        layers=model.layer_specs(),
        input_size=args.input_size,
        training={},
        probe_images=np.zeros((args.probes, 3, args.input_size, args.input_size), np.uint8),
        probe_labels=np.zeros(args.probes, np.int64),
        probe_sources=[""] * args.probes,
    )
    epoch = iter(range(1000))
    write = timed(lambda: writer.write_epoch(next(epoch), record), args.repeats)
    batch = torch.randn(16, 3, args.input_size, args.input_size)
    labels = torch.randint(0, 6, (16,))
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), labels).backward()
        optimizer.step()

    train_step = timed(step, max(1, args.repeats - 1))
    return [
        ("bare no-grad forward of the probes (baseline)", bare),
        ("capture with hooks + channel statistics", capture),
        ("store write of one epoch", write),
        ("one training step, batch 16", train_step),
        ("ratio (capture + write) / bare forward", (capture + write) / bare),
    ]


def measure_model(args: argparse.Namespace, folder: Path) -> list[tuple[str, str]]:
    """Bare forward, capture and ``Recorder.epoch()`` of a torchvision model, alternating."""
    from generator.data import to_model_input
    from generator.model import build_model
    from generator.record.recorder import Recorder

    torch.manual_seed(0)
    model = build_model(args.model, num_classes=6).eval()
    size = args.input_size
    images = torch.randint(0, 256, (args.probes, 3, size, size), dtype=torch.uint8)
    inputs = to_model_input(images)
    # epoch 0 is the warm-up. Feature visualizations (on by default for the first two conv
    # layers) are measured on their own by bench/featviz.py: this compares capture + write.
    rec = Recorder(model, probes=images, out=folder / "bench.zarr", featviz_layers=[])
    modules = {spec.name: model.get_submodule(spec.module) for spec in rec.layers}

    def bare() -> None:
        with torch.no_grad():
            model(inputs)

    def capture() -> None:
        with untouched(model), capture_outputs(modules, dtype=torch.float16) as got:
            model(inputs)
        {name: value.numpy() for name, value in got.activations.items()}

    def record() -> None:
        """``Recorder.epoch()`` as a loop waits for it: the previous epoch's write is
        done (a training epoch lasts far longer than a write), so the flush before it is
        the training time, not counted; the write after it is timed on its own."""
        rec.flush()
        start = time.perf_counter()
        rec.epoch()
        times["record"].append(time.perf_counter() - start)
        rec.flush()
        times["write"].append(time.perf_counter() - start - times["record"][-1])

    times: dict[str, list[float]] = {"bare": [], "capture": [], "record": [], "write": []}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("capture", capture)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        record()
    rec.close()
    megabytes = sum(args.probes * 2 * int(np.prod(spec.shape)) for spec in rec.layers) / 2**20
    median = {name: statistics.median(values) for name, values in times.items()}
    ratios = [r / b for r, b in zip(times["record"], times["bare"], strict=True)]
    whole = [
        (r + w) / b for r, w, b in zip(times["record"], times["write"], times["bare"], strict=True)
    ]
    return [
        ("recorded layers (default choice)", f"{len(rec.layers)}"),
        ("activations per epoch, float16 MB", f"{megabytes:.1f}"),
        ("bare no-grad forward of the probes (baseline)", f"{median['bare']:.3f}"),
        ("capture with hooks + channel statistics", f"{median['capture']:.3f}"),
        ("Recorder.epoch(): what the training loop waits for", f"{median['record']:.3f}"),
        ("store write on the write thread, after epoch() returned", f"{median['write']:.3f}"),
        (
            "ratio epoch() / bare forward, medians (target <= 1.5)",
            f"{median['record'] / median['bare']:.2f}",
        ),
        ("ratio, median of the paired repetitions", f"{statistics.median(ratios):.2f}"),
        (
            "ratio with the write waited for too (epoch() + flush())",
            f"{statistics.median(whole):.2f}",
        ),
    ]


def measure_loop(args: argparse.Namespace, folder: Path) -> list[tuple[str, str]]:
    """What recording adds to a real training loop: ``--loop-epochs`` epochs of
    ``--loop-steps`` Adam steps (batch 16), with and without the Recorder, alternating
    ``--repeats`` times; the write thread competes for the same cores, so this is the
    whole cost as a user's loop feels it, in units of the bare probe forward. The Recorder
    runs with its gradient hooks (the default) and without (``gradients=False``), so their
    share (hooks on every backward pass, histograms at each record) is its own row."""
    from generator.data import to_model_input
    from generator.model import build_model
    from generator.record.recorder import Recorder

    size = args.input_size
    images = torch.randint(0, 256, (args.probes, 3, size, size), dtype=torch.uint8)
    batch = torch.randn(16, 3, size, size)
    labels = torch.arange(16) % 6

    def loop(run: int, *, record: bool, gradients: bool = True) -> float:
        torch.manual_seed(0)
        model = build_model(args.model, num_classes=6)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        rec = None
        if record:  # epoch 0 (the constructor) is set-up, not timed
            out = folder / f"loop{run}.zarr"
            out = out.with_name(f"{out.stem}{'' if gradients else '-off'}.zarr")
            rec = Recorder(model, probes=images, out=out, featviz_layers=[], gradients=gradients)
        start = time.perf_counter()
        for _ in range(args.loop_epochs):
            model.train()
            for _ in range(args.loop_steps):
                loss = torch.nn.functional.cross_entropy(model(batch), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if rec is not None:
                rec.epoch(train_loss=loss)
        if rec is not None:
            rec.flush()  # the last write counts too
        elapsed = time.perf_counter() - start
        if rec is not None:
            rec.close()
        return elapsed

    model = build_model(args.model, num_classes=6).eval()
    inputs = to_model_input(images)

    def forward() -> None:
        with torch.no_grad():
            model(inputs)

    bare = timed(forward, args.repeats)
    times: dict[str, list[float]] = {"bare": [], "off": [], "on": []}
    for run in range(args.repeats):
        times["bare"].append(loop(run, record=False))
        times["off"].append(loop(run, record=True, gradients=False))
        times["on"].append(loop(run, record=True))
    without, with_rec = statistics.median(times["bare"]), statistics.median(times["on"])
    no_gradients = statistics.median(times["off"])
    added = (with_rec - without) / args.loop_epochs
    return [
        (
            f"loop without the Recorder, {args.loop_epochs} epochs x {args.loop_steps} steps",
            f"{without:.2f}",
        ),
        ("the same loop recording every epoch (last write flushed)", f"{with_rec:.2f}"),
        ("added per epoch", f"{added:.3f}"),
        ("bare no-grad forward of the probes (baseline)", f"{bare:.3f}"),
        ("added per epoch / bare forward", f"{added / bare:.2f}"),
        ("loop slowdown", f"{100 * (with_rec / without - 1):.1f} %"),
        ("the same loop recording with gradients=False", f"{no_gradients:.2f}"),
        ("loop slowdown, gradients=False", f"{100 * (no_gradients / without - 1):.1f} %"),
        (
            "gradients' own share of the loop (on - off)",
            f"{100 * (with_rec - no_gradients) / without:.1f} %",
        ),
    ]


def measure_layouts(args: argparse.Namespace, folder: Path) -> list[tuple[str, ...]]:
    """Write 3 epochs of block1-block8 activations under each layout; read one probe back."""
    model = NetlapseCNN(6, args.input_size).eval()
    acts = make_record(
        model, torch.randn(args.probes, 3, args.input_size, args.input_size)
    ).activations
    convs = {n: a for n, a in acts.items() if a.ndim == 4}
    codecs = {
        "blosc lz4 1 shuffle": zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
        "blosc zstd 3 shuffle": zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        "none": None,
    }
    rows = []
    for layout in ("probe", "channel"):
        for codec_name, codec in codecs.items():
            if layout == "channel" and codec_name != "blosc lz4 1 shuffle":
                continue
            rows.append(
                _one_layout(
                    folder / f"{layout}-{codec_name}.zarr", convs, layout, codec_name, codec
                )
            )
    return rows


def _one_layout(
    path: Path, convs: dict[str, np.ndarray], layout: str, codec_name: str, codec: object
) -> tuple[str, ...]:
    group = zarr.open_group(str(path), mode="w")
    arrays = {}
    for name, value in convs.items():
        chunk = (1, 1, *value.shape[1:]) if layout == "probe" else (1, 1, 1, *value.shape[2:])
        arrays[name] = group.create_array(
            name, shape=(0, *value.shape), chunks=chunk, dtype=value.dtype, compressors=codec
        )
    writes = []
    for epoch in range(3):
        start = time.perf_counter()
        for name, value in convs.items():
            arrays[name].resize((epoch + 1, *value.shape))
            arrays[name][epoch] = value
        writes.append(time.perf_counter() - start)
    start = time.perf_counter()
    for name in convs:
        np.asarray(arrays[name][:, 0])
    read = time.perf_counter() - start
    files = sum(1 for p in path.rglob("*") if p.is_file() and "c" in p.relative_to(path).parts) // 3
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 3 / 2**20
    return (
        f"one chunk per {layout}",
        codec_name,
        f"{statistics.median(writes):.3f}",
        f"{files}",
        f"{size:.1f}",
        f"{read:.3f}",
    )


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, help="3, or 5 alternating ones with --model")
    parser.add_argument("--layouts", action="store_true", help="also compare chunk layouts")
    parser.add_argument("--model", help="a torchvision classifier, recorded by the Recorder")
    parser.add_argument(
        "--loop-epochs", type=int, default=0, help="with --model: also time a training loop"
    )
    parser.add_argument("--loop-steps", type=int, default=4, help="training steps per epoch")
    parser.add_argument("--cost", action="store_true", help="issue 23: resnet18 loop cost")
    parser.add_argument("--images", type=int, default=10_000, help="with --cost: per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="with --cost: per run")
    parser.add_argument("--batch", type=int, default=64, help="with --cost: batch size")
    parser.add_argument(
        "--no-gradients", action="store_true", help="with --cost: Recorder(gradients=False)"
    )
    args = parser.parse_args()
    if args.cost:
        from cost import measure_cost  # bench/cost.py, beside this script

        args.repeats = args.repeats or 2
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, resnet18 at 32 px, "
            f"{args.images} images x {args.epochs} epochs, {args.repeats} alternating runs\n"
        )
        with tempfile.TemporaryDirectory() as tmp:
            print_table(("measurement", "value"), measure_cost(args, Path(tmp)))
        return
    args.repeats = args.repeats or (5 if args.model else 3)
    if args.model:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, "
            f"{args.probes} probes at {args.input_size}x{args.input_size}, "
            f"{args.repeats} alternating repetitions\n"
        )
        with tempfile.TemporaryDirectory() as tmp:
            print_table(("measurement", "seconds / ratio"), measure_model(args, Path(tmp)))
            if args.loop_epochs:
                print()
                print_table(
                    ("in a training loop", "seconds / ratio"), measure_loop(args, Path(tmp))
                )
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.probes} probes at {args.input_size}x{args.input_size}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure_recording(args, Path(tmp))
        print_table(
            ("measurement", "seconds / ratio"), [(name, f"{value:.3f}") for name, value in rows]
        )
        if args.layouts:
            print()
            print_table(
                (
                    "layout",
                    "codec",
                    "write s/epoch",
                    "files/epoch",
                    "MB/epoch",
                    "read 1 probe x 8 layers x 3 epochs s",
                ),
                measure_layouts(args, Path(tmp)),
            )


if __name__ == "__main__":
    main()
