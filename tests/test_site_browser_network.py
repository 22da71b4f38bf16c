"""The network overview page of a 102-layer network in Chromium, served from a sub-path.

The store is synthetic (``tests.test_site_tree.deep_layers``: a DenseNet-shaped net under a
``features`` wrapper, maps from 8×8 down to 1×1, written by the real StoreWriter), so the
test costs a build of a few animations, not a training run. The build animates one
layer only, as a deep net's default build leaves most layers out: every other layer's
view must still be there. Checked: no console error or failed request with every block
unfolded, every link and image of the page resolves, the scrubber moves every view, the
run page links the overview and its change chart has at most a dozen lines; a layer of
1×1 maps the build did not animate still shows each probe's channel strip.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generator.build import build
from generator.config import BuildConfig
from generator.site.paths import RunPaths
from generator.site.server import QuietHandler, make_server
from generator.site.tree import MAX_SERIES
from generator.store import LayerSpec, StoreWriter
from tests.conftest import synthetic_record
from tests.test_site import parse, resolve
from tests.test_site_browser import SCREENS, Watched, browser_context  # noqa: F401
from tests.test_site_tree import deep_layers

pytestmark = pytest.mark.slow
EPOCHS = 3
ANIMATED = "features.conv0"


def deep_store(path: Path, layers: list[LayerSpec], epochs: int = EPOCHS) -> Path:
    """A committed run of ``layers`` (synthetic values that encode the epoch)."""
    writer = StoreWriter.create(
        path,
        class_names=["alpha", "beta", "gamma"],
        layers=layers,
        input_size=8,
        training={"epochs": epochs - 1, "seed": 0},
        probe_sources=["a.png", "b.png"],
        probe_images=np.zeros((2, 3, 8, 8), np.uint8),
        probe_labels=np.arange(2),
    )
    for epoch in range(epochs):
        record = synthetic_record(epoch, layers=layers)
        weighted = {layer.name for layer in layers if layer.params}
        record.weight_change = {k: v for k, v in record.weight_change.items() if k in weighted}
        writer.write_epoch(epoch, record)
    writer.trim()
    return path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("network")
    layers = deep_layers()
    store = deep_store(base / "deep.zarr", layers)
    parent = base / "served"
    site = parent / "repo"
    result = build(
        BuildConfig(
            stores=(store,),
            out=site,
            jobs=1,  # a handful of artefacts: worker processes would cost more than them
            formats=("mp4",),
            layers=(ANIMATED,),
            channel_pages=1,
            contact_probes=0,
        )
    )
    server = make_server(parent, port=0, handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    paths = RunPaths.of(result.manifest.runs[0].slug, (la.name for la in layers))
    yield {"base": f"http://{host}:{port}/repo/", "site": site, "paths": paths, "layers": layers}
    server.shutdown()
    server.server_close()


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:  # noqa: F811
    page = Watched(browser_context)
    page.page.set_default_timeout(60_000)
    yield page
    page.close()


def sprites(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("""Array.from(document.querySelectorAll('[data-sprite]')).map(i => ({
        frame: i.dataset.frame, frames: +i.dataset.frames, side: +i.dataset.side,
        transform: i.style.transform, height: i.naturalHeight, width: i.naturalWidth}))""")


def test_the_overview_of_a_deep_net_loads_clean_links_resolve_and_scrubs(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    site, paths, layers = gallery["site"], gallery["paths"], gallery["layers"]
    assert len(layers) >= 100
    overview = site / paths.overview
    checked = 0
    for _, attr, link in parse(overview).found:
        target = resolve(site, overview, link)
        assert target is None or target.is_file(), f"{attr}={link}"
        checked += target is not None
    assert checked > 2 * len(layers)  # each layer's thumbnail and page, and more

    page = watched.open(gallery["base"] + paths.overview)
    assert page.locator("details:not([open])").count() > 20  # blocks start folded
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    watched.scroll_through()
    views = sprites(page)
    assert len(views) == len(layers)  # every layer has a view, animated or not
    assert all(v["height"] == v["side"] * v["frames"] == v["side"] * EPOCHS for v in views)
    notes = page.locator(".layer-line .note").count()
    assert notes == len(layers) - 1  # all but the animated layer say how to get theirs

    for epoch in (0, 1, EPOCHS - 1):
        page.locator("[data-epoch-input]").fill(str(epoch))
        page.wait_for_function(f"location.hash === '#epoch={epoch}'")
        for view in sprites(page):
            assert view["frame"] == str(epoch), view
            assert view["transform"] == f"translateY({-epoch * view['side']}px)", view
    page.screenshot(path=str(SCREENS / "network-deep.png"))
    assert watched.problems == [] and watched.dialogs == []

    run = watched.open(gallery["base"] + paths.run)
    change = run.locator("#change ~ figure svg").first.inner_html()
    assert 1 < len(re.findall("<polyline", change)) <= MAX_SERIES
    run.locator("a.network-link").click()
    run.wait_for_load_state("load")
    assert run.url.endswith(paths.overview)

    flat = watched.open(gallery["base"] + paths.layer("pool"))  # 1×1 maps, not animated
    strips = flat.evaluate(
        "Array.from(document.querySelectorAll('.strip img')).map(i => i.naturalWidth)"
    )
    assert len(strips) == 2 and all(width > 0 for width in strips)  # one per probe
    assert watched.problems == []
