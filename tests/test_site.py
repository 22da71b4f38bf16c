"""The written site: pages render, text is escaped, every link resolves inside the site.

One real build (two small synthetic runs, one with a class named like an XSS payload)
is rendered once for the module; the link check walks every HTML page it wrote.
"""

from __future__ import annotations

import json
import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import yaml
from jinja2 import UndefinedError

from generator.build import build
from generator.config import BuildConfig
from generator.errors import NetlapseError
from generator.site import (
    inside,
    make_environment,
    render_site,
    write_bytes_atomic,
    write_rendered,
)
from generator.site.manifest import MANIFEST_VERSION, Manifest, RunEntry
from generator.store import StoreWriter, open_run
from tests.conftest import TINY_LAYERS, make_store, synthetic_record

EVIL = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
REPO = Path(__file__).resolve().parent.parent
WEIGHT_LIMIT = 3 * 2**20


def make_evil_store(path: Path, epochs: int = 3) -> Path:
    """A tiny run whose second class (and a probe source) carry markup."""
    writer = StoreWriter.create(
        path,
        class_names=["alpha", EVIL, "gamma"],
        layers=TINY_LAYERS,
        input_size=8,
        training={"epochs": epochs - 1, "data": f"data/{EVIL}"},
        probe_sources=["alpha/a.png", f"{EVIL}/b.png"],
        probe_images=np.zeros((2, 3, 8, 8), dtype=np.uint8),
        probe_labels=np.arange(2),
    )
    for epoch in range(epochs):
        writer.write_epoch(epoch, synthetic_record(epoch))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("site-test")
    stores = (make_evil_store(base / "evil.zarr"), base / "plain.zarr")
    make_store(stores[1])
    site = base / "site"
    manifest = typed(build(BuildConfig(stores=stores, out=site, jobs=1)).manifest)
    runs = {entry.slug: open_run(s) for entry, s in zip(manifest.runs, stores, strict=True)}
    written = write_rendered(site, render_site(manifest, runs))
    return {"site": site, "manifest": manifest, "written": written, "runs": runs}


def typed(manifest: Manifest | dict[str, Any]) -> Manifest:
    """The build's manifest as the typed record the site reads."""
    if isinstance(manifest, Manifest):
        return manifest
    return Manifest.from_json({**manifest, "version": MANIFEST_VERSION})


def html_pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


class Links(HTMLParser):
    """Every URL-valued attribute of a page, with its tag and attribute name."""

    URL_ATTRS = {"href", "src", "poster", "data-poster", "srcset", "data", "action"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.videos: list[tuple[dict[str, str | None], bool]] = []  # (attrs, in <noscript>)
        self.in_noscript: list[bool] = []  # for each of ``tags``
        self.noscript = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.noscript += tag == "noscript"
        self.in_noscript.append(self.noscript > 0)
        if tag == "video":
            self.videos.append((dict(attrs), self.noscript > 0))
        for name, value in attrs:
            if name in self.URL_ATTRS and value is not None:
                self.found.append((tag, name, value))

    def handle_endtag(self, tag: str) -> None:
        self.noscript -= tag == "noscript"


def parse(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def resolve(site: Path, page: Path, link: str) -> Path | None:
    """The site file a relative link points at (None for in-page anchors)."""
    parts = urlsplit(link)
    if not parts.path:
        return None
    folder = posixpath.dirname(page.relative_to(site).as_posix())
    target = posixpath.normpath(posixpath.join(folder, unquote(parts.path)))
    assert not target.startswith("../") and target != "..", f"{page}: {link} leaves the site"
    return site / target


# -- what was written ---------------------------------------------------------------------
def test_every_page_kind_is_written(built: dict[str, Any]) -> None:
    site = built["site"]
    slug = built["manifest"].runs[0].slug
    for relative in (
        "index.html",
        "404.html",
        f"runs/{slug}/index.html",
        f"runs/{slug}/layers/block1.html",
        f"runs/{slug}/layers/hidden.html",
        f"runs/{slug}/channels/block1-c1.html",
        "static/netlapse.css",
        "static/netlapse.js",
        "static/favicon.svg",
    ):
        assert (site / relative).is_file(), relative


def test_write_rendered_returns_every_file_it_wrote_inside_the_site(
    built: dict[str, Any],
) -> None:
    site = built["site"].resolve()
    written = {(site / p).resolve() for p in built["written"]}
    assert {p.resolve() for p in html_pages(site)} <= written
    assert all(site in p.parents and p.is_file() for p in written)
    assert built["written"][-2:] == ["404.html", "index.html"]  # the home page last
    assert not list(site.rglob(".*.tmp"))  # atomic writes leave no temp files


def test_rewrite_is_idempotent(built: dict[str, Any]) -> None:
    site = built["site"]
    before = {p: p.read_bytes() for p in html_pages(site)}
    write_rendered(site, render_site(built["manifest"], built["runs"]))
    assert {p: p.read_bytes() for p in html_pages(site)} == before


# -- links --------------------------------------------------------------------------------
def test_every_link_resolves_to_a_file_inside_the_site(built: dict[str, Any]) -> None:
    site = built["site"]
    checked = 0
    for page in html_pages(site):
        for tag, attr, link in parse(page).found:
            assert not re.match(r"^(https?:)?//", link), f"{page}: external {attr}={link}"
            assert not link.startswith("/"), f"{page}: root-absolute {attr}={link}"
            if link.startswith("data:"):
                assert tag == "link", f"{page}: data URL outside the favicon: {link}"
                continue
            target = resolve(site, page, link)
            if target is not None:
                assert target.is_file(), f"{page}: {attr}={link} -> missing {target}"
                checked += 1
    assert checked > 100


def test_pages_reference_no_external_resource(built: dict[str, Any]) -> None:
    for page in html_pages(built["site"]):
        text = page.read_text(encoding="utf-8")
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in text and "@import" not in text


def test_static_assets_have_no_external_url() -> None:
    for asset in (REPO / "templates" / "static").iterdir():
        text = asset.read_text(encoding="utf-8")
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), asset
        assert "https://" not in text, asset


# -- escaping -----------------------------------------------------------------------------
def test_malicious_class_name_is_text_everywhere(built: dict[str, Any]) -> None:
    evil_slug = built["manifest"].runs[0].slug
    pages = html_pages(built["site"])
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert EVIL not in text, page
        assert "<img src=x" not in text, page
    for page in (
        built["site"] / "index.html",
        built["site"] / "runs" / evil_slug / "index.html",
        built["site"] / "runs" / evil_slug / "layers" / "block1.html",
    ):
        assert ESCAPED in page.read_text(encoding="utf-8"), page


def test_no_image_element_points_at_x(built: dict[str, Any]) -> None:
    for page in html_pages(built["site"]):
        imgs = [attrs for tag, attrs in parse(page).tags if tag == "img"]
        assert all(attrs.get("src") != "x" and "onerror" not in attrs for attrs in imgs)


def test_environment_is_strict_and_autoescaping() -> None:
    env = make_environment()
    assert env.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"
    with pytest.raises(UndefinedError):
        env.from_string("{{ page.missing }}").render(page={})


# -- media markup -------------------------------------------------------------------------
def videos(page: Path, noscript: bool = False) -> list[dict[str, str | None]]:
    return [attrs for attrs, inside in parse(page).videos if inside == noscript]


def test_videos_autoplay_muted_loop_inline_with_poster(built: dict[str, Any]) -> None:
    slug = built["manifest"].runs[1].slug
    page = built["site"] / "runs" / slug / "layers" / "block1.html"
    found = videos(page)
    assert len(found) > 2
    for attrs in found:
        assert {"muted", "loop", "playsinline"} <= set(attrs) and attrs["aria-label"]
    first, rest = found[:2], found[2:]
    for attrs in first:  # the first screen: autoplay at once
        assert "autoplay" in attrs and attrs["preload"] == "auto"
        assert attrs["poster"].endswith(".poster.png")
    for attrs in rest:  # below the fold: netlapse.js starts them near the viewport
        assert "autoplay" not in attrs and "data-lazy" in attrs and attrs["preload"] == "none"
        assert "poster" not in attrs and attrs["data-poster"].endswith(".poster.png")
    twins = videos(page, noscript=True)  # without JavaScript they autoplay as usual
    assert [a["data-artefact"] for a in twins] == [a["data-artefact"] for a in rest]
    assert all("autoplay" in a and a["preload"] == "none" and a["poster"] for a in twins)


def test_a_layer_page_offers_the_first_probes_grid_as_a_gif_to_share(
    built: dict[str, Any],
) -> None:
    """auto builds one GIF per layer grid (the first probe's), linked for download; inside
    ``<video>`` the fallback is the poster, never a GIF no video-playing browser shows."""
    manifest, site = built["manifest"], built["site"]
    slug = manifest.runs[1].slug
    page = site / "runs" / slug / "layers" / "block1.html"
    links = parse(page)
    shared = {resolve(site, page, v) for t, n, v in links.found if t == "a" and v.endswith(".gif")}
    grids = [
        r for r in manifest.artefacts.values() if r.id.startswith(slug) and r.kind.value == "grid"
    ]
    first = {site / r.files["gif"] for r in grids if r.layer == "block1" and r.probe == 0}
    assert len(first) == 1 and first <= shared and all(p.is_file() for p in shared)
    assert not [r for r in grids if r.probe != 0 and "gif" in r.files]
    assert not [a for t, a in links.tags if t == "img" and str(a.get("src")).endswith(".gif")]


def test_images_below_the_fold_are_lazy(built: dict[str, Any]) -> None:
    slug = built["manifest"].runs[1].slug
    page = built["site"] / "runs" / slug / "layers" / "block1.html"
    imgs = [attrs for tag, attrs in parse(page).tags if tag == "img"]
    thumbs = [a for a in imgs if "channel-" in (a.get("src") or "")]
    assert thumbs and all(a["loading"] == "lazy" for a in thumbs)


def test_run_overview_keeps_probe_videos_lazy(built: dict[str, Any]) -> None:
    slug = built["manifest"].runs[1].slug
    found = videos(built["site"] / "runs" / slug / "index.html")
    assert len(found) == 2 and all("data-lazy" in a and "autoplay" not in a for a in found)


def test_scrubber_is_hidden_until_javascript(built: dict[str, Any]) -> None:
    slug = built["manifest"].runs[1].slug
    for relative in ("layers/block2.html", "channels/block2-c3.html", "index.html"):
        tags = parse(built["site"] / "runs" / slug / relative).tags
        (bar,) = [a for t, a in tags if "data-scrubber" in a]
        assert "hidden" in bar and bar["data-epochs"] == "3" and float(bar["data-fps"]) == 4
        assert any(t == "input" and a.get("type") == "range" and a["max"] == "2" for t, a in tags)
    home_tags = parse(built["site"] / "index.html").tags
    assert not [a for _, a in home_tags if "data-scrubber" in a]


def test_every_page_has_a_footer_with_version(built: dict[str, Any]) -> None:
    version = built["manifest"].tool_version
    for page in html_pages(built["site"]):
        text = page.read_text(encoding="utf-8")
        assert '<footer class="footer">' in text and f"netlapse {version}" in text, page
    slug = built["manifest"].runs[1].slug
    run = (built["site"] / "runs" / slug / "index.html").read_text(encoding="utf-8")
    assert "Training settings of plain" in run and "<dt>seed</dt>" in run


def test_404_page_is_self_contained(built: dict[str, Any]) -> None:
    page = built["site"] / "404.html"
    links = [link for _, _, link in parse(page).found]
    assert not [link for link in links if "static/" in link]
    assert "<style>" in page.read_text(encoding="utf-8")


def eager_bytes(site: Path, page: Path) -> int:
    """Bytes a page asks for before scrolling (with JavaScript on, when <noscript> is
    not markup): posters and sources of videos without data-lazy, images not lazy."""
    parser = parse(page)
    total, loads = 0, False
    for (tag, attrs), hidden in zip(parser.tags, parser.in_noscript, strict=True):
        if hidden:
            continue
        if tag == "video":
            loads = "data-lazy" not in attrs
            if loads and attrs.get("poster"):
                total += resolve(site, page, attrs["poster"]).stat().st_size
        elif (tag == "source" and loads) or (tag == "img" and attrs.get("loading") != "lazy"):
            total += resolve(site, page, attrs["src"]).stat().st_size
    return total


def test_first_screen_of_home_and_overview_is_light(built: dict[str, Any]) -> None:
    """HTML + CSS + JS + eagerly loaded files stay under 3 MB (the browser test measures
    the real transfer)."""
    site = built["site"]
    static = sum((site / "static" / n).stat().st_size for n in ("netlapse.css", "netlapse.js"))
    for page in [site / "index.html", *site.glob("runs/*/index.html")]:
        assert page.stat().st_size + static + eager_bytes(site, page) < WEIGHT_LIMIT


def test_gif_only_build_uses_images(tmp_path: Path) -> None:
    store = tmp_path / "gif.zarr"
    make_store(store)
    site = tmp_path / "site"
    manifest = typed(
        build(
            BuildConfig(
                stores=(store,),
                out=site,
                jobs=1,
                formats=("gif",),
                layers=("block1",),
                channel_probes=0,
            )
        ).manifest
    )
    slug = manifest.runs[0].slug
    page = site / "runs" / slug / "layers" / "block1.html"
    tags = parse(page).tags
    assert not [a for t, a in tags if t == "video"]
    gifs = [a["src"] for t, a in tags if t == "img" and a["src"].endswith(".gif")]
    # 2 grids + the kernels + their change since epoch 0
    assert len(gifs) == 4 and all(resolve(site, page, g).is_file() for g in gifs)
    # a layer without animations still has its page, saying so
    assert "No channel-grid animations" in (
        site / "runs" / slug / "layers" / "block2.html"
    ).read_text(encoding="utf-8")


def test_empty_gallery_explains_how_to_make_a_run(tmp_path: Path) -> None:
    written = write_rendered(tmp_path / "site", render_site(Manifest(), {}))
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "No runs were built" in home
    assert "404.html" in written and (tmp_path / "site" / "404.html").is_file()


# -- safety of writes ---------------------------------------------------------------------
def test_writes_never_leave_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    with pytest.raises(NetlapseError, match="outside the site"):
        write_bytes_atomic(site, "../escape.html", b"x")
    with pytest.raises(NetlapseError):
        inside(site, "/etc/passwd")
    assert not (tmp_path / "escape.html").exists()
    assert write_bytes_atomic(site, "a/b.html", b"ok").read_text() == "ok"


# -- the Pages workflow -------------------------------------------------------------------
def test_pages_workflow_builds_and_deploys_with_official_actions() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pages.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"] and "workflow_dispatch" in triggers
    assert "permissions" not in workflow  # no workflow-wide grant
    build_job, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    uses = [step.get("uses", "") for step in build_job["steps"]]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert "actions/configure-pages@v5" in uses
    assert "actions/upload-pages-artifact@v3" in uses
    upload = next(
        s
        for s in build_job["steps"]
        if s.get("uses", "").startswith("actions/upload-pages-artifact")
    )
    assert upload["with"]["path"] == "site/"
    runs = " ".join(step.get("run", "") for step in build_job["steps"])
    assert "pip install -e ." in runs and "python -m generator build" in runs
    python = next(
        s for s in build_job["steps"] if s.get("uses", "").startswith("actions/setup-python")
    )
    assert str(python["with"]["python-version"]) == "3.11"
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert [s.get("uses") for s in deploy["steps"]] == ["actions/deploy-pages@v4"]
    assert "pages" not in build_job.get("permissions", {})
    assert "id-token" not in build_job.get("permissions", {})


# -- issue 8: a published site leaks nothing, survives young runs, odd names, many classes
SECRET = "/home/someone/secret-data"


def small_build(stores: tuple[Path, ...], site: Path) -> Manifest:
    """A quick real build: one layer, one probe, no per-channel animations."""
    config = BuildConfig(
        stores=stores, out=site, jobs=1, layers=("block1",), probe_index=(1,), channel_probes=0
    )
    return typed(build(config).manifest)


def test_site_publishes_no_local_path(tmp_path: Path) -> None:
    """The training settings and probe sources hold absolute paths; the site names the
    dataset folder and probe files by their last part only."""
    store = tmp_path / "run.zarr"
    writer = StoreWriter.create(
        store,
        class_names=["alpha", "beta", "gamma"],
        layers=TINY_LAYERS,
        input_size=8,
        training={"data": SECRET, "probe_images": [f"{SECRET}/beta/b.png"], "epochs": 1},
        probe_sources=[f"{SECRET}/alpha/a.png", f"{SECRET}/beta/b.png"],
        probe_images=np.zeros((2, 3, 8, 8), dtype=np.uint8),
        probe_labels=np.arange(2),
    )
    for epoch in range(2):
        writer.write_epoch(epoch, synthetic_record(epoch))
    site = tmp_path / "site"
    manifest = small_build((store,), site)
    files = [p for p in site.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaks = [p for p in files if b"someone" in p.read_bytes()]
    assert leaks == []
    run = (site / "runs" / manifest.runs[0].slug / "index.html").read_text(encoding="utf-8")
    assert "<dd>secret-data</dd>" in run and "a.png" in run


def test_run_without_epochs_gets_a_card_and_no_pages(tmp_path: Path) -> None:
    make_store(tmp_path / "young.zarr", epochs=0)
    make_store(tmp_path / "done.zarr")
    runs = {"young": open_run(tmp_path / "young.zarr"), "done": open_run(tmp_path / "done.zarr")}
    manifest = Manifest(
        runs=(RunEntry(slug="young", name="young", epochs=0), RunEntry("done", "done", 3))
    )
    rendered = render_site(manifest, runs)
    assert not [p for p in rendered if p.startswith("runs/young/")]
    assert "runs/done/index.html" in rendered and "runs/done/layers/block1.html" in rendered
    home = rendered["index.html"].decode()
    assert "no epochs yet" in home and 'href="runs/young' not in home
    assert 'href="runs/done/index.html"' in home


def test_names_that_are_not_utf8_are_shown_escaped(tmp_path: Path) -> None:
    """``os.fsdecode`` turns the byte 0xff of a folder name into the lone surrogate
    ``\\udcff``; pages show it as ``\\xff`` and every file encodes."""
    store = tmp_path / "run\udcff.zarr"
    writer = StoreWriter.create(
        store,
        class_names=["alpha\udcff", "beta", "gamma"],
        layers=TINY_LAYERS,
        input_size=8,
        training={"data": "data/cl\udcffsses", "epochs": 1},
        probe_sources=["alpha\udcff/a.png", "beta/b\udcff.png"],
        probe_images=np.zeros((2, 3, 8, 8), dtype=np.uint8),
        probe_labels=np.arange(2),
    )
    for epoch in range(2):
        writer.write_epoch(epoch, synthetic_record(epoch))
    site = tmp_path / "site"
    manifest = small_build((store,), site)
    home = (site / "index.html").read_text(encoding="utf-8")  # strict UTF-8
    assert "run\\xff" in home and "alpha\\xff" in home
    run = (site / "runs" / manifest.runs[0].slug / "index.html").read_text(encoding="utf-8")
    assert "alpha\\xff" in run and "b\\xff.png" in run and "cl\\xffsses" in run
    for page in html_pages(site):
        page.read_text(encoding="utf-8")


def test_pages_stay_small_with_a_thousand_classes(tmp_path: Path) -> None:
    """A 1,000-class run's confusion matrix is a raster image, its probe charts draw the
    top classes only: the run page stays under 2 MB and every file under 5 MB."""
    make_store(tmp_path / "big.zarr", n_classes=1000)
    site = tmp_path / "site"
    manifest = small_build((tmp_path / "big.zarr",), site)
    slug = manifest.runs[0].slug
    run = site / "runs" / slug / "index.html"
    assert run.stat().st_size < 2 * 2**20
    assert max(p.stat().st_size for p in site.rglob("*") if p.is_file()) < 5 * 2**20
    text = run.read_text(encoding="utf-8")
    assert 'src="confusion.png"' in text and (run.parent / "confusion.png").is_file()
    assert "most probable of 1000 classes" in text
    assert f"runs/{slug}/confusion.png" in build_manifest_files(site)


def build_manifest_files(site: Path) -> list[str]:
    """The files the build's manifest owns (so a later build may remove them)."""
    return json.loads((site / "manifest.json").read_text(encoding="utf-8"))["files"]
