"""Render the gallery's HTML pages and copy its static assets into the site folder.

The Jinja environment autoescapes HTML (class names and file names are user input) and
uses ``StrictUndefined`` so a template that names a missing field fails the build instead
of printing nothing. Every write goes to a temp file beside the target and is renamed into
place, so a browser or a deploy never sees half a page, and every target is resolved and
checked to lie inside the site folder before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from generator.atomic import atomic_path
from generator.errors import NetlapseError
from generator.gallery import NotFoundPage, Page, build_site_context
from generator.manifest import Manifest
from generator.reader import RunReader
from generator.resources import templates_path

log = logging.getLogger(__name__)

TEMPLATES = templates_path()
STATIC = "static"
CSS = "netlapse.css"


def write_site(
    site: Path, manifest: Mapping[str, Any], runs: Sequence[RunReader], templates: Path = TEMPLATES
) -> list[Path]:
    """Write every page of the gallery and its static files; returns the paths written."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    context = build_site_context(manifest, runs)
    env = make_environment(templates)
    inline_css = Markup((templates / STATIC / CSS).read_text(encoding="utf-8"))
    written = copy_static(templates / STATIC, site)
    for page in context.pages:
        html = render_page(env, page, inline_css)
        written.append(write_text_atomic(site, page.path, html))
    log.info("gallery: wrote %d pages and static files into %s", len(written), site)
    return written


def render_site(manifest: Manifest, readers: Mapping[str, RunReader]) -> dict[str, bytes]:
    """Shim (the gallery split replaces it): every page and static file, in memory."""
    data = manifest.to_json()  # today's gallery reads dicts and matches runs by store path
    data["runs"] = [
        {**r, "store": str(readers[r["slug"]].path)} for r in data["runs"] if r["epochs"]
    ]
    context = build_site_context(data, list(readers.values()))
    env, css = make_environment(TEMPLATES), Markup((TEMPLATES / STATIC / CSS).read_text("utf-8"))
    files = {
        f"{STATIC}/{p.relative_to(TEMPLATES / STATIC).as_posix()}": p.read_bytes()
        for p in sorted((TEMPLATES / STATIC).rglob("*"))
        if p.is_file()
    }
    for page in context.pages:
        files[page.path] = render_page(env, page, css).encode("utf-8", "backslashreplace")
    return files


def write_rendered(site: Path, rendered: Mapping[str, bytes]) -> list[str]:
    """Write each rendered file atomically; returns the site-relative paths."""
    for relative, data in rendered.items():
        write_bytes_atomic(site, relative, data)
    return list(rendered)


def make_environment(templates: Path = TEMPLATES) -> Environment:
    """The one Jinja environment: autoescaped HTML, undefined names are errors."""
    return Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(env: Environment, page: Page, inline_css: Markup) -> str:
    """One page's HTML. Only the 404 page inlines the CSS: it is served at any depth,
    where no relative link to ``static/`` can be right."""
    extra = {"inline_css": inline_css} if isinstance(page, NotFoundPage) else {}
    return env.get_template(page.template).render(page=page, **extra)


def inside(site: Path, relative: str | Path) -> Path:
    """``site / relative`` resolved, refusing any path that would leave ``site``."""
    base = Path(site).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise NetlapseError(f"refusing to write {relative}: it lies outside the site folder {base}")
    return target


def write_text_atomic(site: Path, relative: str | Path, text: str) -> Path:
    """Write ``text`` to ``site/relative`` through a temp file + rename."""
    return write_bytes_atomic(site, relative, text.encode("utf-8"))


def write_bytes_atomic(site: Path, relative: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``site/relative`` through a temp file + rename, refusing any path
    outside ``site``. A file that already holds ``data`` is left untouched, so a rebuild
    that changes nothing changes no file (and no modification time)."""
    target = inside(site, relative)
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return target
    with atomic_path(target) as temp:
        temp.write_bytes(data)
    return target


def copy_static(source: Path, site: Path) -> list[Path]:
    """Copy ``templates/static/*`` into ``site/static/`` (each file atomically)."""
    written = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = Path(STATIC) / path.relative_to(source)
        written.append(write_bytes_atomic(site, relative, path.read_bytes()))
    return written
