"""``python -m generator <command>``: parse arguments and call one stage. Wiring only.

``main(argv=None)`` is a plain function so tests call the CLI directly. Every
``NetlapseError`` becomes one line on stderr and a non-zero exit code; only a bug shows a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from generator.errors import NetlapseError

log = logging.getLogger("generator")

EXAMPLES = """examples:
  python -m generator train --out runs/demo.zarr --epochs 2 --input-size 128
  python -m generator train --data screenshots/ --out runs/bf4.zarr --epochs 30
  python -m generator info runs/demo.zarr
  python -m generator ingest clip.mp4 --label floodzone --out screenshots/ --every 15
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the CNN and record every layer and kernel per epoch",
        description="Train the reference CNN on an ImageFolder dataset (DIR/<class>/<image>) "
        "or, without --data, on generated demo data. Every epoch (and epoch 0, the untrained "
        "network) writes all layer activations for the probe images, all conv kernels and "
        "the metrics into one zarr v3 store.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="ImageFolder root; omit to use the demo data")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the run store to create, e.g. runs/demo.zarr (refused if it exists, unless --resume)",
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs to train in total (10)")
    p.add_argument(
        "--input-size",
        type=int,
        help="square input size in pixels (default: 128 for the demo data, 512 for --data)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="training batch size (16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (0.001)")
    p.add_argument(
        "--probes",
        type=int,
        default=8,
        help="probe images recorded each epoch, "
        "spread across classes from the validation split (8)",
    )
    p.add_argument(
        "--probe-images",
        type=Path,
        nargs="+",
        default=(),
        metavar="FILE",
        help="record these images instead of picking probes",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of each class held out for validation (0.2)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for the split, shuffling, "
        "weights and demo data; same seed + data = identical store on CPU (0)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (auto)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint, appending to the same store",
    )
    p.add_argument(
        "--activation-dtype",
        default="float16",
        help="float16 | float32 (float16 halves the store and keeps 3 significant digits)",
    )
    p.add_argument(
        "--channels",
        type=_int_list,
        default=None,
        metavar="C1,C2,...",
        help="output channels per block (16,32,32,64,64,128,128,256)",
    )
    p.add_argument("--kernel-size", type=int, default=5, help="conv kernel size (5)")
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=2,
        help="newest checkpoints to keep beside the store; 0 keeps all (2)",
    )
    p.add_argument(
        "--demo-per-class", type=int, default=120, help="demo images generated per class (120)"
    )
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from generator.architecture import REFERENCE_CHANNELS
    from generator.config import TrainConfig
    from generator.train import run_training

    config = TrainConfig(
        out=args.out,
        data=args.data,
        epochs=args.epochs,
        input_size=args.input_size,
        batch_size=args.batch_size,
        lr=args.lr,
        probes=args.probes,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        resume=args.resume,
        activation_dtype=args.activation_dtype,
        probe_images=tuple(args.probe_images),
        channels=args.channels or REFERENCE_CHANNELS,
        kernel_size=args.kernel_size,
        keep_checkpoints=args.keep_checkpoints,
        demo_per_class=args.demo_per_class,
    )
    run_training(config)
    return 0


def add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="turn a gameplay video into a class folder of square frames",
        description="Read VIDEO with ffmpeg (bundled by imageio-ffmpeg), keep every N-th "
        "frame, centre-crop it to SIZE x SIZE, drop frames darker than the threshold and "
        "write PNGs into OUT/LABEL/. Re-running adds no duplicates.",
    )
    p.add_argument("video", type=Path, help="the video file (mp4, mkv, webm, ...)")
    p.add_argument("--label", required=True, help="class name: the folder under --out")
    p.add_argument("--out", type=Path, required=True, help="dataset root (ImageFolder)")
    p.add_argument("--size", type=int, default=512, help="square crop size (512)")
    p.add_argument("--every", type=int, default=1, help="keep every N-th frame (1)")
    p.add_argument(
        "--dark-threshold",
        type=float,
        default=16.0,
        help="drop frames whose mean brightness (0-255) is below this (16)",
    )
    p.set_defaults(handler=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from generator.data import ingest_video

    report = ingest_video(
        args.video,
        args.label,
        args.out,
        size=args.size,
        every=args.every,
        dark_threshold=args.dark_threshold,
    )
    log.info(
        "%s: read %d frames, kept %d, dropped %d dark, %d already there -> %s",
        args.video,
        report.read,
        report.kept,
        report.dropped_dark,
        report.existing,
        report.out_dir,
    )
    return 0


def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a run store",
        description="Print a run store's classes, layers with shapes, "
        "committed epochs, size on disk and the last epoch's metrics.",
    )
    p.add_argument("store", type=Path, help="a run store made by `train`")
    p.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from generator.info import summarise_run
    from generator.reader import open_run

    print(summarise_run(open_run(args.store)))
    return 0


def add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="render animations and the gallery from run stores",
        description="Turn run stores into GIF/MP4 evolution animations (channel grids, "
        "single channels, kernels, class probabilities), contact sheets and a manifest in "
        "--out. Incremental: only artefacts whose inputs changed are re-made. Without "
        "--store, every runs/*.zarr is built; with none there, the demo run is trained.",
        epilog="examples:\n  python -m generator build\n"
        "  python -m generator build --store runs/demo.zarr --out site/\n"
        "  python -m generator build --store runs/a.zarr --store runs/b.zarr --formats mp4 "
        "--scale layer --layers block1,block2 --probes 1,2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--store",
        type=Path,
        action="append",
        default=[],
        metavar="STORE",
        help="a run store (repeat for several); default: every runs/*.zarr",
    )
    p.add_argument("--out", type=Path, default=Path("site"), help="site folder (site/)")
    p.add_argument(
        "--formats",
        default="auto",
        help="auto | gif | mp4 | gif,mp4. auto: "
        "MP4 at --max-side plus a GIF at most --gif-max-side px for grids, "
        "kernels and probes; per-channel animations MP4 only (auto)",
    )
    p.add_argument(
        "--colormap",
        default="seed",
        help="seed (red < 0 < blue on black) | diverging (red < 0 < blue on white) (seed)",
    )
    p.add_argument(
        "--scale",
        default="channel",
        help="frame | channel | layer: which "
        "values share one colour scale (channel: one per channel over all epochs)",
    )
    p.add_argument("--layers", type=_name_list, help="only these layers, e.g. block1,block2")
    p.add_argument("--probes", type=_int_list, help="only these probes, numbered from 1")
    p.add_argument(
        "--channel-probes",
        type=int,
        default=2,
        help="how many of the selected probes get per-channel animations (2)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel worker processes (all cores)",
    )
    p.add_argument("--fps", type=float, default=4.0, help="epochs per second (4)")
    p.add_argument(
        "--max-side",
        type=int,
        default=1024,
        help="largest frame side in px; bigger grids are downscaled (1024)",
    )
    p.add_argument(
        "--channel-side", type=int, default=256, help="side of per-channel animations in px (256)"
    )
    p.add_argument(
        "--gif-max-side",
        type=int,
        default=256,
        help="with --formats auto, GIFs (a light fallback and thumbnail) are "
        "rendered at most this big (256)",
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("runs"),
        help="where stores are looked for without --store (runs/)",
    )
    p.set_defaults(handler=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from generator.build import build, discover_stores
    from generator.config import BuildConfig, parse_formats

    stores = tuple(args.store) or discover_stores(args.runs) or (_train_demo(args.runs),)
    config = BuildConfig(
        stores=stores,
        out=args.out,
        formats=parse_formats(args.formats),
        colormap=args.colormap,
        scale=args.scale,
        layers=tuple(args.layers) if args.layers else None,
        probes=tuple(args.probes) if args.probes else None,
        channel_probes=args.channel_probes,
        jobs=args.jobs,
        fps=args.fps,
        max_side=args.max_side,
        channel_side=args.channel_side,
        gif_max_side=args.gif_max_side,
    )
    build(config)
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the built gallery on 127.0.0.1",
        description="Serve the site folder over HTTP on 127.0.0.1 only (with "
        "byte ranges, so the epoch scrubber can seek videos) and print the URL. "
        "Only files inside --site are served.",
    )
    p.add_argument("--site", type=Path, default=Path("site"), help="the built site (site/)")
    p.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    p.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from generator.errors import OptionError
    from generator.serve import serve

    if not (args.site / "index.html").is_file():
        raise OptionError(
            f"--site {args.site}: no index.html there; run `python -m generator build` first"
        )
    serve(args.site, args.port)
    return 0


DEMO_EPOCHS = 10


def _train_demo(runs: Path) -> Path:
    """The embedded default: no store anywhere, so train the demo run to build from."""
    from generator.config import TrainConfig
    from generator.train import run_training

    log.info("no run stores under %s: training the demo run first (a few minutes)", runs)
    return run_training(TrainConfig(out=runs / "demo.zarr", epochs=DEMO_EPOCHS))


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train,
    add_ingest,
    add_info,
    add_build,
    add_serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generator",
        description="netlapse: watch a convolutional network learn. Train with `train`, "
        "inspect a run with `info`, make a dataset from video with `ingest`, render the "
        "animations and gallery with `build`, look at it with `serve`.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 2 bad input, 3 encode failure)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        return args.handler(args)
    except NetlapseError as exc:
        print(f"netlapse {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"netlapse {args.command}: interrupted; committed epochs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
