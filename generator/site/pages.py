"""The typed context the gallery templates receive: one frozen dataclass per page kind.

All decisions live in Python (which media a page shows, captions, what loads eagerly,
every link); templates only present. Each page carries its own site path and ``root``,
the relative prefix back to the site root (``""``, ``"../"``, ...) for the shared static
files. Every piece of text is already safe to encode (see ``text.shown``).
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup


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
    webm: str | None = None  # the first <source> when present (AV1); ``mp4`` is the fallback


@dataclass(frozen=True)
class Chart:
    """An inline SVG chart (already escaped) with a visible caption."""

    title: str
    svg: Markup
    caption: str = ""


@dataclass(frozen=True)
class Image:
    """A figure drawn as a raster file of the site (its URL relative to the page)."""

    src: str
    alt: str
    width: int
    height: int
    caption: str


@dataclass(frozen=True)
class ConfusedPair:
    """One off-diagonal cell of the confusion matrix: how often ``true`` was called
    ``predicted``, and that count's share of the true class's validation images."""

    true: str
    predicted: str
    count: int
    share: str


@dataclass(frozen=True)
class Confusion:
    """The run page's confusion matrix: an SVG the scrubber recolours per epoch (``data``
    is the (E, K, K) counts as JSON) for a few classes; for many, a raster image of the
    last epoch and its most confused pairs, which stay small at any class count."""

    chart: Chart | None
    data: str | None
    image: Image | None
    pairs: tuple[ConfusedPair, ...]


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


@dataclass(frozen=True, kw_only=True)
class RunCard:
    """A run on the home page. ``href`` is None for a run with no committed epoch yet,
    which has no pages; ``waiting`` then says so."""

    name: str
    href: str | None
    classes: tuple[str, ...]  # the first few, the card stays small at any class count
    class_count: int
    epochs_trained: int
    final_val_accuracy: str
    thumbnail: Media | None
    waiting: str = ""
    slug: str = ""  # the value the home page's compare checkbox sends (runs with pages)

    @property
    def more_classes(self) -> int:
        return self.class_count - len(self.classes)


@dataclass(frozen=True, kw_only=True)
class HomePage(Page):
    runs: tuple[RunCard, ...]
    compare: Link | None = None  # the compare page of every run, when two or more have pages


@dataclass(frozen=True)
class LayerRow:
    """A layer as the architecture table shows it: every value already a string."""

    name: str
    kind: str
    shape: str
    kernel: str
    groups: str
    stride: str
    params: str
    receptive_field: str
    href: str


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive layers (in model order) of one block of the model: a residual block
    with its convs and its output, an inverted-residual block, or the model's top level."""

    name: str
    module_type: str
    rows: tuple[LayerRow, ...]


@dataclass(frozen=True)
class ProbeView:
    number: int  # 1-based, as captions count probes
    label: str
    source: str
    animation: Media | None
    chart: Chart


@dataclass(frozen=True)
class SettleRow:
    """One layer's line of the settle table: when it settled, on how many samples."""

    layer: str
    epoch: str
    samples: str
    note: str


@dataclass(frozen=True)
class Similarity:
    """The run page's "when each layer settles" section: CKA of each layer at each epoch
    to the last epoch, between layers at the last epoch, and each layer's settle epoch."""

    to_final: Chart
    between: Chart
    threshold: str
    settle: tuple[SettleRow, ...]
    data_href: str  # the numbers as JSON, relative to the page


@dataclass(frozen=True, kw_only=True)
class RunPage(Page):
    name: str
    classes: tuple[str, ...]
    metrics: tuple[Metric, ...]
    layer_groups: tuple[LayerGroup, ...]
    curves: tuple[Chart, ...]
    change: Chart
    confusion: Confusion
    probes: tuple[ProbeView, ...]
    similarity: Similarity | None = None
    network: str = ""  # the network overview page, relative to this page
    gradient_flow: tuple[Chart, ...] = ()  # per layer (none: a store without gradients)


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
    kernel_change: Media | None
    channels: tuple[ChannelThumb, ...]
    channels_note: str
    charts: tuple[Chart, ...]
    previous: Link | None
    next: Link | None
    featviz: Media | None = None  # every visualised channel's image over epochs
    example_sheet: Media | None = None  # every channel's top dataset example, last epoch
    featviz_note: str = ""  # what recording left out of it (a skipped layer, the budget)
    left_out: str = ""  # what the build left out of its animations, and how to get them
    strips: tuple[Image, ...] = ()  # a layer without spatial maps: channels x epochs per probe
    distributions: tuple[Chart, ...] = ()  # offset histograms (none: a store without them)


@dataclass(frozen=True, kw_only=True)
class ChannelPage(Page):
    layer: str
    number: int
    layer_href: str
    animations: tuple[Media, ...]
    kernels: Media | None
    kernel_change: Media | None
    kernel_note: str
    kernel_chart: Chart
    stats: tuple[Chart, ...]
    previous: Link | None
    next: Link | None
    featviz: Media | None = None  # the image this channel responds to most, over epochs
    examples: Media | None = None  # its top dataset-example patches over epochs


@dataclass(frozen=True, kw_only=True)
class NotFoundPage(Page):
    pass


# -- the compare page (site/compare.py) ------------------------------------------------------
@dataclass(frozen=True)
class CompareRun:
    """A run on the compare page: its colour in every chart and a link to its page."""

    slug: str
    name: str
    color: str
    href: str


@dataclass(frozen=True)
class SideBySide:
    """One layer of every run that has it (``media`` None where a run lacks the layer)."""

    key: str
    layer: str
    media: tuple[tuple[CompareRun, Media | None], ...]


@dataclass(frozen=True)
class AgreeRow:
    """A layer of the first run: its counterpart in the second, their CKA at the last
    common epoch and the epoch from which they agree."""

    layer: str
    match: str
    last: str
    epoch: str


@dataclass(frozen=True)
class RunPair:
    """CKA between two runs: a layer x layer heatmap the scrubber recolours per epoch
    (``data``: (E, R, C) as JSON), or ``note`` saying why the pair was not compared."""

    first: CompareRun
    second: CompareRun
    chart: Chart | None
    data: str | None
    agree: tuple[AgreeRow, ...]
    note: str


@dataclass(frozen=True, kw_only=True)
class ComparePage(Page):
    runs: tuple[CompareRun, ...]
    curves: tuple[Chart, ...]
    layers: tuple[SideBySide, ...]
    pairs: tuple[RunPair, ...]
    threshold: str
    notes: tuple[str, ...]
    data_href: str
