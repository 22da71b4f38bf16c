"""Feature-visualization cost per epoch on the demo run, against that epoch's training time.

    python bench/featviz.py [--epochs 3] [--steps 16] [--layers block1,block2] [--save DIR]

Trains the demo run's model on the demo data exactly as ``train`` does at its defaults
(128 px, the reference CNN, batch 16) and, after each epoch, times the training epoch and
the feature visualizations of the chosen layers (default: what ``train`` picks) separately.
Times are this process's CPU seconds (``time.process_time``) on one torch thread: the
shared 2-core machine made wall-clock times swing by 10x while other work ran, and CPU
time of one thread is what a quiet core would take.
Printed per epoch: training seconds, visualization seconds and their ratio, and the mean
activation each image reaches on its own channel (higher = a stronger visualization).
With ``--compare-steps`` the last epoch is also visualised with 4x the steps from the same
warm start, to show what the default step count leaves on the table. ``--save DIR`` writes
each epoch's sheets as PNG for a look.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.config import TrainConfig  # noqa: E402
from generator.data import to_model_input  # noqa: E402
from generator.record.featviz import (  # noqa: E402
    DEFAULT_STEPS,
    FeatvizSettings,
    channel_means,
    visualizer_for,
)
from generator.train.loop import _train_one_epoch  # noqa: E402
from generator.train.session import start_session  # noqa: E402


def reached(session, images: dict[str, np.ndarray]) -> float:
    """Mean over layers and channels of each image's activation on its own channel."""
    values = []
    with torch.no_grad():
        for name, batch in images.items():
            module = session.featviz.modules[name]
            inputs = to_model_input(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous())
            was = session.model.training
            session.model.eval()
            values.append(channel_means(session.model, module, inputs, len(batch)).mean().item())
            session.model.train(was)
    return float(np.mean(values))


def save_sheets(folder: Path, epoch: int, images: dict[str, np.ndarray]) -> None:
    from PIL import Image

    from generator.render.featviz_sheet import sheet

    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in images.items():
        Image.fromarray(sheet(batch)).save(folder / f"{name}-e{epoch}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--layers", type=str, default=None)
    parser.add_argument("--compare-steps", action="store_true")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layers = tuple(args.layers.split(",")) if args.layers else None
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            out=Path(tmp) / "bench.zarr",
            epochs=args.epochs,
            featviz_layers=layers,
            featviz_steps=args.steps,
        )
        session = start_session(config)
        session.featviz = visualizer_for(  # the visualizer the Recorder would make
            session.model,
            session.layers,
            FeatvizSettings(config.featviz_layers, config.featviz_steps),
            transform=to_model_input,
        )
        spec = session.featviz.spec
        print(
            f"threads {torch.get_num_threads()}; layers "
            + ", ".join(f"{n} ({c} ch)" for n, c in spec.channels.items())
            + f"; {spec.size} px; {spec.first_steps} steps at epoch 0, {spec.steps} after"
        )
        print("| epoch | train CPU s | featviz CPU s | featviz / train | activation reached |")
        print("|---|---|---|---|---|")
        for epoch in range(args.epochs + 1):
            start = time.process_time()
            if epoch:
                _train_one_epoch(session, epoch)
            trained = time.process_time() - start
            before = copy.deepcopy(session.featviz) if args.compare_steps else None
            start = time.process_time()
            images = session.featviz.visualize(epoch)
            spent = time.process_time() - start
            ratio = f"{spent / trained:.1%}" if epoch else "(untrained)"
            shown = f"{trained:.1f}" if epoch else "-"
            print(f"| {epoch} | {shown} | {spent:.2f} | {ratio} | {reached(session, images):.3f} |")
            if args.save:
                save_sheets(args.save, epoch, images)
        if before is not None:
            longer = copy.deepcopy(before)
            longer.spec = type(spec)(
                spec.size, spec.channels, spec.steps * 4, spec.first_steps, spec.seed
            )
            more = longer.visualize(args.epochs)
            print(
                f"epoch {args.epochs} with {spec.steps * 4} warm steps instead of "
                f"{spec.steps}: activation reached {reached(session, more):.3f}"
            )


if __name__ == "__main__":
    main()
