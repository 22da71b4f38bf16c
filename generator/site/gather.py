"""Every page of the site, gathered from the manifest and the runs' readers.

Gather first, write later: the whole site (pages and the files its figures need) is
built in memory, so a failure raises before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from generator.site.compare import compare_link, compare_page
from generator.site.context import RunContext, run_contexts
from generator.site.layer_pages import layer_pages
from generator.site.manifest import Manifest
from generator.site.overview import overview_page
from generator.site.pages import Footer, HomePage, NotFoundPage, Page, RunCard
from generator.site.paths import HOME, NOT_FOUND
from generator.site.run_pages import run_card, run_page, waiting_card
from generator.site.text import format_setting
from generator.store import RunReader

HOME_EAGER_RUNS = 6  # home cards whose thumbnails load with the page
# The published options the footer shows (attributes of ``PublishedOptions``), in order.
SHOWN_SETTINGS = (
    "fps",
    "colormap",
    "scale",
    "formats",
    "max_side",
    "channel_probes",
    "contact_probes",
    "channel_pages",
)


@dataclass(frozen=True)
class SiteContext:
    """The site's pages, and files other than pages (figure images) by site path."""

    tool_version: str
    pages: tuple[Page, ...]
    files: Mapping[str, bytes]


def build_site_context(manifest: Manifest, readers: Mapping[str, RunReader]) -> SiteContext:
    """Every page of the site for the runs in ``manifest`` (readers keyed by run slug)."""
    version = manifest.tool_version
    fps = manifest.options.fps
    pages: list[Page] = []
    cards: list[RunCard] = []
    files: dict[str, bytes] = {}
    shown_runs: list[RunContext] = []  # runs with pages: the compare page's
    for entry, run in run_contexts(manifest, readers):
        if min(entry.epochs, run.epochs) == 0:
            cards.append(waiting_card(entry, run))
            continue
        ctx = RunContext(run, entry, manifest, version, fps)
        cards.append(replace(run_card(ctx, eager=len(cards) < HOME_EAGER_RUNS), slug=entry.slug))
        shown_runs.append(ctx)
        page, figures = run_page(ctx)
        network, thumbnails = overview_page(ctx)
        layers, strips = layer_pages(ctx)
        pages += [page, network, *layers]
        files.update(figures)
        files.update(thumbnails)
        files.update(strips)
    footer = site_footer(manifest)
    if len(shown_runs) >= 2:
        compared, data = compare_page(shown_runs, footer)
        pages.append(compared)
        files.update(data)
    home = HomePage(
        path=HOME,
        template="index.html",
        title="Runs",
        root="",
        crumbs=(),
        footer=footer,
        runs=tuple(cards),
        compare=compare_link(shown_runs),
    )
    missing = NotFoundPage(
        path=NOT_FOUND,
        template="404.html",
        title="Page not found",
        root="",
        crumbs=(),
        footer=footer,
    )
    return SiteContext(version, (home, *pages, missing), files)


def site_footer(manifest: Manifest) -> Footer:
    """Build options that change what the media look like (never local paths)."""
    items = tuple((key, format_setting(getattr(manifest.options, key))) for key in SHOWN_SETTINGS)
    return Footer("Build settings", items, manifest.tool_version)
