"""Fit the build estimate's byte and time models (generator/build/estimate.py) on real runs.

    python bench/calibrate.py STORE [STORE ...] [--jobs-per-store 150] [--all-layers]

Plans a default build of each store (``--all-layers``: every layer), makes a sample of its
jobs one after another in this process (timed, into a temporary folder), and renders the
pages once (timed). Then fits, per artefact kind, bytes per file format as
``frames * (a * frame_pixels + b)`` and a worker's seconds per job as the sum over its
artefacts of ``frames * (a * frame_pixels + b) + c`` (non-negative least squares), and
prints the tables to paste into ``estimate.py``, with each store's estimate against what
was measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.build.artefacts import run_job  # noqa: E402
from generator.build.builder import group_jobs  # noqa: E402
from generator.build.estimate import frame_pixels  # noqa: E402
from generator.build.plan import new_manifest, plan_run, render_options  # noqa: E402
from generator.config import BuildConfig  # noqa: E402
from generator.site import render_site  # noqa: E402
from generator.store import open_run  # noqa: E402


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by dropping negative columns until none is left."""
    active = np.ones(a.shape[1], dtype=bool)
    x = np.zeros(a.shape[1])
    while active.any():
        solution = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
        if (solution >= 0).all():
            x[active] = solution
            break
        worst = np.flatnonzero(active)[np.argmin(solution)]
        active[worst] = False
    return x


def sample(store: Path, limit: int, *, all_layers: bool) -> dict:
    """Time ``limit`` jobs (spread over the plan) and the pages of one store."""
    run = open_run(store)
    config = BuildConfig(stores=(store,), jobs=1, all_layers=all_layers)
    plan = plan_run(run, config)
    jobs = group_jobs([plan], plan.artefacts, render_options(config))
    picked = jobs[:: max(1, len(jobs) // limit)][:limit]
    rows, made = [], {}
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        for job in picked:
            start = time.process_time()
            records = run_job(job, site)
            seconds = time.process_time() - start
            items = []
            for record in records:
                made[record.id] = record
                spec = run.layer(record.layer) if record.layer else None
                pixels = frame_pixels(spec, record.kind, config)
                sizes = {f: (site / p).stat().st_size for f, p in record.files.items()}
                items.append((record.kind, run.epochs, pixels, sizes))
            rows.append((seconds, items))
        start = time.process_time()
        manifest = new_manifest([plan], made, config)
        try:
            pages = render_site(manifest, {plan.slug: run})
        except Exception as exc:  # the site is another stage: the media figures still count
            print(f"pages failed: {exc}", file=sys.stderr)
            pages = {}
        page_seconds = time.process_time() - start
        page_bytes = sum(len(body) for body in pages.values())
    print(
        f"{store.name}: {len(picked)} of {len(jobs)} jobs, {len(pages)} pages "
        f"{page_bytes / 1e6:.1f} MB in {page_seconds:.1f} s",
        file=sys.stderr,
    )
    return {"jobs": rows, "pages": (len(pages), page_bytes, page_seconds, len(run.layers))}


def fit(samples: list[dict]) -> None:
    by_format: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    kinds = sorted({k for s in samples for _, items in s["jobs"] for k, *_ in items})
    for s in samples:
        for _, items in s["jobs"]:
            for kind, frames, pixels, sizes in items:
                for fmt, size in sizes.items():
                    count = 1 if fmt in ("poster", "png") else frames
                    by_format[(kind.name, fmt)].append((count * pixels, count, size))
    print("BYTES = {")
    for (kind, fmt), points in sorted(by_format.items()):
        data = np.array(points, dtype=float)
        a, b = nnls(data[:, :2], data[:, 2])
        print(f"    ({kind}, {fmt!r}): ({a:.4g}, {b:.4g}),  # {len(points)} files")
    print("}")
    rows, times = [], []
    for s in samples:
        for seconds, items in s["jobs"]:
            row = np.zeros(3 * len(kinds))
            for kind, frames, pixels, _ in items:
                k = kinds.index(kind)
                row[3 * k : 3 * k + 3] += (frames * pixels, frames, 1)
            rows.append(row)
            times.append(seconds)
    x = nnls(np.array(rows), np.array(times))
    print("SECONDS = {")
    for k, kind in enumerate(kinds):
        print(f"    {kind.name}: ({x[3 * k]:.4g}, {x[3 * k + 1]:.4g}, {x[3 * k + 2]:.4g}),")
    print("}")
    for s in samples:
        n, size, seconds, layers = s["pages"]
        n = max(n, 1)
        print(
            f"pages: {n} pages, {size / n:.0f} B and {seconds / n * 1000:.2f} ms each; "
            f"{layers} layers"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+")
    parser.add_argument("--jobs-per-store", type=int, default=150)
    parser.add_argument("--all-layers", action="store_true")
    args = parser.parse_args()
    fit([sample(s, args.jobs_per_store, all_layers=args.all_layers) for s in args.stores])


if __name__ == "__main__":
    main()
