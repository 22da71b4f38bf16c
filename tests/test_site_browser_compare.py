"""The compare page in Chromium, served from a sub-path (``/repo/``) as GitHub Pages
serves a project: ``compare_site`` (two tiny runs from seeds 0 and 1 and a copy of seed
0). No console error; the one scrubber moves every run's animation of the chosen layer
and recolours the CKA heatmaps; runs ticked on the home page are the runs compared.
Screenshots go to /tmp/netlapse-screens/compare-*.png."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from generator.site.compare import COMPARE
from generator.site.server import QuietHandler, make_server
from tests.test_site_browser import (  # noqa: F401
    SCREENS,
    Watched,
    browser_context,
    label,
)

pytestmark = pytest.mark.slow

# The videos of the layer row on show, as a JavaScript array expression.
SHOWN_VIDEOS = "Array.from(document.querySelectorAll('[data-compare-row]:not([hidden]) video'))"


@pytest.fixture(scope="module")
def gallery(compare_site: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``compare_site`` served over HTTP from its parent folder, so the site is /repo/;
    ``browser_context`` (from the main browser tests) uses this."""
    site = compare_site["site"]
    server = make_server(site.parent, port=0, handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    yield {**compare_site, "base": f"http://{host}:{port}/repo/"}
    server.shutdown()
    server.server_close()


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:  # noqa: F811
    page = Watched(browser_context)
    yield page
    page.close()


def shown_runs(page: Any) -> list[str]:
    """The runs of the layer row on show whose media are visible, in page order."""
    return page.evaluate(
        "Array.from(document.querySelectorAll('[data-compare-row]:not([hidden]) .side'))"
        ".filter(s => !s.hidden).map(s => s.dataset.run)"
    )


def settled_at(page: Any, epoch: int, fps: float) -> list[float]:
    """Wait until every video of the row on show is paused on ``epoch``; their times."""
    page.wait_for_function(
        f"{SHOWN_VIDEOS}.every(v => v.readyState >= 2 && v.paused && !v.seeking"
        f" && Math.abs(v.currentTime - {(epoch + 0.5) / fps}) < 1e-3)",
        timeout=20000,
    )
    return page.evaluate(f"{SHOWN_VIDEOS}.map(v => v.currentTime)")


def heat(page: Any) -> list[float | None]:
    """The first CKA heatmap's cell values as shown at the scrubber's epoch ("—": None)."""
    texts = page.evaluate(
        "Array.from(document.querySelector('[data-cka]').querySelectorAll('[data-count]'))"
        ".map(t => t.textContent)"
    )
    return [None if t == "—" else float(t) for t in texts]


def flat(matrix: list[list[float | None]]) -> list[float | None]:
    return [v for row in matrix for v in row]


def near(shown: list[float | None], values: list[float | None]) -> bool:
    """Shown and data (both two places) agree cell by cell."""
    return len(shown) == len(values) and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 0.006)
        for a, b in zip(shown, values, strict=True)
    )


def test_one_scrubber_moves_every_run_and_the_cka(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    manifest = gallery["manifest"]
    fps, slugs = float(manifest.options.fps), [run.slug for run in manifest.runs]
    page = watched.open(gallery["base"] + COMPARE)
    assert page.locator("[data-scrubber]").count() == 1
    assert shown_runs(page) == slugs  # every run: the URL names none
    page.locator("[data-compare-row]:not([hidden])").scroll_into_view_if_needed()
    page.locator("[data-epoch-input]").fill("0")
    times = settled_at(page, 0, fps)
    assert len(times) == len(slugs)  # one scrubber, every run's animation on epoch 0
    data = json.loads(page.locator("[data-cka]").first.get_attribute("data-cka"))
    assert near(heat(page), flat(data[0]))
    page.locator("[data-step='1']").click()
    assert label(page) == f"epoch 1 / {len(data) - 1}"
    settled_at(page, 1, fps)
    assert near(heat(page), flat(data[1]))
    # another layer: its row replaces the first and joins the scrubber's epoch
    select = page.locator("[data-compare-layer]")
    second = select.locator("option").nth(1).get_attribute("value")
    select.select_option(second)
    assert page.locator(f'[data-compare-row="{second}"]').is_visible()
    page.locator(f'[data-compare-row="{second}"]').scroll_into_view_if_needed()
    assert len(settled_at(page, 1, fps)) == len(slugs)
    page.evaluate("window.scrollTo(0, 0)")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "compare-page.png"), full_page=True)
    assert watched.problems == [] and watched.dialogs == []


def test_runs_ticked_on_the_home_page_are_the_runs_compared(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    slugs = [run.slug for run in gallery["manifest"].runs]
    page = watched.open(gallery["base"])
    link = page.locator("[data-compare-link]")
    assert link.get_attribute("href") == COMPARE  # every run, with or without a tick
    page.locator(f'[data-compare-pick][value="{slugs[0]}"]').check()
    assert link.get_attribute("href") == COMPARE
    page.locator(f'[data-compare-pick][value="{slugs[1]}"]').check()
    assert link.get_attribute("href") == f"{COMPARE}?runs={slugs[0]},{slugs[1]}"
    link.click()
    page.wait_for_load_state("networkidle")
    assert shown_runs(page) == slugs[:2]
    pairs = page.evaluate(
        "Array.from(document.querySelectorAll('[data-pair-first]')).filter(p => !p.hidden)"
        ".map(p => [p.dataset.pairFirst, p.dataset.pairSecond])"
    )
    assert pairs == [slugs[:2]]
    lines = page.evaluate(
        "Array.from(document.querySelectorAll('g[data-group]'))"
        ".filter(g => g.style.display !== 'none').map(g => g.dataset.group)"
    )
    assert sorted(set(lines)) == sorted(slugs[:2]) and len(lines) == 8
    # unticking a run on the compare page drops it, and keeps the URL in step
    page.locator(f'[data-compare-run][value="{slugs[2]}"]').check()
    page.locator(f'[data-compare-run][value="{slugs[0]}"]').uncheck()
    assert shown_runs(page) == slugs[1:]
    assert page.evaluate("location.search") == f"?runs={slugs[1]},{slugs[2]}"
    assert watched.problems == [] and watched.dialogs == []
