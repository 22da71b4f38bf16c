"""Galleries of real torchvision models in Chromium: a resnet18 (residual blocks, 1x1
shortcuts, up to 512 channels) and a mobilenet_v3_small (depthwise and 1x1 convs,
squeeze-excitation), both recorded through the Recorder API (``torchvision_runs``).

Every page's links resolve; the run page, every layer page and a few channel pages load
with no console error; the scrubber seeks; channel grids and kernel tiles are readable
(at least ``READABLE`` px on screen at a 1280 px wide window). Screenshots go to
/tmp/netlapse-screens/models-*.png.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generator.build import build
from generator.config import BuildConfig
from generator.site.paths import RunPaths
from generator.site.server import QuietHandler, make_server
from generator.store import open_run
from tests.test_site import html_pages, parse, resolve
from tests.test_site_browser import SCREENS, Watched, browser_context, label  # noqa: F401

pytestmark = pytest.mark.slow
READABLE = 32  # px on screen for a channel tile or kernel patch
CHANNEL_PAGES = 2  # per layer: keeps the build small; the rest are in the grids


@pytest.fixture(scope="module")
def gallery(
    tmp_path_factory: pytest.TempPathFactory, torchvision_runs: dict[str, Path]
) -> Iterator[dict[str, Any]]:
    """Both runs built into one site (MP4 only, per-channel animations for one probe),
    served over HTTP; ``browser_context`` (from the main browser tests) uses this."""
    site = tmp_path_factory.mktemp("models") / "site"
    stores = tuple(torchvision_runs.values())
    result = build(
        BuildConfig(
            stores=stores,
            out=site,
            jobs=2,
            formats=("mp4",),
            channel_probes=1,
            channel_pages=CHANNEL_PAGES,
            all_layers=True,  # mobilenet_v3_small's 50+ layers all animated, as checked
        )
    )
    server = make_server(site, port=0, handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    runs = {}
    for name, entry in zip(torchvision_runs, result.manifest.runs, strict=True):
        run = open_run(torchvision_runs[name])
        runs[name] = {"run": run, "paths": RunPaths.of(entry.slug, (la.name for la in run.layers))}
    yield {"base": f"http://{host}:{port}/", "site": site, "runs": runs, "result": result}
    server.shutdown()
    server.server_close()


def url_of(gallery: dict[str, Any], path: str) -> str:
    return gallery["base"] + path


def shoot(page: Any, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"models-{name}.png"), full_page=False)


def test_every_link_of_every_page_resolves(gallery: dict[str, Any]) -> None:
    site, checked = gallery["site"], 0
    for page in html_pages(site):
        for _, attr, link in parse(page).found:
            target = None if link.startswith("data:") else resolve(site, page, link)
            assert target is None or target.is_file(), f"{page}: {attr}={link}"
            checked += target is not None
    assert checked > 1000
    print(f"site size {gallery['result'].total_bytes} bytes, {checked} links checked")


@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v3_small"])
def test_run_and_every_layer_page_load_without_errors(
    watched: Watched, gallery: dict[str, Any], model: str
) -> None:
    run, paths = gallery["runs"][model]["run"], gallery["runs"][model]["paths"]
    page = watched.open(url_of(gallery, paths.run))
    groups = page.locator("table.arch tbody.layer-group").count()
    assert 1 < groups < len(run.layers)  # layers grouped by their block
    assert page.locator("table.arch tbody th[scope=row] a").count() == len(run.layers)
    shoot(page, f"{model}-run")
    for layer in run.layers:
        watched.open(url_of(gallery, paths.layer(layer.name)))
    first = next(layer for layer in run.layers if layer.is_conv)
    for c in range(CHANNEL_PAGES):
        watched.open(url_of(gallery, paths.channel(first.name, c)))
    assert watched.problems == []


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:  # noqa: F811
    page = Watched(browser_context)
    page.page.set_default_timeout(120_000)  # a loaded CI machine: slow, not broken
    yield page
    page.close()


def fps_of(page: Any) -> float:
    return float(page.locator("[data-scrubber]").get_attribute("data-fps"))


def widest_layer(run: Any) -> Any:
    """The widest layer drawn as a grid: maps larger than 1×1 (a layer of 1×1 maps, as
    resnet18's layer4 at 32 px, is drawn as a strip of channels over epochs)."""
    grids = (la for la in run.layers if len(la.shape) == 3 and la.shape[1] * la.shape[2] > 1)
    return max(grids, key=lambda la: la.channels)


@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v3_small"])
def test_grids_of_hundreds_of_channels_have_readable_tiles(
    watched: Watched, gallery: dict[str, Any], model: str
) -> None:
    run, paths = gallery["runs"][model]["run"], gallery["runs"][model]["paths"]
    layer = widest_layer(run)
    assert layer.channels >= 256
    page = watched.open(url_of(gallery, paths.layer(layer.name)))
    video = page.locator("figure.anim[data-kind=grid] video").first
    video.scroll_into_view_if_needed()
    shown, natural = video.evaluate("v => [v.clientWidth, +v.getAttribute('width')]")
    cols = math.ceil(math.sqrt(layer.channels))
    tile = (natural + 1) // cols - 1  # tiles plus 1 px separators (the frame may pad 1 px)
    assert tile * shown / natural >= READABLE, (layer.name, tile, shown, natural)
    note = page.locator(".channels-note")
    assert f"Of its {layer.channels} channels" in note.inner_text()
    note.locator("a").click()  # "show all" leads to the grids of every channel
    assert page.evaluate("location.hash") == "#grids"
    shoot(page, f"{model}-grid")
    assert watched.problems == []


def test_kernel_views_follow_the_kernel_shape(watched: Watched, gallery: dict[str, Any]) -> None:
    run, paths = (
        gallery["runs"]["mobilenet_v3_small"]["run"],
        gallery["runs"]["mobilenet_v3_small"]["paths"],
    )
    depthwise = next(
        la for la in run.attrs.conv_layers if la.kernel_shape[1] == 1 and la.groups > 1
    )
    pointwise = next(la for la in run.attrs.conv_layers if la.kernel_shape[2:] == (1, 1))
    page = watched.open(url_of(gallery, paths.layer(depthwise.name)))
    kernels = page.locator("figure.anim[data-kind=kernels]")
    assert "showing" not in kernels.inner_text()  # every depthwise kernel drawn
    shown, natural = kernels.locator("video").evaluate(
        "v => [v.clientWidth, +v.getAttribute('width')]"
    )
    cols = math.ceil(math.sqrt(depthwise.channels))
    assert ((natural + 1) // cols - 1) * shown / natural >= READABLE
    assert page.locator("figure.anim[data-kind=kernel-change]").count() == 1
    shoot(page, "depthwise-kernels")
    page = watched.open(url_of(gallery, paths.layer(pointwise.name)))
    assert (
        "1×1 kernels: rows are the" in page.locator("figure.anim[data-kind=kernels]").inner_text()
    )
    assert watched.problems == []


def test_scrubber_seeks_the_kernel_change_with_the_rest(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    run, paths = gallery["runs"]["resnet18"]["run"], gallery["runs"]["resnet18"]["paths"]
    layer = run.attrs.conv_layers[1]
    page = watched.open(url_of(gallery, paths.layer(layer.name)) + "#epoch=0")
    change = page.locator("figure.anim[data-kind=kernel-change] video")
    change.scroll_into_view_if_needed()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('video')).every(v => v.paused && !v.seeking)"
    )
    assert label(page) == f"epoch 0 / {run.epochs - 1}"
    change.evaluate("v => v.readyState >= 2 || new Promise(r => v.onloadeddata = r)")
    page.locator("[data-epoch-input]").fill(str(run.epochs - 1))
    page.wait_for_function(f"location.hash === '#epoch={run.epochs - 1}'")
    # the lazy kernel-change video seeks with the rest, past epoch 0's frame
    change.evaluate("v => v.seeking ? new Promise(r => v.onseeked = r) : 0")
    assert change.evaluate("v => v.currentTime") > 1 / fps_of(page)
    assert watched.problems == []
