"""The build stage: what to make from run stores, making it, and keeping a site current.

The public face is ``build`` (plan, then write the media, the pages and the manifest),
``discover_stores`` (the runs a build finds by itself) and ``LiveSite`` (the rebuilds a
recording run starts after each committed epoch). Private modules, in the order they build
on each other:

- ``artefacts``: one job's media (grids, channels, kernels, patches, contact sheets) from a
  store, through ``render`` and ``encode``; it hands each job to ``layer_media``,
  ``kernel_media`` or ``example_media``, which share ``animation`` (options, encoding);
- ``plan``: every artefact with a fingerprint of its inputs, what is up to date, the options
  a site publishes;
- ``jobs``: where jobs run (local processes or a dask cluster);
- ``outdir``: the ``--out`` guard (never write into a folder netlapse did not make);
- ``builder``: the build itself, gather then write (as mkdocs' ``build`` does);
- ``rebuilds``: live rebuilds in a separate, niced process while training runs.

The site's table of contents (``generator.site.manifest``) belongs to the site stage below,
so the pages can be rendered from it without importing the build.
"""

from generator.build.builder import build, discover_stores
from generator.build.rebuilds import LiveSite

__all__ = ["LiveSite", "build", "discover_stores"]
