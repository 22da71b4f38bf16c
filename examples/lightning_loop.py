"""Watch a torchvision network learn under PyTorch Lightning, then build its gallery.

    pip install -e ".[lightning]"
    python examples/lightning_loop.py           # resnet18 on the demo data, 64 px, 5 epochs
    python examples/lightning_loop.py --small   # a minute on a laptop CPU: what CI runs

The netlapse part is one line: ``NetlapseCallback(probes=..., out=...)`` in the Trainer's
callbacks. It records the untrained network when fitting starts, then the network and
the metrics the module logs (``val_loss``, ``val_acc``, ``train_loss``) after every epoch.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
from demo_options import build_gallery, parse_args  # examples/demo_options.py
from torch import nn
from torch.utils.data import DataLoader, random_split

from generator import NetlapseError, build_model
from generator.config import default_cache_dir
from generator.data import load_image_folder, make_demo_dataset, to_model_input
from generator.integrations import NetlapseCallback


class Classifier(L.LightningModule):
    """Any classifier, trained with cross-entropy; logs loss and accuracy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, _index):
        images, labels = batch
        loss = nn.functional.cross_entropy(self(to_model_input(images)), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _index):
        images, labels = batch
        logits = self(to_model_input(images))
        self.log("val_loss", nn.functional.cross_entropy(logits, labels))
        self.log("val_acc", (logits.argmax(1) == labels).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, description=__doc__.splitlines()[0], out="runs/lightning_loop.zarr")
    L.seed_everything(0, verbose=False)
    root = make_demo_dataset(default_cache_dir(), size=args.input_size, per_class=args.per_class)
    data = load_image_folder(root, args.input_size)
    train, val = random_split(data, [0.75, 0.25], generator=torch.Generator().manual_seed(0))
    module = Classifier(build_model(args.model, num_classes=len(data.classes)))

    netlapse = NetlapseCallback(
        probes=val,
        out=args.out,
        class_names=data.classes,
        probe_count=args.probes,
        example_pool=val,  # each conv channel's top images of the validation split, every epoch
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        callbacks=[netlapse],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not args.small,
    )
    trainer.fit(
        module,
        DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True),
        DataLoader(val, batch_size=64),
    )

    return build_gallery(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NetlapseError as error:  # a bad option or an existing store: one line, no traceback
        sys.exit(f"lightning_loop: {error}")
