"""``build``'s settings, in two parts: ``PublishedOptions``, what the media look like
(written into the site's manifest and shown in its footer), and ``BuildConfig``, those
plus where and how this machine builds (paths, workers), which a published site never
shows. The published part is declared once, here, and the manifest and the site read it
as typed attributes, so no option has a second default anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from generator import defaults
from generator.config.fields import (
    FORMATS,
    check_ranges,
    int_list,
    name_list,
    option,
    parse_formats,
    storage_options,
)
from generator.errors import OptionError
from generator.render.captions import MAX_FONT, strip_height
from generator.render.colormaps import COLORMAPS, SCALE_MODES
from generator.store import StoreLocation

# The smallest frame side that leaves a picture of at least 64 px above a caption strip.
MIN_FRAME_SIDE = strip_height(MAX_FONT) + 64
MAX_FRAME_SIDE = 8192


@dataclass(frozen=True)
class PublishedOptions:
    """The ``build`` options that shape the media, as a site publishes them: plain JSON
    values in ``manifest.json`` (``to_json``), never a local path or a machine's worker
    count. ``probe_index`` is 1-based, as captions show probes."""

    formats: tuple[str, ...] = option(
        defaults.FORMATS,
        help="auto | gif | mp4 | gif,mp4. auto: WebM (AV1) and an MP4 fallback at --max-side; "
        "plus, as a download to share, a GIF at most --gif-max-side px of each layer's grid "
        "and class probabilities for probe 1 (when selected), its kernels and feature "
        "visualizations",
        parse=parse_formats,
        shown="auto",
    )
    colormap: str = option(
        defaults.COLORMAP,
        help="seed: red < 0 < blue on black; diverging: red < 0 < blue on white",
        parse=str,
        choices=COLORMAPS,
    )
    scale: str = option(
        defaults.SCALE,
        help="which values share one colour scale (channel: one per channel over all epochs)",
        parse=str,
        choices=SCALE_MODES,
    )
    layers: tuple[str, ...] | None = option(
        None,
        help="animate only the layers matching these names or glob patterns, comma-separated "
        "(* also crosses dots), e.g. block1,block2 or 'features.denseblock2.*'; the others "
        "keep what an earlier build made",
        parse=name_list,
        shown=f"every layer of a net of up to {defaults.ALL_LAYERS_UP_TO} layers; deeper: "
        "block outputs, the first and last conv and the output",
        cli={"metavar": "PATTERNS"},
    )
    all_layers: bool = option(
        False, help="animate every layer, however deep the net (within --budget-mb)"
    )
    probe_index: tuple[int, ...] | None = option(
        None,
        help="render only these recorded probe images, numbered from 1 as the captions "
        "count them, e.g. 1,3 (how many a run records is train's --probes)",
        parse=int_list,
        low=1,
        high=100_000,
        shown="every recorded probe",
        cli={"metavar": "N[,N...]"},
    )
    budget_mb: float = option(
        defaults.BUDGET_MB,
        help="the site's size to stay under, in MB (GitHub Pages hosts 1 GB): the least "
        "important animations are left out to fit, and the build names them and the "
        "option that brings them back",
        parse=float,
        positive=True,
        high=10**9,
    )
    channel_probes: int = option(
        defaults.CHANNEL_PROBES,
        help="how many of the selected probes get per-channel animations on the channel "
        "pages (each adds a WebM and an MP4 per paged channel; every probe is in the grids)",
        parse=int,
        low=0,
        high=100_000,
    )
    contact_probes: int = option(
        defaults.CONTACT_PROBES,
        help="how many of the selected probes get a contact sheet (a layer's channels x "
        "chosen epochs as one lossless still; each is about 1 MB at 512 px)",
        parse=int,
        low=0,
        high=100_000,
    )
    channel_pages: int = option(
        defaults.CHANNEL_PAGES,
        help="conv channels per layer (the first N) that get their own page and per-channel "
        "animations; every channel is always in the layer's grid (each page adds about "
        "0.1 s of build time per probe on one core)",
        parse=int,
        low=0,
        high=100_000,
    )
    fps: float = option(defaults.FPS, help="epochs per second", parse=float, low=0.1, high=60)
    max_side: int = option(
        defaults.MAX_SIDE,
        help="largest frame side in px; bigger grids are downscaled",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )
    channel_side: int = option(
        defaults.CHANNEL_SIDE,
        help="side of per-channel animations in px",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )
    gif_max_side: int = option(
        defaults.GIF_MAX_SIDE,
        help="with --formats auto, the GIFs to share are rendered at most this big",
        parse=int,
        low=MIN_FRAME_SIDE,
        high=MAX_FRAME_SIDE,
    )

    @property
    def auto_formats(self) -> bool:
        return self.formats == ("auto",)

    @classmethod
    def of(cls, config: PublishedOptions) -> PublishedOptions:
        """Just the published part of ``config`` (a ``BuildConfig``)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """The options as ``manifest.json`` holds them: tuples as lists."""
        return {
            f.name: list(value) if isinstance(value, tuple) else value
            for f in fields(self)
            for value in (getattr(self, f.name),)
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PublishedOptions:
        """Parse ``to_json``'s form; an option a manifest of an older build lacks keeps its
        default, one it has that this version does not know is ignored."""
        given: dict[str, Any] = {
            f.name: tuple(value) if isinstance(value, list) else value
            for f in fields(cls)
            if f.name in data
            for value in (data[f.name],)
        }
        return cls(**given)


@dataclass(frozen=True, kw_only=True)
class BuildConfig(PublishedOptions):
    """What ``build`` renders (``PublishedOptions``) and where and how: the stores, the site
    folder and the workers, none of which a site publishes."""

    stores: tuple[StoreLocation, ...] = field(metadata={"local": True})
    out: Path = option(Path(defaults.SITE), help="site folder", parse=Path, local=True)
    jobs: int = option(
        help="parallel worker processes",
        parse=int,
        low=1,
        high=1024,
        shown="all cores",
        local=True,
        default_factory=lambda: os.cpu_count() or 1,
    )
    scheduler: str | None = option(
        None,
        help="run the jobs on this dask cluster's workers instead of --jobs local processes, "
        "e.g. tcp://HOST:8786; each worker needs netlapse and reads the store itself, "
        "this process writes the site (needs netlapse[cluster])",
        parse=str,
        shown="local processes",
        local=True,
        cli={"metavar": "ADDRESS"},
    )
    live: bool = option(
        False,
        help="the run is still training: pages say so and reload when a newer build is "
        "there (train --site and Recorder(site=...) set it)",
        local=True,
    )
    storage_option: tuple[tuple[str, str], ...] = storage_options(
        "an object-storage client option for --store URLs, e.g. "
        "endpoint=http://HOST:9000 (repeatable)"
    )

    def __post_init__(self) -> None:
        from generator.render.colormaps import check_colormap, check_scale_mode

        check_colormap(self.colormap)
        check_scale_mode(self.scale)
        for fmt in self.formats:
            if fmt not in (*FORMATS, "auto"):
                raise OptionError(f"--formats: unknown format {fmt!r}; use auto, gif, mp4")
        check_ranges(self)
