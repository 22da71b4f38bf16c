"""Watch a torchvision network learn in your own PyTorch loop, then build its gallery.

    python examples/own_loop.py                 # resnet18 on the demo data, 64 px, 5 epochs
    python examples/own_loop.py --small         # a minute on a laptop CPU: what CI runs
    python examples/own_loop.py --model mobilenet_v3_small --out runs/mobilenet.zarr

The netlapse part is three lines: ``Recorder(...)`` before training (it records the
untrained network as epoch 0), ``rec.epoch(...)`` after each epoch and ``rec.close()``.
Everything else is an ordinary training loop.
"""

from __future__ import annotations

import sys

import torch
from demo_options import build_gallery, parse_args  # examples/demo_options.py
from torch import nn
from torch.utils.data import DataLoader, Dataset, random_split

from generator import NetlapseError, Recorder, build_model
from generator.config import default_cache_dir
from generator.data import load_image_folder, make_demo_dataset, to_model_input


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, description=__doc__.splitlines()[0], out="runs/own_loop.zarr")
    torch.manual_seed(0)
    root = make_demo_dataset(default_cache_dir(), size=args.input_size, per_class=args.per_class)
    data = load_image_folder(root, args.input_size)  # (uint8 image (3, S, S), label) pairs
    train, val = random_split(data, [0.75, 0.25], generator=torch.Generator().manual_seed(0))
    model = build_model(args.model, num_classes=len(data.classes))  # weights=None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    rec = Recorder(
        model,
        probes=val,
        out=args.out,
        class_names=data.classes,
        probe_count=args.probes,
        example_pool=val,  # each conv channel's top images of the validation split, every epoch
    )
    for _ in range(args.epochs):
        train_loss = train_one_epoch(model, optimizer, train, args.batch_size)
        val_loss, val_accuracy, confusion = evaluate(model, val, len(data.classes))
        rec.epoch(
            train_loss=train_loss, val_loss=val_loss, val_accuracy=val_accuracy, confusion=confusion
        )
    rec.close()

    return build_gallery(args)


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: Dataset, batch: int
) -> float:
    model.train()
    total, seen = 0.0, 0
    for images, labels in DataLoader(data, batch_size=batch, shuffle=True, drop_last=True):
        loss = nn.functional.cross_entropy(model(to_model_input(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, seen = total + loss.item() * len(labels), seen + len(labels)
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, classes: int) -> tuple[float, float, torch.Tensor]:
    """Validation loss, accuracy and the confusion matrix (rows = true class)."""
    model.eval()
    loss, confusion = 0.0, torch.zeros(classes, classes, dtype=torch.int64)
    for images, labels in DataLoader(data, batch_size=64):
        logits = model(to_model_input(images))
        loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        confusion += torch.bincount(labels * classes + logits.argmax(1), minlength=classes**2).view(
            classes, classes
        )
    count = int(confusion.sum())
    return loss / count, float(confusion.trace()) / count, confusion


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NetlapseError as error:  # a bad option or an existing store: one line, no traceback
        sys.exit(f"own_loop: {error}")
