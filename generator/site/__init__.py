"""The gallery site: its manifest, page types, paths, figures, Jinja rendering, writing
and serving.

The public face: ``render_site`` (the whole site in memory, from the typed manifest and a
reader per run slug), ``write_rendered`` (put it in place), ``write_bytes_atomic`` (one
file, e.g. the manifest) and ``serve`` (the site over HTTP on this machine). Modules, in
the order they build on each other: ``manifest`` (what a site holds, typed: the build
fills it, the pages read it, so it lives here, below ``generator.build``), ``text`` and
``paths`` (how names and links are shown), ``pages`` (the dataclasses templates receive),
``svg``, ``linechart``, ``heatmap`` and ``figures`` (charts of the numbers
``generator.analysis`` derives), ``context``, ``similarity``, ``run_pages``,
``layer_pages`` and ``gather`` (the pages of a site), ``live`` (the still-training state),
``render`` and ``write``; ``server`` serves a built site.
"""

from generator.site.render import make_environment, render_site, write_rendered
from generator.site.server import serve
from generator.site.write import inside, write_bytes_atomic

__all__ = [
    "inside",
    "make_environment",
    "render_site",
    "serve",
    "write_bytes_atomic",
    "write_rendered",
]
