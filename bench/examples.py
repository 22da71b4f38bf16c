"""Dataset examples' cost per epoch against that epoch's training time, on the demo.

    python bench/examples.py [--input-size 128] [--demo-per-class 120] [--pool N] [--repeats 3]

Defaults are ``train``'s on the demo data (reference CNN, 128 px, batch 16, Adam, 20 %
validation split, the default pool: 256 images or the whole validation split if smaller,
top 9). Measured in this one run on this machine: one training epoch over the training
split (the same steps as ``train``: forward, loss, backward, Adam step, batch 16) and the
median of ``--repeats`` searches of the pool (``record.examples.top_examples``: one
eval-mode no-grad pass in batches, with the running top-k of every conv channel). The
ratio search / epoch is the figure in ``bench/README.md`` (target <= 10 %). The store
write of the examples is a few KB per epoch (C x k x 16 bytes per conv layer), printed too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timed  # noqa: E402  (bench/timing.py, beside this script)

from generator.config import default_cache_dir  # noqa: E402
from generator.data import load_image_folder, make_demo_dataset, to_model_input  # noqa: E402
from generator.model import NetlapseCNN  # noqa: E402
from generator.record.examples import split_pool, top_examples  # noqa: E402
from generator.train.session import dataset_labels, split_indices  # noqa: E402


def train_epoch(model: nn.Module, loader: DataLoader) -> float:
    """Seconds for one epoch of the steps ``train`` takes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(to_model_input(images)), labels)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--demo-per-class", type=int, default=120)
    parser.add_argument("--pool", type=int, default=None, help="default: train's default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    root = make_demo_dataset(
        default_cache_dir(), seed=0, per_class=args.demo_per_class, size=args.input_size
    )  # the demo's own cache ($NETLAPSE_CACHE), reused when complete
    dataset = load_image_folder(root, args.input_size)
    train_idx, val_idx = split_indices(dataset_labels(dataset), 0.2, 0)
    model = NetlapseCNN(len(dataset.classes), args.input_size)
    loader = DataLoader(Subset(dataset, train_idx.tolist()), batch_size=16, shuffle=True)
    pool = split_pool(dataset, val_idx, args.pool)
    layers = model.layer_specs()
    epoch = train_epoch(model, loader)
    print(f"one training epoch: {epoch:.2f} s", flush=True)
    search = timed(lambda: top_examples(model, pool, layers), args.repeats)
    stored = sum(spec.channels * pool.top_k * 16 for spec in layers if spec.is_conv)
    rows = [
        ("training images / pool images", f"{len(train_idx)} / {len(pool.labels)}"),
        ("one training epoch, batch 16 (s)", f"{epoch:.2f}"),
        (f"top-{pool.top_k} search of the pool, median of {args.repeats} (s)", f"{search:.3f}"),
        ("examples stored per epoch (bytes, before compression)", f"{stored:,}"),
        ("**ratio search / epoch** (target <= 10 %)", f"**{search / epoch:.1%}**"),
    ]
    print(f"demo at {args.input_size} px, {torch.get_num_threads()} torch threads")
    print("| measurement | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
