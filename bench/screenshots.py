"""Screenshots of "any model" in the gallery, for the README and docs/screenshots/.

    python bench/screenshots.py [--out docs/screenshots] [--work DIR] [--epochs 4]
                                [--only any|compare]

Records three runs through the Recorder on the demo images (the demo's pattern classes,
converted to each model's input): a ViT-B/16 (``weights=None``, 224 px, 2 epochs: its
tokens shown as maps on the 14 x 14 patch grid), a small CNN on grey 28 x 28 images and
one on non-square 48 x 64 images. Builds them into one site, serves it on 127.0.0.1 and
takes, in headless Chromium (Debian's /usr/bin/chromium, or ``NETLAPSE_CHROMIUM``) at
1280 x 900:

* ``any-vit-block-layer.png``: the layer page of the ViT's middle transformer block;
* ``any-grey-layer.png``: the grey run's first conv layer page;
* ``any-non-square-channel.png``: a channel page of the non-square run's first conv;
* ``compare-seeds.png``: the compare page (whole) of the small CNN on the 48 x 48 demo
  images from seeds 0 and 1 (initial weights and batch order; the same probes): curves
  overlaid, the first conv side by side, the CKA between the runs at each layer pair;
* ``gradients-run-flow.png``: the gradient-flow section of a resnet18's run page (gradient
  norm and update/weight ratio per layer, one line per epoch, the 1e-3 line dashed), and
  ``gradients-layer-distributions.png``: the offset histograms of its first conv (issue 26;
  ``weights=None``, the demo images at 32 x 32, ``--only gradients``).

The small nets record with ``overhead=None``: their epochs train in a fraction of a second,
and the default 3 % budget would leave their feature visualizations no step after epoch 0.
The ViT records without feature visualization (``featviz_layers=[]``): its pages here show
tokens, and at 224 px its visualizations cost most of the script's time.

A page that logs a console error or fails a request is reported and the script exits 1
(its screenshot is still written, for a look).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.models
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator import Recorder, open_run  # noqa: E402
from generator.build import build  # noqa: E402
from generator.config import BuildConfig  # noqa: E402
from generator.data.demo import make_demo_dataset  # noqa: E402
from generator.site.paths import RunPaths  # noqa: E402
from generator.site.server import QuietHandler, make_server  # noqa: E402

CHROMIUM = Path(os.environ.get("NETLAPSE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
# Every video in the viewport has its frame (lazy ones below load when scrolled to) and is
# paused on the epoch the URL asked for.
ON_SCREEN_SETTLED = """Array.from(document.querySelectorAll('video')).filter(v => {
    const r = v.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; })
    .every(v => v.readyState >= 2 && v.paused && !v.seeking)"""
PROBES = 4


def small_cnn(channels: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    )


def demo_images(cache: Path, *, mode: str, size: tuple[int, int], per_class: int) -> Any:
    """The demo images as uint8 (N, C, H, W) in ``mode`` ("L" or "RGB") at ``size``
    (width, height), their labels and the class names."""
    root = make_demo_dataset(cache, seed=0, size=max(64, *size), per_class=per_class)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir())[:per_class]:
            picture = Image.open(path).convert(mode).resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(picture, np.uint8)
            images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            labels.append(label)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels), classes


def record(
    model: nn.Module,
    out: Path,
    data: tuple[torch.Tensor, torch.Tensor, list[str]],
    *,
    epochs: int,
    batch: int,
    seed: int = 0,
    hold_out: int = 0,
    **options: Any,
) -> Path:
    """Adam on the images (as the project's [-1, 1] input), recorded every epoch; the
    probes are the first image of each class whatever ``seed`` (the batch order). With
    ``hold_out`` every n-th image is kept out of training and gives the validation loss
    and accuracy."""
    images, labels, classes = data
    torch.manual_seed(seed)
    pick = torch.cat([torch.nonzero(labels == k)[:1, 0] for k in range(len(classes))])
    pick = pick[:PROBES]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = images.float() / 127.5 - 1
    held = torch.arange(len(labels)) % hold_out == 0 if hold_out else labels < 0
    trained = torch.nonzero(~held)[:, 0]
    with Recorder(
        model,
        probes=images[pick],
        probe_labels=labels[pick].tolist(),
        out=out,
        class_names=classes,
        **options,
    ) as rec:
        for _ in range(epochs):
            model.train()
            order = trained[torch.randperm(len(trained))]
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            rec.epoch(train_loss=loss.item(), **validation(model, inputs[held], labels[held]))
    return out


def validation(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The held-out loss and accuracy (nothing when no image is held out)."""
    if not len(labels):
        return {}
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    return {
        "val_loss": nn.functional.cross_entropy(logits, labels).item(),
        "val_accuracy": (logits.argmax(1) == labels).float().mean().item(),
    }


@contextmanager
def served(site: Path) -> Iterator[str]:
    server = make_server(site, port=0, handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()


Shot = tuple[str, int] | tuple[str, int, str]


def shoot(base: str, shots: dict[str, Shot], out: Path, *, full_page: bool = False) -> list[str]:
    """Each page of ``shots`` (file name -> site path, its run's last epoch and, optional,
    the CSS selector of the one element to capture) opened at that epoch, every video
    paused there, and captured (the first screen, or with ``full_page`` the whole page);
    the problems pages logged."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    profile = tempfile.mkdtemp(prefix="netlapse-chromium-")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=FLAGS,
                headless=True,
                viewport=VIEWPORT,
            )
            for name, (path, epoch, *element) in shots.items():
                page = context.new_page()
                page.set_default_timeout(120_000)
                page.on(
                    "console",
                    lambda m, n=name: m.type == "error" and problems.append(f"{n}: {m.text}"),
                )
                page.on("pageerror", lambda e, n=name: problems.append(f"{n}: {e}"))
                page.on(
                    "requestfailed",
                    lambda r, n=name: (
                        r.failure != "net::ERR_ABORTED"
                        and problems.append(f"{n}: {r.url} {r.failure}")
                    ),
                )
                page.goto(f"{base}{path}#epoch={epoch}", wait_until="load")
                page.wait_for_load_state("networkidle")
                page.wait_for_function(ON_SCREEN_SETTLED)
                if element:
                    page.locator(element[0]).screenshot(path=str(out / name))
                else:
                    page.screenshot(path=str(out / name), full_page=full_page)
                print(f"wrote {out / name} ({base + path})")
                page.close()
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--work", type=Path, default=None, help="keep the runs and site here")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the small nets")
    parser.add_argument(
        "--only", choices=("any", "compare", "gradients"), help="one set of screenshots"
    )
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="netlapse-screens-"))
    runs = work / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    started = time.perf_counter()
    problems = []
    if args.only in (None, "any"):
        problems += any_model(work, args.out, epochs=args.epochs)
    if args.only in (None, "compare"):
        problems += compare_seeds(work, args.out, epochs=args.epochs)
    if args.only in (None, "gradients"):
        problems += gradient_views(work, args.out, epochs=args.epochs)
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


def compare_seeds(work: Path, out: Path, *, epochs: int) -> list[str]:
    """The compare page of one small CNN trained from two seeds on the same probes."""
    data = demo_images(work / "cache", mode="RGB", size=(48, 48), per_class=24)
    stores = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # the initial weights; record() seeds the batches
        model = small_cnn(3, len(data[2]))
        store = work / "runs" / f"seed-{seed}.zarr"
        stores.append(
            record(
                model,
                store,
                data,
                epochs=epochs,
                batch=8,
                seed=seed,
                hold_out=4,
                overhead=None,
                featviz_layers=[],
            )
        )
    site = work / "compare-site"
    build(BuildConfig(stores=tuple(stores), out=site, formats=("mp4",), contact_probes=0))
    with served(site) as base:
        shot: dict[str, Shot] = {"compare-seeds.png": ("compare/index.html", epochs)}
        return shoot(base, shot, out, full_page=True)


def gradient_views(work: Path, out: Path, *, epochs: int) -> list[str]:
    """The gradient flow and a conv's offset histograms of a resnet18 at 32 px."""
    data = demo_images(work / "cache", mode="RGB", size=(32, 32), per_class=12)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(data[2]))
    store = work / "runs" / "resnet18-32px.zarr"
    record(model, store, data, epochs=epochs, batch=8, overhead=None, featviz_layers=[])
    run = open_run(store)
    conv = next(layer for layer in run.layers if layer.is_conv)
    site = work / "gradients-site"
    result = build(  # the charts are the pages' own: one layer's animations suffice
        BuildConfig(
            stores=(store,),
            out=site,
            formats=("mp4",),
            layers=(conv.name,),
            contact_probes=0,
            channel_probes=0,
            channel_pages=0,
        )
    )
    paths = RunPaths.of(result.manifest.runs[0].slug, (layer.name for layer in run.layers))
    shots: dict[str, Shot] = {
        "gradients-run-flow.png": (
            paths.run,
            run.epochs - 1,
            "section[aria-labelledby=gradients]",
        ),
        "gradients-layer-distributions.png": (
            paths.layer(conv.name),
            run.epochs - 1,
            "section[aria-labelledby=distributions]",
        ),
    }
    with served(site) as base:
        return shoot(base, shots, out)


def any_model(work: Path, out: Path, *, epochs: int) -> list[str]:
    """A ViT-B/16, a grey and a non-square run, built into one site and shot."""
    runs, cache = work / "runs", work / "cache"
    started = time.perf_counter()

    grey = demo_images(cache, mode="L", size=(28, 28), per_class=12)
    wide = demo_images(cache, mode="RGB", size=(64, 48), per_class=12)
    vit_data = demo_images(cache, mode="RGB", size=(224, 224), per_class=2)
    classes = len(grey[2])
    stores = {
        "grey": record(
            small_cnn(1, classes),
            runs / "grey-28x28.zarr",
            grey,
            epochs=epochs,
            batch=8,
            overhead=None,
        ),
        "wide": record(
            small_cnn(3, classes),
            runs / "non-square-48x64.zarr",
            wide,
            epochs=epochs,
            batch=8,
            overhead=None,
        ),
        "vit": record(
            torchvision.models.vit_b_16(weights=None, num_classes=classes),
            runs / "vit-b-16.zarr",
            vit_data,
            epochs=2,
            batch=4,
            featviz_layers=[],
        ),
    }
    print(f"recorded in {time.perf_counter() - started:.0f} s")
    site = work / "site"
    result = build(
        BuildConfig(
            stores=tuple(stores.values()),
            out=site,
            formats=("mp4",),
            channel_pages=2,
            contact_probes=0,
        )
    )
    print(f"built in {time.perf_counter() - started:.0f} s: {site}")
    paths, specs, last = {}, {}, {}
    for key, entry in zip(stores, result.manifest.runs, strict=True):
        run = open_run(stores[key])
        paths[key] = RunPaths.of(entry.slug, (layer.name for layer in run.layers))
        specs[key], last[key] = run.layers, run.epochs - 1
    tokens = [la for la in specs["vit"] if la.layout == "tokens"]
    if not tokens:
        return ["the ViT run recorded no transformer block (no token layer)"]
    grey_conv = next(la for la in specs["grey"] if la.is_conv)
    wide_conv = next(la for la in specs["wide"] if la.is_conv)
    shots: dict[str, Shot] = {
        "any-vit-block-layer.png": (
            paths["vit"].layer(tokens[len(tokens) // 2].name),
            last["vit"],
        ),
        "any-grey-layer.png": (paths["grey"].layer(grey_conv.name), last["grey"]),
        "any-non-square-channel.png": (
            paths["wide"].channel(wide_conv.name, 1),
            last["wide"],
        ),
    }
    with served(site) as base:
        return shoot(base, shots, out)


if __name__ == "__main__":
    sys.exit(main())
