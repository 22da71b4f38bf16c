"""The typed context the gallery templates receive, gathered from the readers and manifest.

All decisions live here (which media a page shows, captions, what loads eagerly, every
link); templates only present. Each page is a frozen dataclass carrying its own site path
and ``root``, the relative prefix back to the site root (``""``, ``"../"``, ...) for the
shared static files; every other link is the shortest relative path from the page to its
target. No link is absolute, so the site works from ``file://``, from ``serve`` and under
a GitHub Pages sub-path alike.

Site layout: ``index.html``; ``runs/<slug>/index.html``; ``runs/<slug>/layers/<layer>.html``;
``runs/<slug>/channels/<layer>-c<n>.html`` for every channel of every conv layer, with
``n`` counted from 1 as the captions count channels; ``404.html``.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from markupsafe import Markup

from generator import charts
from generator.errors import StoreError
from generator.reader import RunReader
from generator.schema import LayerSpec

HOME = "index.html"
EAGER_MEDIA = 2  # animations per page assumed to be in the first screen (others lazy)
HOME_EAGER_RUNS = 6
SHOWN_SETTINGS = ("fps", "colormap", "scale", "formats", "max_side", "channel_probes")

Index = dict[tuple[str, str | None, int | None, int | None], dict[str, Any]]


# -- the context -------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    href: str
    label: str


@dataclass(frozen=True)
class Media:
    """One animation or still, its URLs already relative to the page that shows it."""

    id: str
    kind: str
    caption: str
    note: str
    mp4: str | None
    gif: str | None
    poster: str | None
    png: str | None
    width: int
    height: int
    frames: int
    eager: bool  # in the first screen: preload it; else preload="none" / loading="lazy"


@dataclass(frozen=True)
class Chart:
    """An inline SVG chart (already escaped) with a visible caption."""

    title: str
    svg: Markup
    caption: str = ""


@dataclass(frozen=True)
class Metric:
    label: str
    value: str


@dataclass(frozen=True)
class Footer:
    """The settings behind what the page shows, and the tool's version."""

    heading: str
    items: tuple[tuple[str, str], ...]
    tool_version: str


@dataclass(frozen=True)
class Scrubber:
    """Epoch slider settings; videos show epoch k at (k + 0.5) / fps seconds."""

    epochs: int
    fps: float


@dataclass(frozen=True, kw_only=True)
class Page:
    path: str  # where the page is written, relative to the site root
    template: str
    title: str
    root: str  # relative prefix from this page back to the site root
    crumbs: tuple[Link, ...]
    footer: Footer
    scrubber: Scrubber | None = None


@dataclass(frozen=True)
class RunCard:
    name: str
    href: str
    classes: tuple[str, ...]
    epochs_trained: int
    final_val_accuracy: str
    thumbnail: Media | None


@dataclass(frozen=True, kw_only=True)
class HomePage(Page):
    runs: tuple[RunCard, ...]


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    shape: str
    params: str
    receptive_field: str
    href: str


@dataclass(frozen=True)
class ProbeView:
    number: int  # 1-based, as captions count probes
    label: str
    source: str
    animation: Media | None
    chart: Chart


@dataclass(frozen=True, kw_only=True)
class RunPage(Page):
    name: str
    classes: tuple[str, ...]
    metrics: tuple[Metric, ...]
    layers: tuple[LayerRow, ...]
    curves: tuple[Chart, ...]
    change: Chart
    confusion: Chart
    confusion_data: str  # JSON (E, K, K) counts for the scrubber
    probes: tuple[ProbeView, ...]


@dataclass(frozen=True)
class ChannelThumb:
    number: int
    href: str | None
    poster: str | None


@dataclass(frozen=True, kw_only=True)
class LayerPage(Page):
    layer: LayerRow
    grids: tuple[Media, ...]
    contacts: tuple[Media, ...]
    kernels: Media | None
    channels: tuple[ChannelThumb, ...]
    charts: tuple[Chart, ...]
    previous: Link | None
    next: Link | None


@dataclass(frozen=True, kw_only=True)
class ChannelPage(Page):
    layer: str
    number: int
    layer_href: str
    animations: tuple[Media, ...]
    kernels: Media | None
    kernel_note: str
    kernel_chart: Chart
    stats: tuple[Chart, ...]
    previous: Link | None
    next: Link | None


@dataclass(frozen=True, kw_only=True)
class NotFoundPage(Page):
    pass


@dataclass(frozen=True)
class SiteContext:
    tool_version: str
    pages: tuple[Page, ...]


# -- gathering ---------------------------------------------------------------------------
def build_site_context(manifest: Mapping[str, Any], runs: Sequence[RunReader]) -> SiteContext:
    """Every page of the site for the runs in ``manifest`` (each needs its reader)."""
    version = str(manifest.get("tool_version", "unknown"))
    fps = float(manifest.get("options", {}).get("fps", 4.0))
    readers = {str(Path(r.path).resolve()): r for r in runs}
    pages: list[Page] = []
    cards: list[RunCard] = []
    for entry in manifest.get("runs", []):
        run = readers.get(str(Path(entry["store"]).resolve()))
        if run is None:
            raise StoreError(
                f"the manifest lists {entry['store']} but no reader for it "
                "was given; pass every built run to write_site"
            )
        view = RunView(run, entry, manifest, fps, version)
        cards.append(view.card(len(cards) < HOME_EAGER_RUNS))
        pages += view.pages()
    footer = site_footer(manifest, version)
    pages.insert(
        0,
        HomePage(
            path="index.html",
            template="index.html",
            title="Runs",
            root="",
            crumbs=(),
            footer=footer,
            runs=tuple(cards),
        ),
    )
    pages.append(
        NotFoundPage(
            path="404.html",
            template="404.html",
            title="Page not found",
            root="",
            crumbs=(),
            footer=footer,
        )
    )
    return SiteContext(version, tuple(pages))


def site_footer(manifest: Mapping[str, Any], version: str) -> Footer:
    """Build options that change what the media look like (never local paths)."""
    options = manifest.get("options", {})
    items = tuple((key, format_setting(options[key])) for key in SHOWN_SETTINGS if key in options)
    return Footer("Build settings", items, version)


def root_of(path: str) -> str:
    """'runs/a/index.html' -> '../../': the prefix from a page back to the site root."""
    return "../" * path.count("/")


def url(here: str, site_path: str) -> str:
    """The shortest relative URL from the page at ``here`` to ``site_path`` (both
    site-relative), percent-encoded: 'runs/a/layers/b.html' -> '../media/...'."""
    relative = posixpath.relpath(site_path, posixpath.dirname(here) or ".")
    return quote(relative, safe="/")


def safe_name(name: str) -> str:
    """A layer name as a file name: anything but letters, digits, ``_.-`` becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "layer"


def format_setting(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(format_setting(v) for v in value) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def format_percent(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value * 100:.1f}%"


def index_artefacts(manifest: Mapping[str, Any], ids: Sequence[str]) -> Index:
    """(kind, layer, probe, channel) -> manifest record, for one run's artefact ids."""
    records = manifest.get("artefacts", {})
    index: Index = {}
    for aid in ids:
        record = records.get(aid)
        if record and record.get("files"):
            key = (record["kind"], record.get("layer"), record.get("probe"), record.get("channel"))
            index[key] = record
    return index


def make_media(record: Mapping[str, Any], here: str, caption: str, eager: bool) -> Media:
    files = record["files"]

    def link(fmt: str) -> str | None:
        return url(here, files[fmt]) if fmt in files else None

    return Media(
        str(record["id"]),
        str(record["kind"]),
        caption,
        str(record.get("note", "")),
        link("mp4"),
        link("gif"),
        link("poster"),
        link("png"),
        int(record.get("width", 0)),
        int(record.get("height", 0)),
        int(record.get("frames", 1)),
        eager,
    )


def dead_share(minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """(E, P, C) min/max -> (E,) share of channels constant over every probe (max == min);
    a channel whose statistics are all NaN counts as not dead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        spread = np.nanmax(maximum, axis=1) - np.nanmin(minimum, axis=1)
    return (spread == 0).mean(axis=1)


def kernel_change(run: RunReader, layer: str) -> np.ndarray:
    """(E, O) relative change of each output channel's kernel from the previous epoch.

    ‖W_c,e − W_c,e−1‖ / ‖W_c,e−1‖, NaN at epoch 0; read one epoch at a time so memory
    stays at two epochs of one layer's weights.
    """
    out = run.layer(layer).kernel_shape[0]
    change = np.full((run.epochs, out), np.nan)
    previous = None
    for epoch in range(run.epochs):
        weights = run.kernels(layer, epoch).reshape(out, -1).astype(np.float64)
        if previous is not None:
            norm = np.linalg.norm(previous, axis=1)
            diff = np.linalg.norm(weights - previous, axis=1)
            change[epoch] = np.divide(diff, norm, out=np.full(out, np.nan), where=norm > 0)
        previous = weights
    return change


# -- one run -----------------------------------------------------------------------------
class RunView:
    """Builds one run's pages from its reader and manifest entry (reads each array once)."""

    def __init__(
        self,
        run: RunReader,
        entry: Mapping[str, Any],
        manifest: Mapping[str, Any],
        fps: float,
        version: str,
    ) -> None:
        self.run, self.fps, self.version = run, fps, version
        self.slug = str(entry["slug"])
        self.base = f"runs/{self.slug}"
        self.index = index_artefacts(manifest, entry.get("artefacts", []))
        self.footer = Footer(
            f"Training settings of {run.name}",
            tuple((k, format_setting(v)) for k, v in sorted(run.training.items())),
            version,
        )
        self.scrubber = Scrubber(run.epochs, fps)
        self.n_probes = run.n_probes  # each call opens a zarr array: read once
        self.probe_probs = run.probe_probs()
        self.layer_names = {layer.name: safe_name(layer.name) for layer in run.layers}

    # paths ----------------------------------------------------------------------------
    def run_path(self) -> str:
        return f"{self.base}/index.html"

    def layer_path(self, layer: str) -> str:
        return f"{self.base}/layers/{self.layer_names[layer]}.html"

    def channel_path(self, layer: str, channel: int) -> str:
        return f"{self.base}/channels/{self.layer_names[layer]}-c{channel + 1}.html"

    def crumbs(self, here: str, *extra: Link) -> tuple[Link, ...]:
        return (
            Link(url(here, "index.html"), "Runs"),
            Link(url(here, self.run_path()), self.run.name),
            *extra,
        )

    def probe_label(self, probe: int) -> str:
        label = int(self.run.probe_labels[probe])
        names = self.run.class_names
        return names[label] if 0 <= label < len(names) else "unlabelled"

    def probe_caption(self, probe: int) -> str:
        return f"probe {probe + 1} · {self.probe_label(probe)}"

    def media(
        self,
        kind: str,
        layer: str | None,
        probe: int | None,
        channel: int | None,
        here: str,
        caption: str,
        eager: bool,
    ) -> Media | None:
        record = self.index.get((kind, layer, probe, channel))
        return make_media(record, here, caption, eager) if record else None

    def kernels_shown(self, layer: LayerSpec) -> int:
        """Output channels the layer's kernel animation draws (the build records it)."""
        record = self.index.get(("kernels", layer.name, None, None)) or {}
        return int(record.get("kernels_shown") or layer.kernel_shape[0])

    def page_args(self, path: str, template: str, title: str, *crumbs: Link) -> dict[str, Any]:
        return {
            "path": path,
            "template": template,
            "title": title,
            "root": root_of(path),
            "crumbs": self.crumbs(path, *crumbs),
            "footer": self.footer,
            "scrubber": self.scrubber,
        }

    # pages ----------------------------------------------------------------------------
    def pages(self) -> list[Page]:
        pages: list[Page] = [self.run_page()]
        layers = self.run.layers
        for i, layer in enumerate(layers):
            neighbours = (
                layers[i - 1] if i else None,
                layers[i + 1] if i + 1 < len(layers) else None,
            )
            pages.append(self.layer_page(layer, *neighbours))
            if layer.is_conv:
                pages += self.channel_pages(layer)
        return pages

    def card(self, eager: bool) -> RunCard:
        """The home card. Its thumbnail is probe 1's class-probability animation: its frame
        size does not grow with the input size, so the home page stays light with many
        runs (a block1 grid of a 512 px run is ~1024 px square, megabytes for 30 epochs);
        the first grid is the fallback when no probe animation was built."""
        run = self.run
        thumb = self.media("probe", None, 0, None, HOME, self.probe_caption(0), eager)
        if thumb is None and run.conv_layers:
            first = run.conv_layers[0].name
            thumb = self.media(
                "grid", first, 0, None, HOME, f"{first}, {self.probe_caption(0)}", eager
            )
        accuracy = run.scalar_metric("val_accuracy")
        return RunCard(
            run.name,
            url(HOME, self.run_path()),
            tuple(run.class_names),
            run.epochs - 1,
            format_percent(float(accuracy[-1])),
            thumb,
        )

    def run_page(self) -> RunPage:
        run = self.run
        args = self.page_args(self.run_path(), "run.html", run.name)
        here = args["path"]
        confusion = run.confusion()
        return RunPage(
            **args,
            name=run.name,
            classes=tuple(run.class_names),
            metrics=self.run_metrics(),
            layers=tuple(self.layer_row(layer, here) for layer in run.layers),
            curves=self.curves(),
            change=self.change_chart(),
            confusion=Chart(
                "Confusion matrix",
                charts.confusion_heatmap(
                    confusion[-1],
                    run.class_names,
                    title=f"Confusion matrix, epoch {run.epochs - 1}",
                ),
                "validation split; rows are the true class, shade = share of the row",
            ),
            confusion_data=json.dumps(confusion.tolist(), separators=(",", ":")),
            probes=tuple(self.probe_view(p, here) for p in range(self.n_probes)),
        )

    def run_metrics(self) -> tuple[Metric, ...]:
        run = self.run
        last = {
            name: float(run.scalar_metric(name)[-1])
            for name in ("train_accuracy", "val_accuracy", "val_loss")
        }
        return (
            Metric("epochs trained", str(run.epochs - 1)),
            Metric("final validation accuracy", format_percent(last["val_accuracy"])),
            Metric("final training accuracy", format_percent(last["train_accuracy"])),
            Metric("final validation loss", charts.format_number(last["val_loss"])),
            Metric("classes", str(len(run.class_names))),
            Metric("probes", str(run.n_probes)),
        )

    def layer_row(self, layer: LayerSpec, here: str) -> LayerRow:
        rf = f"{layer.receptive_field} px" if layer.receptive_field else "—"
        return LayerRow(
            layer.name,
            layer.kind,
            " × ".join(map(str, layer.shape)),
            f"{layer.params:,}",
            rf,
            url(here, self.layer_path(layer.name)),
        )

    def curves(self) -> tuple[Chart, ...]:
        m = {
            name: self.run.scalar_metric(name)
            for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
        }
        loss = charts.line_chart(
            [
                charts.Series("train", m["train_loss"], charts.TRAIN),
                charts.Series("validation", m["val_loss"], charts.VAL),
            ],
            title="Loss per epoch",
            y_label="cross-entropy loss",
            markers=True,
        )
        accuracy = charts.line_chart(
            [
                charts.Series("train", m["train_accuracy"], charts.TRAIN),
                charts.Series("validation", m["val_accuracy"], charts.VAL),
            ],
            title="Accuracy per epoch",
            y_label="accuracy",
            y_min=0,
            y_max=1,
            y_format=charts.percent,
            markers=True,
        )
        note = "training metrics start at epoch 1 (epoch 0 is the untrained network)"
        return (Chart("Loss", loss, note), Chart("Accuracy", accuracy, note))

    def change_chart(self) -> Chart:
        change = self.run.weight_change()
        names = list(change)
        colors = charts.depth_colors(len(names))
        values = np.concatenate([v[np.isfinite(v)] for v in change.values()] or [[]])
        positive = values[values > 0]
        log = positive.size > 1 and positive.max() / positive.min() > 10
        svg = charts.line_chart(
            [charts.Series(n, change[n], c) for n, c in zip(names, colors, strict=True)],
            title="Weight change per layer",
            markers=len(names) <= 4,
            y_label="relative change" + (" (log)" if log else ""),
            log_y=log,
            y_min=None if log else 0,
            size=(720, 280),
        )
        return Chart(
            "Which layers learn when",
            svg,
            "‖W(e) − W(e−1)‖ / ‖W(e−1)‖ of each layer's weights; undefined at epoch 0",
        )

    def probe_view(self, probe: int, here: str) -> ProbeView:
        run = self.run
        probs = self.probe_probs[:, probe]
        true = int(run.probe_labels[probe])
        series = [
            charts.Series(
                name,
                probs[:, k],
                charts.PALETTE[k % len(charts.PALETTE)],
                width=3.0 if k == true else 1.25,
                dashed=k != true,
            )
            for k, name in enumerate(run.class_names)
        ]
        svg = charts.line_chart(
            series,
            title=f"Probe {probe + 1} class probabilities",
            y_label="probability",
            y_min=0,
            y_max=1,
            size=(420, 200),
            y_format=charts.percent,
        )
        sources = run.probe_sources
        animation = self.media(
            "probe", None, probe, None, here, "class probabilities over epochs", eager=False
        )
        return ProbeView(
            probe + 1,
            self.probe_label(probe),
            sources[probe] if probe < len(sources) else "",
            animation,
            Chart(f"Probe {probe + 1}", svg, "solid line: the true class; dashed: the others"),
        )

    def layer_page(
        self, layer: LayerSpec, previous: LayerSpec | None, following: LayerSpec | None
    ) -> LayerPage:
        path = self.layer_path(layer.name)
        args = self.page_args(path, "layer.html", layer.name, Link(url(path, path), layer.name))
        here = args["path"]
        probes = range(self.n_probes)
        grids = [
            self.media("grid", layer.name, p, None, here, self.probe_caption(p), False)
            for p in probes
        ]
        grids = [replace_eager(m, i < EAGER_MEDIA) for i, m in enumerate(g for g in grids if g)]
        contacts = [
            self.media(
                "contact",
                layer.name,
                p,
                None,
                here,
                f"{self.probe_caption(p)} · channels × chosen epochs",
                False,
            )
            for p in probes
        ]
        kernels = self.media(
            "kernels", layer.name, None, None, here, f"{layer.name} kernels over epochs", False
        )
        return LayerPage(
            **args,
            layer=self.layer_row(layer, here),
            grids=tuple(grids),
            contacts=tuple(c for c in contacts if c),
            kernels=kernels,
            channels=self.channel_thumbs(layer, here),
            charts=self.layer_charts(layer),
            previous=self.layer_link(here, previous),
            next=self.layer_link(here, following),
        )

    def layer_link(self, here: str, layer: LayerSpec | None) -> Link | None:
        return Link(url(here, self.layer_path(layer.name)), layer.name) if layer else None

    def channel_thumbs(self, layer: LayerSpec, here: str) -> tuple[ChannelThumb, ...]:
        if not layer.is_conv:
            return ()
        thumbs = []
        for c in range(layer.channels):
            record = next(
                (
                    self.index[k]
                    for k in (("channel", layer.name, p, c) for p in range(self.n_probes))
                    if k in self.index
                ),
                None,
            )
            poster = record["files"].get("poster") if record else None
            thumbs.append(
                ChannelThumb(
                    c + 1,
                    url(here, self.channel_path(layer.name, c)),
                    url(here, poster) if poster else None,
                )
            )
        return tuple(thumbs)

    def layer_charts(self, layer: LayerSpec) -> tuple[Chart, ...]:
        run = self.run
        unit = "channels" if layer.is_conv else "units"
        dead = dead_share(
            run.channel_stats(layer.name, "min"), run.channel_stats(layer.name, "max")
        )
        abs_mean = run.channel_stats(layer.name, "abs_mean")
        dead_svg = charts.line_chart(
            [charts.Series(f"dead {unit}", dead, charts.PALETTE[3])],
            title=f"Share of dead {unit}",
            y_label=f"share of {unit}",
            y_min=0,
            y_max=max(0.05, float(np.nanmax(dead)) if np.isfinite(dead).any() else 0.05),
            y_format=charts.percent,
            markers=run.epochs <= 40,
            size=(480, 220),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs stay NaN
            mean_abs = np.nanmean(abs_mean, axis=(1, 2))
            lo, hi = np.nanmin(abs_mean.mean(axis=1), 1), np.nanmax(abs_mean.mean(axis=1), 1)
        abs_svg = charts.line_chart(
            [charts.Series("mean of all channels", mean_abs, charts.TRAIN)],
            bands=[charts.Band(f"range over {unit}", lo, hi, charts.TRAIN)],
            title="Mean |activation|",
            y_label="mean |activation|",
            y_min=0,
            markers=run.epochs <= 40,
            size=(480, 220),
        )
        return (
            Chart(
                f"Dead {unit}",
                dead_svg,
                f"{unit} whose output is constant (max = min) over every probe",
            ),
            Chart(
                "Mean |activation|",
                abs_svg,
                f"band: the lowest to highest {unit[:-1]} (averaged over probes)",
            ),
        )

    def channel_pages(self, layer: LayerSpec) -> list[ChannelPage]:
        stats = {
            s: self.run.channel_stats(layer.name, s) for s in ("min", "max", "mean", "abs_mean")
        }
        change = kernel_change(self.run, layer.name)
        return [self.channel_page(layer, c, stats, change[:, c]) for c in range(layer.channels)]

    def channel_page(
        self, layer: LayerSpec, c: int, stats: Mapping[str, np.ndarray], change: np.ndarray
    ) -> ChannelPage:
        path = here = self.channel_path(layer.name, c)
        args = self.page_args(
            path,
            "channel.html",
            f"{layer.name} channel {c + 1}",
            Link(url(here, self.layer_path(layer.name)), layer.name),
            Link(url(here, path), f"channel {c + 1}"),
        )
        found = [
            self.media("channel", layer.name, p, c, here, self.probe_caption(p), False)
            for p in range(self.n_probes)
        ]
        animations = [
            replace_eager(m, i < EAGER_MEDIA) for i, m in enumerate(m for m in found if m)
        ]
        kernels = self.media(
            "kernels", layer.name, None, None, here, f"{layer.name} kernels over epochs", False
        )

        def neighbour(k: int) -> Link | None:
            if 0 <= k < layer.channels:
                return Link(url(here, self.channel_path(layer.name, k)), f"channel {k + 1}")
            return None

        return ChannelPage(
            **args,
            layer=layer.name,
            number=c + 1,
            layer_href=url(here, self.layer_path(layer.name)),
            animations=tuple(animations),
            kernels=kernels,
            kernel_note=kernel_note(layer, c, self.kernels_shown(layer)),
            kernel_chart=self.kernel_chart(change, c),
            stats=self.channel_stats_charts(stats, c),
            previous=neighbour(c - 1),
            next=neighbour(c + 1),
        )

    def kernel_chart(self, change: np.ndarray, c: int) -> Chart:
        svg = charts.line_chart(
            [charts.Series(f"channel {c + 1} kernel", change, charts.PALETTE[2])],
            title=f"Kernel change of channel {c + 1}",
            y_label="relative change",
            y_min=0,
            size=(480, 200),
            markers=self.run.epochs <= 40,
        )
        return Chart("Kernel change", svg, "‖K(e) − K(e−1)‖ / ‖K(e−1)‖ of this channel's kernel")

    def channel_stats_charts(self, stats: Mapping[str, np.ndarray], c: int) -> tuple[Chart, ...]:
        result = []
        for p in range(self.n_probes):
            svg = charts.line_chart(
                [
                    charts.Series("mean", stats["mean"][:, p, c], charts.TRAIN),
                    charts.Series("mean |activation|", stats["abs_mean"][:, p, c], charts.VAL),
                ],
                bands=[
                    charts.Band(
                        "min .. max", stats["min"][:, p, c], stats["max"][:, p, c], charts.TRAIN
                    )
                ],
                title=f"Channel statistics, {self.probe_caption(p)}",
                y_label="activation",
                size=(360, 190),
            )
            result.append(Chart(self.probe_caption(p), svg, self.probe_caption(p)))
        return tuple(result)


def replace_eager(media: Media, eager: bool) -> Media:
    return replace(media, eager=eager)


def kernel_note(layer: LayerSpec, c: int, shown: int) -> str:
    """Where this channel's kernel is in the layer's kernel animation, honestly."""
    out, inputs = layer.kernel_shape[0], layer.kernel_shape[1]
    if c >= shown:
        return (
            f"The layer's kernel animation draws the first {shown} of {out} "
            f"output channels, so channel {c + 1}'s kernel is not in it; the chart "
            "below shows how much it changed each epoch."
        )
    if inputs == 1 or inputs == 3:
        where = f"patch {c + 1} (counting left to right, top to bottom)"
    else:
        where = f"row {c + 1} (one column per input channel)"
    return f"This channel's kernel is {where} in the layer's kernel animation."
