"""Render the gallery in memory, then write it: pages, figure files and static assets.

The Jinja environment autoescapes HTML (class names and file names are user input) and
uses ``StrictUndefined`` so a template that names a missing field fails the build instead
of printing nothing. ``render_site`` returns every file of the site as bytes and writes
nothing, so a failed build never leaves a home page linking to a page that was never
written; ``write_rendered`` then puts each file in place through a temp file + rename.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from generator.faults import tick
from generator.resources import templates_path
from generator.site.gather import build_site_context
from generator.site.live import LIVE_FILE, live_file, live_status
from generator.site.manifest import Manifest
from generator.site.pages import NotFoundPage, Page
from generator.site.paths import HOME, NOT_FOUND
from generator.site.write import write_bytes_atomic
from generator.store import RunReader

log = logging.getLogger(__name__)

STATIC = "static"
CSS = "netlapse.css"


def render_site(
    manifest: Manifest,
    readers: Mapping[str, RunReader],
    *,
    templates: Path | None = None,
    training: bool = False,
) -> dict[str, bytes]:
    """Every file of the site (pages, 404, figure images, static files, ``live.json``) by
    site-relative path, rendered in memory; raises before anything is written.
    ``training``: the run still trains, so pages say so and reload on a newer build."""
    templates = Path(templates or templates_path())
    context = build_site_context(manifest, readers)
    env = make_environment(templates)
    status = live_status(manifest, training=training)
    env.globals["live"] = status  # every page's state, read by base.html
    inline_css = Markup((templates / STATIC / CSS).read_text(encoding="utf-8"))
    rendered = static_files(templates)
    rendered[LIVE_FILE] = live_file(status)
    rendered.update(context.files)
    for page in context.pages:
        rendered[page.path] = render_page(env, page, inline_css=inline_css)
    return rendered


def make_environment(templates: Path | None = None) -> Environment:
    """The one Jinja environment: autoescaped HTML, undefined names are errors."""
    return Environment(
        loader=FileSystemLoader(str(templates or templates_path())),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(env: Environment, page: Page, *, inline_css: Markup) -> bytes:
    """One page's HTML as UTF-8. Only the 404 page inlines the CSS: it is served at any
    depth, where no relative link to ``static/`` can be right. Names are escaped before
    they reach a page (``text.shown``); ``backslashreplace`` is the last guard, so writing
    a page never fails on a name that is not valid UTF-8."""
    extra = {"inline_css": inline_css} if isinstance(page, NotFoundPage) else {}
    html = env.get_template(page.template).render(page=page, **extra)
    return html.encode("utf-8", "backslashreplace")


def static_files(templates: Path) -> dict[str, bytes]:
    """``templates/static/*`` as ``static/...`` site files."""
    source = templates / STATIC
    return {
        f"{STATIC}/{path.relative_to(source).as_posix()}": path.read_bytes()
        for path in sorted(p for p in source.rglob("*") if p.is_file())
    }


def write_order(relative: str) -> tuple[bool, int, str]:
    """Static files and figures first, deeper pages before shallower, the home page and
    404 last: while a build writes, every link of a page already written resolves."""
    last = relative in (HOME, NOT_FOUND)
    return (last, -relative.count("/"), relative)


def write_rendered(site: Path, rendered: Mapping[str, bytes]) -> list[str]:
    """Write every rendered file into ``site`` (each atomically, unchanged files left
    alone); returns the site-relative paths, in the order written."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    order = sorted(rendered, key=write_order)
    for relative in order:
        write_bytes_atomic(site, relative, rendered[relative])
        tick("site.page")  # the crash tests' mid-page-write moment; else nothing
    log.info("gallery: wrote %d pages and files into %s", len(order), site)
    return order
