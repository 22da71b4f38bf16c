"""What the live gallery costs training, and when it shows something: ``train`` of the demo
run with and without ``--site``, alternating.

    python bench/live.py [--repeats 2] [--epochs 10] [-- extra train options]

Each repetition trains the demo run twice into fresh folders (the demo data is made once,
before): without ``--site`` (the baseline) and with it. The store's root metadata is
polled every 0.1 s, so "training" is the time from the start of ``train`` until the last
epoch is committed, with the live builds running beside it; "first look" is when the
site's run page first exists (the first live build has finished), "complete" is when
``train --site`` returns (its final, full build included). Medians are printed with the
slowdown of training, target <= 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def committed(store: Path) -> int:
    """Epochs committed in ``store`` now (0 while it is being created)."""
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["epochs_committed"])
    except (OSError, ValueError, KeyError):
        return 0


def first_run_page(site: Path) -> bool:
    return any(site.glob("runs/*/index.html"))


def one_run(folder: Path, args: argparse.Namespace, *, live: bool) -> dict[str, float]:
    """Train once; the times (s from the start) of the last commit, the first look and the
    end."""
    store, site = folder / "runs" / "demo.zarr", folder / "site"
    command = [sys.executable, "-m", "generator", "-q", "train", "--out", str(store)]
    command += ["--epochs", str(args.epochs), *args.train_options]
    if live:
        command += ["--site", str(site)]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    times: dict[str, float] = {}
    while process.poll() is None:
        now = time.perf_counter() - start
        if "training" not in times and committed(store) == args.epochs + 1:
            times["training"] = now
        if live and "first look" not in times and first_run_page(site):
            times["first look"] = now
        time.sleep(0.1)
    if process.returncode != 0:
        sys.exit(f"train failed ({process.returncode}): {' '.join(command)}")
    times["complete"] = time.perf_counter() - start
    times.setdefault("training", times["complete"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("train_options", nargs="*", help="more train options, after --")
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NETLAPSE_CACHE", str(Path(tmp) / "cache"))
        one_run(
            Path(tmp) / "warm-up", argparse.Namespace(**{**vars(args), "epochs": 1}), live=False
        )
        for repeat in range(args.repeats):
            for live in (False, True):
                folder = Path(tmp) / f"{repeat}-{'live' if live else 'bare'}"
                results[live].append(one_run(folder, args, live=live))
                print(
                    f"repeat {repeat + 1}, {'--site' if live else 'no site'}: {results[live][-1]}"
                )

    def median(live: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[live])

    bare, live = median(False, "training"), median(True, "training")
    rows = [
        ("training without --site (baseline)", f"{bare:.1f}"),
        ("training with --site (live builds beside it)", f"{live:.1f}"),
        ("slowdown of training (target <= 10 %)", f"{100 * (live / bare - 1):.1f} %"),
        ("first look: the run page exists", f"{median(True, 'first look'):.1f}"),
        ("complete: train --site returned", f"{median(True, 'complete'):.1f}"),
        ("final build after the last commit", f"{median(True, 'complete') - live:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measurement (s from the start of train)':<{width}} | value")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
