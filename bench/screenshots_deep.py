"""Screenshots of a deep network's gallery (issue 25), beside bench/screenshots.py, whose
server and shooting it reuses:

    python -m generator train --model densenet121 --input-size 32 --epochs 3 --out STORE
    python bench/screenshots_deep.py STORE [--out docs/screenshots] [--work DIR]

The run (179 recorded layers, its last dense block at 1×1) is built with the default plan,
MP4 only, and shot in headless Chromium at 1280 x 900 at its last epoch:

* ``deep-densenet121-network.png``: its network overview page, as it opens (stages open,
  blocks folded, each with its output's view, settle epoch and weight-change sparkline);
* ``deep-densenet121-1x1-layer.png``: the page of its last animated layer of 1×1 maps,
  each probe's channels drawn as one strip over epochs instead of a mosaic.

A page that logs a console error or fails a request is reported and the script exits 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import served, shoot  # noqa: E402

from generator import open_run  # noqa: E402
from generator.build import build  # noqa: E402
from generator.config import BuildConfig  # noqa: E402
from generator.site.manifest import ArtefactKind  # noqa: E402
from generator.site.paths import RunPaths  # noqa: E402


def deep_shots(store: Path, work: Path, out: Path) -> list[str]:
    """Build ``store`` into ``work``/site and shoot its overview and a 1×1 layer page;
    returns the problems the pages logged."""
    started = time.perf_counter()
    site = work / "site"
    result = build(BuildConfig(stores=(store,), out=site, formats=("mp4",), contact_probes=0))
    print(f"built in {time.perf_counter() - started:.0f} s: {site}")
    run, entry = open_run(store), result.manifest.runs[0]
    paths = RunPaths.of(entry.slug, (layer.name for layer in run.layers))
    animated = {r.layer for r in result.manifest.records_of(entry) if r.kind == ArtefactKind.GRID}
    flat = [la for la in run.layers if la.name in animated and tuple(la.shape[1:]) == (1, 1)]
    if not flat:
        return [f"{store}: no animated layer of 1×1 maps (train it at --input-size 32)"]
    last = run.epochs - 1
    shots = {
        "deep-densenet121-network.png": (paths.overview, last),
        "deep-densenet121-1x1-layer.png": (paths.layer(flat[-1].name), last),
    }
    with served(site) as base:
        return shoot(base, shots, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a densenet121 run (see above)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--work", type=Path, default=None, help="keep the site here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="netlapse-deep-"))
    problems = deep_shots(args.store, work, args.out)
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
