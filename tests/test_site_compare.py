"""The compare page of a real build (``compare_site``: two tiny runs from seeds 0 and 1 on
the same probes, and a copy of seed 0): both runs' curves, one scrubber over every run's
media, the cross-run CKA in [0, 1] and 1 for a run against its copy; the home page's run
picker; a pair with other probes says why it shows no CKA."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from generator.analysis.compare import CrossSimilarity
from generator.site.compare import COMPARE, DATA_FILE, run_pair
from generator.site.live import LiveStatus
from generator.site.pages import ComparePage, CompareRun, Footer, SideBySide
from generator.site.render import make_environment, render_page
from tests.test_site import html_pages, parse, resolve


def sections(page: str, marker: str) -> list[str]:
    """The page cut at each ``marker="...`` attribute: one piece per element holding it."""
    return page.split(f'{marker}="')[1:]


def test_compare_page_of_two_seeds(compare_site: dict[str, Any]) -> None:
    site: Path = compare_site["site"]
    page = (site / COMPARE).read_text(encoding="utf-8")
    slugs = [run.slug for run in compare_site["manifest"].runs]
    assert len(slugs) == 3
    # curves: each run's validation and training line in the loss and the accuracy chart
    assert page.count('<g class="series"') == 4 * len(slugs)
    for slug in slugs:
        assert len(re.findall(f'data-group="{re.escape(slug)}"', page)) == 4, slug
    # one scrubber; every layer row shows each run's animation, all of them under it
    assert page.count("data-scrubber") == 1
    rows = sections(page, "data-compare-row")
    assert rows, "no layer side by side"
    for row in rows:
        runs = [piece.partition('"')[0] for piece in sections(row, "data-run")]
        assert runs == slugs
        assert row.count("<video") >= len(slugs)
    # CKA between every pair, in [0, 1]; a run against its own copy is 1 on the diagonal
    numbers = json.loads((site / DATA_FILE).read_text(encoding="utf-8"))
    by_pair = {(n["first"], n["second"]): n for n in numbers}
    assert set(by_pair) == {("seed0", "seed1"), ("seed0", "seed0-twin"), ("seed1", "seed0-twin")}
    for pair in numbers:
        values = np.array(pair["cka"], dtype=float)
        assert values.shape == (3, 3, 3) and not pair["skipped"]  # epochs x layers x layers
        assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
    itself = np.array(by_pair[("seed0", "seed0-twin")]["cka"], dtype=float)
    assert np.allclose(np.diagonal(itself, axis1=1, axis2=2), 1.0)
    assert by_pair[("seed0", "seed0-twin")]["agree_epoch"] == [0, 0, 0]
    seeds = np.array(by_pair[("seed0", "seed1")]["cka"], dtype=float)
    assert not np.allclose(np.diagonal(seeds, axis1=1, axis2=2), 1.0)  # other seeds differ
    # the heatmaps the scrubber recolours hold the same numbers, per epoch
    shown = [json.loads(html.unescape(p.partition('"')[0])) for p in sections(page, "data-cka")]
    assert len(shown) == 3
    assert np.allclose(np.array(shown[0], dtype=float), seeds, atol=0.006, equal_nan=True)
    assert page.count('<table class="arch agree">') == 3


def test_home_page_picks_runs_and_every_link_resolves(compare_site: dict[str, Any]) -> None:
    site: Path = compare_site["site"]
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="compare/index.html" data-compare-link>Compare all 3 runs' in home
    picks = re.findall(r'value="([^"]*)" data-compare-pick', home)
    assert picks == [run.slug for run in compare_site["manifest"].runs]
    for name in ("index.html", COMPARE):
        for _, _, link in parse(site / name).found:
            target = resolve(site, site / name, link)
            assert target is None or target.is_file(), f"{name}: {link}"
    assert site / COMPARE in html_pages(site)


def test_a_pair_with_other_probes_says_why_it_shows_no_cka() -> None:
    runs = [CompareRun(s, s, "#fff", f"../runs/{s}/index.html") for s in ("a", "b")]
    reason = "a and b recorded different probe images; CKA needs the same probe images"
    numbers = CrossSimilarity(
        "a", "b", ("x",), ("x",), np.zeros((0, 1, 1)), True, 0, 1, 0.9, reason
    )
    pair = run_pair(numbers, *runs)
    assert pair.chart is None and pair.data is None and pair.note == reason
    page = ComparePage(
        path=COMPARE,
        template="compare.html",
        title="Compare runs",
        root="../",
        crumbs=(),
        footer=Footer("Build settings", (), "0"),
        runs=tuple(runs),
        curves=(),
        layers=(SideBySide("layer-0", "x", ((runs[0], None), (runs[1], None))),),
        pairs=(pair,),
        threshold="0.9",
        notes=("The runs have different lengths",),
        data_href="compare.json",
    )
    env = make_environment()
    env.globals["live"] = LiveStatus(training=False, built="", epochs=0)
    shown = render_page(env, page, inline_css=Markup("")).decode("utf-8")
    assert f"Not compared: {html.escape(reason)}" in shown
    assert "a has no animation of x" in shown and "The runs have different lengths" in shown
    assert "data-cka" not in shown


def test_other_architectures_name_each_layer_s_best_match() -> None:
    runs = [CompareRun(s, s, "#fff", f"../runs/{s}/index.html") for s in ("a", "b")]
    values = np.array([[[0.2, 0.5], [0.3, 0.1]], [[0.1, 0.95], [0.97, 0.2]]])
    numbers = CrossSimilarity("a", "b", ("x", "y"), ("p", "q"), values, False, 8, 1, 0.9)
    pair = run_pair(numbers, *runs)
    assert [(r.layer, r.match, r.last, r.epoch) for r in pair.agree] == [
        ("x", "q", "0.95", "1"),
        ("y", "p", "0.97", "1"),
    ]
    assert pair.chart is not None and "b layer →" in pair.chart.svg
