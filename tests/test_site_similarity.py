"""The run page's "When each layer settles" section, on the shared trained run and on
plain numbers: both CKA heatmaps, the settle epochs with their threshold, the JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from generator.__main__ import main
from generator.analysis.cka import SETTLE_THRESHOLD, RunSimilarity, run_similarity
from generator.site import similarity
from generator.site.manifest import load_manifest
from generator.store import open_run

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def built(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run built with as few media as the build allows (the run page is whole)."""
    out = tmp_path_factory.mktemp("similarity") / "site"
    first = open_run(trained_run).layers[0].name
    argv = ["-q", "build", "--store", str(trained_run), "--out", str(out), "--formats", "gif"]
    assert main([*argv, "--layers", first, "--probe-index", "1", "--channel-probes", "0"]) == 0
    return out


def run_folder(site: Path) -> Path:
    (page,) = site.glob("runs/*/index.html")
    return page.parent


def svg_charts(html: str) -> dict[str, ET.Element]:
    """Every inline SVG of a page by its <title>."""
    charts = {}
    for chunk in html.split("<svg ")[1:]:
        element = ET.fromstring("<svg " + chunk.split("</svg>", 1)[0] + "</svg>")
        charts[element.find(f"{SVG}title").text] = element
    return charts


@pytest.mark.slow
def test_run_page_shows_both_heatmaps_and_the_settle_epochs(built: Path, trained_run: Path) -> None:
    run = open_run(trained_run)
    html = (run_folder(built) / "index.html").read_text(encoding="utf-8")
    charts = svg_charts(html)
    layers = len(run.layers)
    to_final = charts["Similarity to the final network"]
    cells = [r for r in to_final.iter(f"{SVG}rect") if r.get("data-cell") is not None]
    assert len(cells) == layers * run.epochs
    between = charts["Similarity between layers at the last epoch"]
    assert len([r for r in between.iter(f"{SVG}rect") if r.get("data-cell")]) == layers**2
    assert "When each layer settles" in html
    assert f"stays at or above <strong>{SETTLE_THRESHOLD:g}</strong>" in html
    numbers = run_similarity(run)
    table = html.split('<table class="arch settle">', 1)[1].split("</table>", 1)[0]
    for name, epoch in zip(numbers.layers, numbers.settle, strict=True):
        shown = similarity.NOT_SETTLED if epoch is None else str(epoch)
        assert f'<th scope="row">{name}</th><td class="num">{shown}</td>' in table


@pytest.mark.slow
def test_the_numbers_are_a_site_file_the_manifest_owns(built: Path, trained_run: Path) -> None:
    folder = run_folder(built)
    data = json.loads((folder / similarity.DATA_FILE).read_text(encoding="utf-8"))
    relative = (folder / similarity.DATA_FILE).relative_to(built).as_posix()
    assert relative in load_manifest(built).files
    run = open_run(trained_run)
    assert data["layers"] == [layer.name for layer in run.layers]
    assert data["threshold"] == SETTLE_THRESHOLD and data["epochs"] == run.epochs
    assert np.array(data["to_final"], dtype=float).shape == (len(run.layers), run.epochs)
    assert 'href="similarity.json"' in (folder / "index.html").read_text(encoding="utf-8")


def numbers(epochs: int, settle: tuple[int | None, ...]) -> RunSimilarity:
    values = np.linspace(0.1, 1.0, epochs)
    return RunSimilarity(
        layers=("conv", "<b>fc</b>"),
        to_final=np.array([values, [np.nan] * epochs]),
        between=np.array([[1.0, 0.3], [0.3, 1.0]]),
        settle=settle,
        samples=(100, 4),
        between_samples=64,
        grid=4,
        threshold=SETTLE_THRESHOLD,
    )


def test_many_epochs_are_drawn_as_a_readable_number_of_columns() -> None:
    shown = similarity.shown_epochs(500)
    assert len(shown) == similarity.MAX_EPOCH_COLUMNS and shown[0] == 0 and shown[-1] == 499
    chart = similarity.to_final_chart(numbers(500, (450, None)), ["conv", "fc"])
    assert f"{similarity.MAX_EPOCH_COLUMNS} of 500 epochs shown" in chart.caption
    rects = [r for r in ET.fromstring(str(chart.svg)).iter(f"{SVG}rect")]
    assert len(rects) == 2 * similarity.MAX_EPOCH_COLUMNS


def test_settle_table_names_unsettled_layers_and_few_samples() -> None:
    rows = similarity.settle_rows(numbers(3, (1, None)), ["conv", "fc"], [8, 10])
    assert [r.epoch for r in rows] == ["1", similarity.NOT_SETTLED]
    assert rows[0].note == "" and "fewer samples than channels" in rows[1].note


def test_layer_names_are_escaped_and_undefined_values_shown_as_a_dash() -> None:
    chart = similarity.to_final_chart(numbers(3, (1, None)), ["conv", "<b>fc</b>"])
    assert "<b>" not in str(chart.svg) and "&lt;b&gt;fc" in str(chart.svg)
    assert "CKA — to the last epoch" in str(chart.svg)
