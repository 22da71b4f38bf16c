"""What one run's pages share: its reader, manifest entry, paths, footer and media.

``RunContext`` is built once per run and read by the page builders (``run_pages``,
``layer_pages``); it reads each array that several pages need once. Media are looked up
by (kind, layer, probe, channel) in the run's manifest records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from generator.analysis.cka import RunSimilarity, run_similarity
from generator.errors import StoreError
from generator.site.manifest import ArtefactKind, ArtefactRecord, Manifest, RunEntry
from generator.site.pages import Footer, Link, Media, Scrubber
from generator.site.paths import HOME, RunPaths, root_of, url
from generator.site.text import format_settings, shown
from generator.site.tree import TreeNode, module_tree
from generator.store import HISTOGRAM_KINDS, Histograms, LayerSpec, RunReader

EAGER_MEDIA = 2  # animations per page assumed to be in the first screen (others lazy)

Key = tuple[ArtefactKind, str | None, int | None, int | None]


def make_media(record: ArtefactRecord, here: str, caption: str, *, eager: bool) -> Media:
    """A manifest record as a page shows it, its files linked relative to ``here``."""
    files = record.files

    def link(fmt: str) -> str | None:
        return url(here, files[fmt]) if fmt in files else None

    return Media(
        shown(record.id),
        record.kind.value,
        caption,
        shown(record.note),
        link("mp4"),
        link("gif"),
        link("poster"),
        link("png"),
        record.width,
        record.height,
        record.frames,
        eager,
        webm=link("webm"),
    )


def first_eager(media: list[Media | None]) -> tuple[Media, ...]:
    """The media found, the first ``EAGER_MEDIA`` of them loaded with the page."""
    found = [m for m in media if m is not None]
    return tuple(replace(m, eager=i < EAGER_MEDIA) for i, m in enumerate(found))


@dataclass
class RunContext:
    """One run's shared facts for its pages."""

    run: RunReader
    entry: RunEntry
    manifest: Manifest
    version: str
    fps: float
    index: dict[Key, ArtefactRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {
            record.key: record for record in self.manifest.records_of(self.entry) if record.files
        }

    @cached_property
    def paths(self) -> RunPaths:
        return RunPaths.of(self.entry.slug, (layer.name for layer in self.run.layers))

    @cached_property
    def name(self) -> str:
        return shown(self.entry.name)

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        return tuple(shown(n) for n in self.run.attrs.class_names)

    @cached_property
    def n_probes(self) -> int:
        return self.run.n_probes  # each call opens a zarr array: read once

    @cached_property
    def probe_probs(self) -> np.ndarray:
        return self.run.probe_probs()

    @cached_property
    def similarity(self) -> RunSimilarity:
        """CKA of every layer (the run page and the network overview both show it)."""
        return run_similarity(self.run)

    @cached_property
    def weight_change(self) -> dict[str, np.ndarray]:
        """Each layer with weights: its (E,) relative weight change (read once)."""
        return self.run.weight_change()

    @cached_property
    def histograms(self) -> tuple[Histograms | None, ...]:
        """Every kind's histograms (None each for a store without them), read once."""
        return tuple(self.run.histograms(kind) for kind in HISTOGRAM_KINDS)

    @cached_property
    def tree(self) -> TreeNode:
        """The network's module tree (``tree.module_tree``)."""
        return module_tree(self.run.layers)

    @cached_property
    def footer(self) -> Footer:
        return Footer(
            f"Training settings of {self.name}",
            format_settings(self.run.attrs.training),
            self.version,
        )

    def paged_channels(self, layer: LayerSpec) -> int:
        """Channels of ``layer`` with a page of their own (``--channel-pages`` of the build
        that made the manifest; none for a layer whose animations a deep net's default
        build left out: its page says how to get them)."""
        left = self.entry.left_out_of(layer.name)
        if not layer.is_conv or (left is not None and not left.channel_pages):
            return 0
        return min(layer.channels, self.manifest.options.channel_pages)

    @property
    def markers(self) -> bool:
        """Whether line charts mark each epoch (not when there are too many to see)."""
        return self.run.epochs <= 40

    def probe_label(self, probe: int) -> str:
        label = int(self.run.probe_labels[probe])
        names = self.class_names
        return names[label] if 0 <= label < len(names) else "unlabelled"

    def probe_caption(self, probe: int) -> str:
        return f"probe {probe + 1} · {self.probe_label(probe)}"

    def media(
        self,
        kind: ArtefactKind,
        *,
        here: str,
        caption: str,
        layer: str | None = None,
        probe: int | None = None,
        channel: int | None = None,
        eager: bool = False,
    ) -> Media | None:
        record = self.index.get((kind, layer, probe, channel))
        return make_media(record, here, caption, eager=eager) if record else None

    def record(self, kind: ArtefactKind, *, layer: str | None = None) -> ArtefactRecord | None:
        return self.index.get((kind, layer, None, None))

    def crumbs(self, here: str, *extra: Link) -> tuple[Link, ...]:
        return (Link(url(here, HOME), "Runs"), Link(url(here, self.paths.run), self.name), *extra)

    def page_args(self, path: str, template: str, title: str, *crumbs: Link) -> dict[str, Any]:
        """The fields every page of this run shares."""
        return {
            "path": path,
            "template": template,
            "title": title,
            "root": root_of(path),
            "crumbs": self.crumbs(path, *crumbs),
            "footer": self.footer,
            "scrubber": Scrubber(self.run.epochs, self.fps),
        }


def run_contexts(
    manifest: Manifest, readers: Mapping[str, RunReader]
) -> list[tuple[RunEntry, RunReader]]:
    """Each manifest run with its reader (keyed by slug); a missing one is an error."""
    missing = [entry.slug for entry in manifest.runs if entry.slug not in readers]
    if missing:
        raise StoreError(
            f"the manifest lists run {missing[0]} but no reader for it was given; "
            "pass a reader for every built run to render_site"
        )
    return [(entry, readers[entry.slug]) for entry in manifest.runs]
