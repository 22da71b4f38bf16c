"""``info``: a readable summary of one run store, built from the reader only."""

from __future__ import annotations

import math
from pathlib import Path

from generator.store import SCALAR_METRICS, RunReader, StoreLocation, StoreURL, total_size


def directory_size(path: StoreLocation) -> int:
    """Bytes of every file under ``path`` (a store is a folder of chunk files), or of
    every object under a store's URL."""
    if isinstance(path, StoreURL):
        return total_size(path)
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def human_size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GB"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (``\\x1b``, ``\\n``,
    an undecodable byte's ``\\udce9``): a class folder name can neither drive the terminal
    nor make a strict UTF-8 stdout fail."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _input_words(shape: tuple[int, int, int]) -> str:
    """``64x64`` for RGB, with ``grey`` or the channel count for other inputs."""
    channels, height, width = shape
    kind = {1: ", grey", 3: ""}.get(channels, f", {channels} channels")
    return f"{height}x{width}{kind}"


def summarise_run(run: RunReader) -> str:
    """Classes, layers with shapes, committed epochs, size on disk, last epoch's metrics."""
    lines = [
        f"store      {run.path}  (schema v{run.attrs.schema_version}, "
        f"{human_size(directory_size(run.path))} on disk)",
        f"classes    {len(run.attrs.class_names)}: {', '.join(run.attrs.class_names)}",
        f"input      {_input_words(run.attrs.input_shape)}, {run.n_probes} probes",
        f"epochs     {run.epochs} committed (epoch 0 = untrained"
        f"{', last = ' + str(run.epochs - 1) if run.epochs else ''})",
        "layers",
    ]
    for layer in run.layers:
        kernel = f"  kernels {'x'.join(map(str, layer.kernel_shape))}" if layer.kernel_shape else ""
        shape = "x".join(map(str, layer.shape))
        lines.append(
            f"  {layer.name:<10} {layer.kind:<7} {shape:<14} {layer.params:>10,} params{kernel}"
        )
    if run.epochs:
        last = {name: float(run.scalar_metric(name)[-1]) for name in SCALAR_METRICS}
        shown = ", ".join(
            f"{name} {value:.4f}" for name, value in last.items() if not math.isnan(value)
        )
        lines.append(f"last epoch {run.epochs - 1}: {shown}")
    return "\n".join(printable(line) for line in lines)
