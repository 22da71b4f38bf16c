"""A local build against a build on a 2-worker dask ``LocalCluster``, same store, same site.

    python bench/cluster.py [--epochs 10] [--probes 2] [--input-size 128] [--channel-probes 0]
                            [--repeats 3]

1. Makes one store with ``bench/render.py``'s maker (the reference CNN, drifting random
   weights, ``--epochs`` + 1 recorded epochs).
2. Starts a ``LocalCluster`` of 2 worker processes with 1 thread each on 127.0.0.1 (its
   start-up is timed apart: a real cluster is started once, not per build).
3. Alternates full builds into fresh folders: local (``--jobs 2``) then cluster
   (``--scheduler``), ``--repeats`` times each, and prints the medians. Alternating spreads
   the drift of a busy machine over both. Every cluster site is checked to equal the
   local one byte for byte, so the figure is for the same work.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.record import print_table  # noqa: E402
from bench.render import make_store  # noqa: E402
from generator.build.builder import build  # noqa: E402
from generator.config import BuildConfig  # noqa: E402
from generator.info import directory_size, human_size  # noqa: E402


def timed_build(config: BuildConfig) -> tuple[float, int]:
    """Seconds of one full build into a fresh ``config.out`` and the artefacts made."""
    shutil.rmtree(config.out, ignore_errors=True)
    start = time.perf_counter()
    made = build(config).made
    return time.perf_counter() - start, made


def files_of(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def measure(args: argparse.Namespace, work: Path) -> list[tuple[str, str]]:
    from distributed import LocalCluster

    store = make_store(work / "bench.zarr", args.epochs, args.probes, args.input_size)
    local = BuildConfig(
        stores=(store,), out=work / "local", jobs=2, channel_probes=args.channel_probes
    )
    start = time.perf_counter()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        started = time.perf_counter() - start
        remote = replace(local, out=work / "cluster", scheduler=cluster.scheduler_address)
        times: dict[str, list[float]] = {"local": [], "cluster": []}
        for repeat in range(args.repeats):
            for name, config in (("local", local), ("cluster", remote)):
                seconds, made = timed_build(config)
                times[name].append(seconds)
                print(f"repeat {repeat + 1}: {name} {seconds:.1f} s", file=sys.stderr)
            if files_of(local.out) != files_of(remote.out):
                raise SystemExit("the cluster site differs from the local one")
    low, high = (statistics.median(times[n]) for n in ("local", "cluster"))
    return [
        ("artefacts per build", str(made)),
        ("site size", human_size(directory_size(local.out))),
        ("LocalCluster start (2 workers), s", f"{started:.1f}"),
        ("local build, --jobs 2, median s", f"{low:.1f}"),
        ("cluster build, 2 workers x 1 thread, median s", f"{high:.1f}"),
        ("**cluster / local**", f"**{high / low:.2f}**"),
        ("sites equal byte for byte", "yes"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--probes", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument(
        "--channel-probes",
        type=int,
        default=0,
        help="probes with per-channel animations (hundreds of small MP4s; 0 keeps it short)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(
        f"{args.epochs + 1} epochs, {args.probes} probes at {args.input_size}x{args.input_size}, "
        f"{args.repeats} alternating repetitions\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        print_table(("measurement", "value"), measure(args, Path(tmp)))


if __name__ == "__main__":
    main()
