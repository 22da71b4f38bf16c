"""The gallery site: page types, paths, figures, Jinja rendering and writing.

The public face is three functions: ``render_site`` (the whole site in memory, from the
typed manifest and a reader per run slug), ``write_rendered`` (put it in place) and
``write_bytes_atomic`` (one file, e.g. the manifest). Modules, in the order they build
on each other: ``text`` and ``paths`` (how names and links are shown), ``pages`` (the
dataclasses templates receive), ``analysis`` (numbers from a store), ``svg``,
``linechart``, ``heatmap`` and ``figures`` (charts), ``context``, ``similarity``, ``run_pages``,
``layer_pages`` and ``gather`` (the pages of a site), ``render`` and ``write``.
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
