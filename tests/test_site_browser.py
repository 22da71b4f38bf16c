"""The gallery in a real browser: headless Chromium (Debian's) driven by Playwright.

One small real run is trained with the CLI on a two-class ImageFolder made from demo
images, one class folder named like an XSS payload; the site is built, served from a
sub-path (``/repo/``, as GitHub Pages serves a project) and every page kind is opened.
Screenshots go to a temp folder (printed) and to /tmp/netlapse-screens/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from generator.build import build
from generator.config import BuildConfig
from generator.data.demo import make_demo_dataset
from generator.site.server import QuietHandler, make_server
from generator.store import StoreWriter, open_run

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")

# Debian's chromium by default; NETLAPSE_CHROMIUM points elsewhere (e.g. a CI runner's).
CHROMIUM = Path(os.environ.get("NETLAPSE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
EVIL = "<img src=x onerror=alert(1)>"
SCREENS = Path("/tmp/netlapse-screens")
WEIGHT_LIMIT = 3 * 2**20
H264 = 'video/mp4; codecs="avc1.42E01E"'

if not CHROMIUM.exists():
    pytest.skip(f"needs a Chromium at {CHROMIUM} (set NETLAPSE_CHROMIUM)", allow_module_level=True)


class Transfer:
    """Bytes the test server sent, so page weight is what really crossed the wire."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, int] = {}

    def add(self, path: str, n: int) -> None:
        with self.lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()

    def total(self) -> int:
        with self.lock:
            return sum(self.sent.values())


TRANSFER = Transfer()


class CountingWriter:
    def __init__(self, target: BinaryIO, path: str) -> None:
        self.target, self.path = target, path

    def write(self, data: bytes) -> int:
        TRANSFER.add(self.path, len(data))
        return self.target.write(data)


class CountingHandler(QuietHandler):
    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:  # type: ignore[override]
        super().copyfile(source, CountingWriter(outputfile, self.path))  # type: ignore[arg-type]


# -- the site -----------------------------------------------------------------------------
def make_dataset(root: Path, cache: Path) -> Path:
    """Two demo classes; the second renamed to the payload (Linux allows every character
    but "/" in a folder name, and the loader takes any name)."""
    demo = make_demo_dataset(cache, seed=0, size=64, per_class=10)
    data = root / "data"
    shutil.copytree(demo / "checkers", data / "checkers")
    shutil.copytree(demo / "cool_stripes", data / EVIL)
    return data


def train(data: Path, store: Path, cache: Path) -> None:
    env = {**os.environ, "NETLAPSE_CACHE": str(cache)}
    command = [
        sys.executable,
        "-m",
        "generator",
        "-q",
        "train",
        "--data",
        str(data),
        "--out",
        str(store),
        "--epochs",
        "2",
        "--input-size",
        "64",
        "--demo-per-class",
        "10",
        "--probes",
        "2",
        "--channels",
        "8,16,16",
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("browser")
    cache = base / "cache"
    store = base / "runs" / "tiny.zarr"
    train(make_dataset(base, cache), store, cache)
    parent = base / "served"
    site = parent / "repo"
    result = build(BuildConfig(stores=(store,), out=site, jobs=2))
    run = open_run(store)
    server = make_server(parent, port=0, handler=CountingHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    screens = tmp_path_factory.mktemp("screens")
    host, port = server.server_address[:2]
    slug = result.manifest.runs[0].slug
    yield {
        "base": f"http://{host}:{port}/repo/",
        "manifest": result.manifest,
        "run": run,
        "slug": slug,
        "screens": screens,
        "site": site,
    }
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser_context(gallery: dict[str, Any]) -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="netlapse-chromium-")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Watched:
    """A page with every console error, page error, failed request and dialog recorded."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}")
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self._failed)
        self.page.on(
            "response",
            lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"),
        )
        self.page.on("dialog", self._dialog)

    def _failed(self, request: Any) -> None:
        # ERR_ABORTED is a load the page itself cancelled (navigating away while a video
        # loads, a media element reloading to seek), not a missing or refused file.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {request.url} {request.failure}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str) -> Any:
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self.page

    def scroll_through(self) -> None:
        """Scroll to the bottom in steps so every lazy image and video is requested."""
        height = self.page.evaluate("document.documentElement.scrollHeight")
        for y in range(0, height + 900, 700):
            self.page.evaluate(f"window.scrollTo(0, {y})")
            self.page.wait_for_timeout(60)
        self.page.wait_for_load_state("networkidle")
        self.page.evaluate("window.scrollTo(0, 0)")

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def watched(browser_context: Any) -> Iterator[Watched]:
    page = Watched(browser_context)
    yield page
    page.close()


def page_urls(gallery: dict[str, Any]) -> dict[str, str]:
    base, slug = gallery["base"], gallery["slug"]
    return {
        "home": base,
        "run": f"{base}runs/{slug}/index.html",
        "layer": f"{base}runs/{slug}/layers/block2.html",
        "channel": f"{base}runs/{slug}/channels/block1-c2.html",
        "404": f"{base}404.html",
    }


def fps_of(gallery: dict[str, Any]) -> float:
    return float(gallery["manifest"].options.fps)


def label(page: Any) -> str:
    return page.locator("[data-epoch-label]").inner_text()


def video_states(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("""Array.from(document.querySelectorAll('video')).map(v => ({
        id: v.dataset.artefact, ready: v.readyState, time: v.currentTime,
        duration: v.duration, paused: v.paused, autoplay: v.autoplay}))""")


# The videos that intersect the viewport now, as a JavaScript array expression.
ON_SCREEN_VIDEOS = """Array.from(document.querySelectorAll('video')).filter(v => {
    const r = v.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; })"""


def wait_videos_ready(page: Any) -> None:
    for handle in page.query_selector_all("video"):
        handle.scroll_into_view_if_needed()
        handle.wait_for_element_state("visible")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
        timeout=15000,
    )


# -- tests --------------------------------------------------------------------------------
def test_chromium_plays_h264(watched: Watched, gallery: dict[str, Any]) -> None:
    """Checked first: if Debian's chromium could not decode H.264, no video test means
    anything (it can: 'probably' and real frames)."""
    page = watched.open(page_urls(gallery)["layer"])
    assert page.evaluate(f"document.createElement('video').canPlayType('{H264}')") == "probably"
    wait_videos_ready(page)


@pytest.mark.parametrize("kind", ["home", "run", "layer", "channel", "404"])
def test_page_loads_cleanly_with_working_videos(
    watched: Watched, gallery: dict[str, Any], kind: str
) -> None:
    page = watched.open(page_urls(gallery)[kind])
    watched.scroll_through()
    states = video_states(page)
    if kind != "404":
        assert states, f"{kind} page shows no video"
        wait_videos_ready(page)
    records = gallery["manifest"].artefacts
    for state in video_states(page):
        frames = records[state["id"]].frames
        assert state["duration"] == pytest.approx(
            frames / fps_of(gallery), abs=0.5 / fps_of(gallery)
        ), state
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(200)
    shot = gallery["screens"] / f"{kind}.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENS / shot.name)
    print(f"screenshot: {shot} (copied to {SCREENS / shot.name})")
    assert watched.problems == []
    assert watched.dialogs == []


def test_scrubber_seeks_every_video_and_updates_label_and_hash(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    page = watched.open(page_urls(gallery)["layer"])
    wait_videos_ready(page)
    fps, last = fps_of(gallery), gallery["run"].epochs - 1
    assert page.locator("[data-scrubber]").is_visible()

    def shows(epoch: int) -> None:
        page.wait_for_function(
            f"location.hash === '#epoch={epoch}' && Array.from("
            "document.querySelectorAll('video')).every(v => v.paused"
            " && !v.seeking)"
        )
        assert label(page) == f"epoch {epoch} / {last}"
        for state in video_states(page):
            assert state["time"] == pytest.approx((epoch + 0.5) / fps, abs=1e-3), state

    page.locator("[data-epoch-input]").fill(str(last))
    shows(last)
    page.locator("main h1").click()  # focus the page, not a control
    page.keyboard.press("ArrowLeft")
    shows(last - 1)
    page.locator("[data-epoch-input]").fill("0")
    shows(0)
    page.locator("[data-step='1']").click()
    assert label(page) == f"epoch 1 / {last}"
    page.locator("[data-play]").click()
    # The layer page is taller than the viewport: the videos on screen play, and those
    # scrolled away rest until the reader comes back to them (netlapse.js `rest`).
    page.wait_for_function(f"{ON_SCREEN_VIDEOS}.every(v => !v.paused)")
    assert page.evaluate(f"{ON_SCREEN_VIDEOS}.length") > 0
    assert page.evaluate("location.hash") == ""
    assert watched.problems == []


def test_epoch_in_the_url_opens_at_that_epoch(watched: Watched, gallery: dict[str, Any]) -> None:
    page = watched.open(page_urls(gallery)["channel"] + "#epoch=0")
    wait_videos_ready(page)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('video'))"
        ".every(v => v.paused && !v.seeking && v.currentTime > 0)"
    )
    assert label(page).startswith("epoch 0 /")
    assert all(
        s["time"] == pytest.approx(0.5 / fps_of(gallery), abs=1e-3) and not s["autoplay"]
        for s in video_states(page)
    )
    marker_x = page.evaluate("""(() => {
        const line = document.querySelector('[data-epoch-marker]');
        return [+line.getAttribute('x1'), +line.ownerSVGElement.dataset.x0]; })()""")
    assert marker_x[0] == pytest.approx(marker_x[1], abs=0.2)  # charts mark epoch 0 too
    assert watched.problems == []


def test_confusion_matrix_follows_the_scrubber(watched: Watched, gallery: dict[str, Any]) -> None:
    page = watched.open(page_urls(gallery)["run"])
    confusion = gallery["run"].confusion()
    page.locator("[data-epoch-input]").fill("0")
    page.wait_for_function("location.hash === '#epoch=0'")
    # Only the confusion matrix's own cells: the run page has other heatmaps (CKA
    # similarity) whose cells carry `data-count` too.
    counts = page.evaluate("""Array.from(document.querySelectorAll('[data-confusion] [data-count]'))
        .sort((a, b) => a.dataset.count - b.dataset.count).map(t => +t.textContent)""")
    assert counts == confusion[0].ravel().tolist()
    assert page.locator("[data-confusion-label]").inner_text() == "epoch 0"
    assert watched.problems == []


def test_malicious_class_name_is_shown_as_text(watched: Watched, gallery: dict[str, Any]) -> None:
    for kind in ("home", "run", "layer"):
        page = watched.open(page_urls(gallery)[kind])
        assert EVIL in page.evaluate("document.body.innerText"), kind
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert watched.dialogs == []
    assert watched.problems == []


def test_reduced_motion_stops_autoplay_and_offers_play(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    watched.page.emulate_media(reduced_motion="reduce")
    page = watched.open(page_urls(gallery)["layer"])
    page.wait_for_timeout(300)
    states = video_states(page)
    assert states and all(s["paused"] and not s["autoplay"] for s in states)
    button = page.locator(".play-one").first
    assert button.is_visible() and button.inner_text() == "Play"
    button.click()
    page.wait_for_function("!document.querySelector('video').paused")
    assert button.inner_text() == "Pause"
    assert watched.problems == []


def test_without_javascript_videos_autoplay_and_scrubber_stays_hidden(
    browser_context: Any, gallery: dict[str, Any]
) -> None:
    page = browser_context.new_page()
    cdp = browser_context.new_cdp_session(page)
    cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
    page.goto(page_urls(gallery)["layer"], wait_until="load")
    assert page.locator("[data-scrubber]").is_hidden()
    lazy = page.locator("video.lazy-video")
    assert lazy.count() > 0 and all(lazy.nth(i).is_hidden() for i in range(lazy.count()))
    shown = page.locator("video:not(.lazy-video)")  # first screen + the <noscript> twins
    assert shown.count() == page.locator("video[autoplay]").count() > lazy.count()
    for i in range(shown.count()):  # Chrome only plays visible muted autoplay videos
        video = shown.nth(i)
        video.scroll_into_view_if_needed()
        # polled from here: wait_for_function needs page scripts, which are off
        for _ in range(100):
            if video.evaluate("v => !v.paused && v.readyState >= 2 && v.currentTime > 0"):
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail(f"video {i} never played without JavaScript")
    page.close()


def test_site_works_from_file_urls(watched: Watched, gallery: dict[str, Any]) -> None:
    page = watched.open((gallery["site"] / "index.html").as_uri())
    page.locator(".card h2 a").click()
    page.wait_for_load_state("load")
    assert page.url.startswith("file://") and page.url.endswith("/index.html")
    page.locator("table.arch a", has_text="block1").click()
    page.wait_for_load_state("load")
    wait_videos_ready(page)
    page.locator(".thumbs a").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/channels/block1-c1.html")
    wait_videos_ready(page)
    assert watched.problems == []


@pytest.mark.parametrize("kind", ["home", "run"])
def test_first_screen_weighs_under_3_mb(
    browser_context: Any, gallery: dict[str, Any], kind: str
) -> None:
    page = browser_context.new_page()
    cdp = browser_context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    TRANSFER.reset()
    page.goto(page_urls(gallery)[kind], wait_until="load")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    total = TRANSFER.total()
    print(
        f"{kind}: {total} bytes before scrolling: {json.dumps(dict(sorted(TRANSFER.sent.items())))}"
    )
    assert 0 < total < WEIGHT_LIMIT
    page.close()


def test_chromium_plays_the_first_source_the_webm(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    """Every video offers WebM (AV1) first; Debian's chromium must pick it and decode it
    (a real frame, the right duration), the MP4 staying the fallback for other browsers."""
    page = watched.open(page_urls(gallery)["layer"])
    wait_videos_ready(page)
    played = page.evaluate("""Array.from(document.querySelectorAll('video')).map(v => ({
        id: v.dataset.artefact, first: v.querySelector('source').getAttribute('type'),
        current: v.currentSrc, width: v.videoWidth, duration: v.duration}))""")
    assert played
    records = gallery["manifest"].artefacts
    for video in played:
        assert video["first"].startswith("video/webm") and video["current"].endswith(".webm")
        assert video["width"] > 0
        assert video["duration"] == pytest.approx(
            records[video["id"]].frames / fps_of(gallery), abs=0.5 / fps_of(gallery)
        )
    assert watched.problems == []


def test_an_open_page_picks_up_each_new_build_while_the_run_trains(
    watched: Watched, gallery: dict[str, Any]
) -> None:
    """A run page open during training (built with ``--live``, served over HTTP from the
    sub-path) reloads by itself when the next epoch is built, and once more when the
    final build says training has ended: no reload button, no server-side push."""
    full = gallery["run"].path
    served = gallery["site"].parent / "live"  # beside the module's site, same server
    growing = served.parent.parent / "live-runs" / full.name  # the same store name: same slug
    shutil.copytree(full, growing)
    writer = StoreWriter.open_for_resume(growing)
    writer.rewind(2)  # as the run was after epoch 1
    writer.close()

    def build_site(*, live: bool) -> str:
        """Build the growing store's site; its run's slug (named after the store's path)."""
        config = BuildConfig(stores=(growing,), out=served, jobs=1, layers=("block1",), live=live)
        return build(config).manifest.runs[0].slug

    slug = build_site(live=True)
    page = watched.open(f"{gallery['base'].removesuffix('repo/')}live/runs/{slug}/index.html")
    banner = page.locator(".live-banner")
    assert "epochs 0–1 recorded" in banner.inner_text()
    assert page.locator("[data-epoch-input]").get_attribute("max") == "1"

    shutil.rmtree(growing)  # epoch 2 is committed: the whole store
    shutil.copytree(full, growing)
    build_site(live=True)
    page.wait_for_function(  # live.js polls every 5 s and reloads
        "document.querySelector('[data-epoch-input]')?.getAttribute('max') === '2'",
        timeout=30000,
    )
    assert "epochs 0–2 recorded" in page.locator(".live-banner").inner_text()

    build_site(live=False)  # training ended: the final build
    page.wait_for_function("!document.querySelector('.live-banner')", timeout=30000)
    assert page.locator("[data-epoch-input]").get_attribute("max") == "2"
    assert watched.problems == []
