"""``python -m generator <command>``: parse arguments and call one stage. Wiring only.

``main(argv=None)`` is a plain function so tests call the CLI directly. Every
``NetlapseError`` becomes one line on stderr and a non-zero exit code; only a bug shows a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from generator.errors import NetlapseError, redact

if TYPE_CHECKING:
    from generator.store import StoreLocation

log = logging.getLogger("generator")

EXAMPLES = """examples:
  python -m generator train --out runs/demo.zarr --epochs 2 --input-size 128
  python -m generator train --data screenshots/ --out runs/bf4.zarr --epochs 30
  python -m generator info runs/demo.zarr
  python -m generator train --out s3://bucket/runs/demo.zarr --epochs 2   # AWS_* variables set
  python -m generator ingest clip.mp4 --label floodzone --out screenshots/ --every 15
"""


PROG = "python -m generator"


class _UsageError(Exception):
    """A bad command line, turned into one line by ``main`` (argparse would add usage)."""


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as ``netlapse <command>: error: ...``, one line, like
    every other error, instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        message = redact(" ".join(message.split()))
        raise _UsageError(f"{_who(command)}: error: {message} (see --help)")


def _who(command: str | None) -> str:
    return f"netlapse {command}" if command else "netlapse"


def _command_in(argv: Sequence[str] | None) -> str | None:
    """The command named in ``argv`` (for errors raised before parsing finished)."""
    names = {add.__name__.removeprefix("add_") for add in COMMANDS}
    return next((a for a in (sys.argv[1:] if argv is None else argv) if a in names), None)


def add_options(parser: argparse.ArgumentParser, config: type) -> None:
    """One ``--option`` per field of ``config`` that has help; defaults stay in the
    dataclass (argparse leaves an option out of the namespace unless it is given)."""
    from generator.config import flag_name

    for f in dataclasses.fields(config):
        meta = f.metadata
        if "help" not in meta:
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, **meta["cli"]}
        if meta["parse"] is None:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=_refusing(meta["parse"]), choices=meta["choices"])
        kwargs["help"] = f"{meta['help']} ({_shown_default(f)})"
        parser.add_argument(flag_name(f.name), **kwargs)


class _Refused(Exception):
    """An option's parser refused its value with a ``NetlapseError``: carried past argparse,
    which would turn any ``ValueError`` (``OptionError`` is one) into "invalid value"."""

    def __init__(self, error: NetlapseError) -> None:
        super().__init__(str(error))
        self.error = error


def _refusing(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with its one-line ``NetlapseError`` kept for ``main`` to print."""

    @functools.wraps(parse)
    def parsed(text: str) -> Any:
        try:
            return parse(text)
        except NetlapseError as exc:
            raise _Refused(exc) from exc

    return parsed


def _shown_default(f: dataclasses.Field) -> str:
    if f.metadata["shown"] is not None:
        return f.metadata["shown"]
    if f.default is False:
        return "off"
    if isinstance(f.default, tuple):
        return ",".join(map(str, f.default))
    return "required" if f.default is dataclasses.MISSING else f"{f.default}".replace("%", "%%")


def given(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The options of ``config`` given on the command line (the rest keep their defaults)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config) if f.name in args}


def add_train(sub: argparse._SubParsersAction) -> None:
    from generator.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train the CNN and record every layer and kernel per epoch",
        description="Train the reference CNN (or any torchvision classifier or your own, "
        "--model) on an ImageFolder dataset (DIR/<class>/<image>) "
        "or, without --data, on generated demo data. Every epoch (and epoch 0, the untrained "
        "network) writes all layer activations for the probe images, all conv kernels and "
        "the metrics into one zarr v3 store.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, TrainConfig)
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from generator.config import TrainConfig
    from generator.train import run_training

    config = TrainConfig(**given(args, TrainConfig))
    _use_storage_options(config.storage_option)
    run_training(config)
    return 0


def _use_storage_options(options: Sequence[tuple[str, str]]) -> None:
    """``--storage-option KEY=VALUE`` for every object store this command (and its build
    workers) opens."""
    from generator.store import use_storage_options

    if options:
        use_storage_options(dict(options))


def add_ingest(sub: argparse._SubParsersAction) -> None:
    from generator.config import IngestConfig

    p = sub.add_parser(
        "ingest",
        help="turn a gameplay video into a class folder of square frames",
        description="Read VIDEO with ffmpeg (bundled by imageio-ffmpeg), keep every N-th "
        "frame, centre-crop it to SIZE x SIZE, drop frames darker than the threshold and "
        "write PNGs into OUT/LABEL/. Re-running adds no duplicates.",
    )
    p.add_argument("video", type=Path, help="the video file (mp4, mkv, webm, ...)")
    add_options(p, IngestConfig)
    p.set_defaults(handler=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from generator.config import IngestConfig
    from generator.data import ingest_video

    config = IngestConfig(**given(args, IngestConfig))
    report = ingest_video(
        args.video,
        config.label,
        config.out,
        size=config.size,
        every=config.every,
        dark_threshold=config.dark_threshold,
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
    from generator.config import InfoConfig
    from generator.store import store_location

    p.add_argument(
        "store",
        type=_refusing(store_location),
        help="a run store made by `train`: a folder or a URL such as s3://bucket/runs/x.zarr",
    )
    add_options(p, InfoConfig)
    p.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from generator.config import InfoConfig
    from generator.info import summarise_run
    from generator.store import open_run

    _use_storage_options(InfoConfig(**given(args, InfoConfig)).storage_option)
    print(redact(summarise_run(open_run(args.store))))
    return 0


def add_build(sub: argparse._SubParsersAction) -> None:
    from generator.config import BuildConfig

    p = sub.add_parser(
        "build",
        help="render animations and the gallery from run stores",
        description="Turn run stores into WebM/MP4/GIF evolution animations (channel grids, "
        "single channels, kernels, class probabilities), contact sheets and a manifest in "
        "--out. Incremental: only artefacts whose inputs changed are re-made. Without "
        "--store, every runs/*.zarr is built; with none there, the demo run is trained.",
        epilog="examples:\n  python -m generator build\n"
        "  python -m generator build --store runs/demo.zarr --out site/\n"
        "  python -m generator build --store runs/a.zarr --store runs/b.zarr --formats mp4 "
        "--scale layer --layers block1,block2 --probe-index 1,2\n"
        "  python -m generator build --all-layers --budget-mb 900   # every layer of a deep net",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from generator.store import store_location

    p.add_argument(
        "--store",
        type=_refusing(store_location),
        action="append",
        default=[],
        metavar="STORE",
        help="a run store, a folder or a URL such as s3://bucket/runs/x.zarr (repeat for "
        "several); default: every runs/*.zarr",
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("runs"),
        help="where stores are looked for without --store (runs/)",
    )
    add_options(p, BuildConfig)
    from generator.config import RenamedOption, int_list

    # the old name (train's for how many probes to record): works, with a notice
    p.add_argument("--probes", type=_refusing(int_list), **RenamedOption.of("probe_index"))
    p.set_defaults(handler=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from generator.build import build, discover_stores
    from generator.config import BuildConfig

    options = given(args, BuildConfig)
    config = BuildConfig(stores=(), **options)  # refuse bad options before training a demo run
    _use_storage_options(config.storage_option)
    stores = (
        tuple(args.store)
        or discover_stores(args.runs)
        or (_train_demo(args.runs, site=config.out),)
    )
    build(BuildConfig(stores=stores, **options))
    return 0


def add_serve(sub: argparse._SubParsersAction) -> None:
    from generator.config import ServeConfig

    p = sub.add_parser(
        "serve",
        help="serve the built gallery on 127.0.0.1",
        description="Serve the site folder over HTTP on 127.0.0.1 only (with "
        "byte ranges, so the epoch scrubber can seek videos) and print the URL. "
        "Only files inside --site are served.",
    )
    add_options(p, ServeConfig)
    p.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from generator.config import ServeConfig
    from generator.errors import OptionError
    from generator.site import serve
    from generator.site.server import STATUS_LOG
    from generator.terminal import printing

    config = ServeConfig(**given(args, ServeConfig))
    if not (config.site / "index.html").is_file():
        raise OptionError(
            f"--site {config.site}: no index.html there; run `python -m generator build` first"
        )
    with printing(STATUS_LOG):
        serve(config.site, config.port)
    return 0


def _train_demo(runs: Path, *, site: Path) -> StoreLocation:
    """The embedded default: no store anywhere, so train the demo run to build from, with
    its gallery live in ``site`` from epoch 0 on (the newcomer watches while it trains),
    for the default number of epochs."""
    from generator.config import TrainConfig
    from generator.train import run_training

    log.info(
        "no run stores under %s: training the demo run first (a few minutes); the gallery "
        "in %s is kept current after each epoch",
        runs,
        site,
    )
    return run_training(TrainConfig(out=runs / "demo.zarr", site=site))


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train,
    add_ingest,
    add_info,
    add_build,
    add_serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
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
    """Run one command; return its exit code (0 ok, 2 bad input, 3 encode failure, 141
    when the reader of its output went away, e.g. ``info a.zarr | head -5``)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # now, not at exit, where a closed pipe is a traceback
    except BrokenPipeError:  # as a command killed by SIGPIPE: quiet
        from generator.terminal import discard_stdout

        return discard_stdout()
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except _Refused as refused:  # an option's parser refused its value
        print(f"{_who(_command_in(argv))}: error: {refused.error}", file=sys.stderr)
        return refused.error.exit_code
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
        force=True,
    )
    from generator.terminal import redact_logs

    redact_logs()
    for notice in getattr(args, "renamed", ()):
        log.warning("netlapse %s: %s", args.command, notice)
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
