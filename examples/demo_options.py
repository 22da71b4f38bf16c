"""What both examples share: their command-line options and the final ``build``.

Kept apart so each example shows only its training loop and the netlapse lines in it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def parse_args(argv: list[str] | None, *, description: str, out: str) -> argparse.Namespace:
    """The examples' options; ``--small`` shrinks everything to what CI runs in a minute."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="resnet18", help="a torchvision classifier name")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=60, help="demo images per class")
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--site", type=Path, default=Path("site"))
    parser.add_argument("--small", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args(argv)
    args.build_args = []
    if args.small:
        args.epochs, args.input_size, args.per_class, args.probes, args.batch_size = 1, 32, 8, 2, 8
        args.build_args = ["--probe-index", "1", "--channel-probes", "0", "--channel-pages", "2"]
    return args


def build_gallery(args: argparse.Namespace) -> int:
    """``python -m generator build`` of the example's store, as a user would run it."""
    build = [sys.executable, "-m", "generator", "build", "--store", str(args.out)]
    command = [*build, "--out", str(args.site), *args.build_args]
    return subprocess.run(command, check=False).returncode
