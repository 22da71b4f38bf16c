"""Offset histograms and the gradient-flow chart (issue 26): readable at 200 layers, hidden
for stores without gradients, and a store of the schema before them still builds."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generator.build import build
from generator.config import BuildConfig
from generator.site.distributions import (
    FLOW_EPOCHS,
    RIDGES,
    gradient_flow,
    offset_histogram,
)
from generator.store import GradientStats, open_run
from tests.conftest import make_store, record_model_run
from tests.test_store_schema import unstack_to_v4


def svg_of(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def tags(root: ET.Element, name: str) -> list[ET.Element]:
    return root.findall(f".//{{http://www.w3.org/2000/svg}}{name}")


def test_gradient_flow_of_200_layers_and_50_epochs_stays_readable() -> None:
    rng = np.random.default_rng(0)
    epochs, layers = 50, 200
    norm = rng.uniform(1e-4, 1.0, (epochs, layers)).astype(np.float32)
    norm[0] = np.nan  # epoch 0: no backward pass yet
    names = tuple(f"stage{i // 50}.block{i % 50}.conv" for i in range(layers))
    passes = np.full(norm.shape, 7)
    stats = GradientStats(names, norm, norm * 2, norm * 1e-3, passes, passes)
    charts = gradient_flow(stats)
    assert [c.title for c in charts] == ["Gradient norm per layer", "Update/weight ratio per layer"]
    for chart in charts:
        root = svg_of(chart.svg)
        lines = [
            g for g in tags(root, "g") if g.find("{http://www.w3.org/2000/svg}title") is not None
        ]
        epoch_lines = [g for g in lines if g.get("stroke")]
        assert len(epoch_lines) == FLOW_EPOCHS  # not 49 lines
        assert len(tags(root, "rect")) == layers  # every layer has its tooltip
    dashed = [line for line in tags(svg_of(charts[1].svg), "line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1  # the 1e-3 reference
    assert gradient_flow(None) == ()


def test_the_flow_caption_names_the_epochs_the_budget_left_unmeasured() -> None:
    """Within a Recorder's overhead budget the monitor may measure no pass of an epoch
    (the record comes first); the chart skips that epoch and its caption says which."""
    layers, epochs = ("a", "b"), 5
    norm = np.full((epochs, 2), 0.5, np.float32)
    passes = np.full((epochs, 2), 10)
    sampled = np.ones((epochs, 2), np.int64)
    norm[0], passes[0], sampled[0] = np.nan, 0, 0  # epoch 0: no training
    norm[2:4], sampled[2:4] = np.nan, 0  # epochs 2 and 3: no time left
    caption = gradient_flow(GradientStats(layers, norm, norm, norm, passes, sampled))[0].caption
    assert "Not measured in epochs 2, 3: the overhead budget" in caption
    sampled[2:4], norm[2:4] = 1, 0.5
    caption = gradient_flow(GradientStats(layers, norm, norm, norm, passes, sampled))[0].caption
    assert "Not measured" not in caption


def test_offset_histogram_draws_one_ridge_per_shown_epoch() -> None:
    epochs, bins = 60, 16
    edges = np.tile(np.linspace(-1, 1, bins + 1, dtype=np.float32), (epochs, 1))
    counts = np.ones((epochs, bins + 2))
    counts[0] = np.nan  # gradients have none at epoch 0
    chart = offset_histogram(edges, counts, kind="gradients")
    assert chart is not None and "at epoch 59" in chart.caption
    assert len(tags(svg_of(chart.svg), "polygon")) == RIDGES
    assert offset_histogram(edges[:1], counts[:1], kind="gradients") is None


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.logits = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.relu(self.conv(x)).flatten(1))


def test_pages_show_gradients_and_a_store_before_them_still_builds(tmp_path: Path) -> None:
    """A Recorder run gets the gradient-flow charts and three offset histograms per layer
    with weights; a schema-v3 store (before gradients) builds without either."""
    recorded = record_model_run(tmp_path / "rec.zarr", Small(), epochs=2, probes=2, size=8)
    old = tmp_path / "old.zarr"
    make_store(old).close()
    unstack_to_v4(old)  # the layout before v5, then the version before gradients
    meta = old / "zarr.json"
    node = json.loads(meta.read_text())
    node["attributes"]["schema_version"] = 3
    meta.write_text(json.dumps(node))
    assert open_run(old).gradients() is None
    site = tmp_path / "site"
    options = {"formats": ("gif",), "channel_probes": 0, "jobs": 1}
    build(BuildConfig(stores=(recorded, old), out=site, layers=("logits",), **options))
    rec_run = next((site / "runs").glob("rec*"))
    run_page = (rec_run / "index.html").read_text(encoding="utf-8")
    assert "Gradient flow" in run_page and "Update/weight ratio per layer" in run_page
    layer_page = (rec_run / "layers" / "conv.html").read_text(encoding="utf-8")
    for kind in ("Weights", "Activations", "Gradients"):
        assert f"{kind} over epochs" in layer_page
    old_run = next(p for p in (site / "runs").iterdir() if p.name.startswith("old"))
    assert "Gradient flow" not in (old_run / "index.html").read_text(encoding="utf-8")
    old_layer = (old_run / "layers" / "block1.html").read_text(encoding="utf-8")
    assert "Distributions over epochs" not in old_layer
