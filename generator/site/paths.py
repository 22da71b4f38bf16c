"""Where each page of the site lies and how one page links to another.

Site layout: ``index.html``; ``runs/<slug>/index.html``; ``runs/<slug>/network.html`` (the
overview, with ``runs/<slug>/thumbs/<layer>.png``); ``runs/<slug>/layers/<layer>.html``;
``runs/<slug>/channels/<layer>-c<n>.html`` for every channel of every conv layer, with
``n`` counted from 1 as the captions count channels; ``404.html``. Every link is the
shortest relative path from the page to its target and no link is absolute, so the site
works from ``file://``, from ``serve`` and under a GitHub Pages sub-path alike.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from generator.store import file_stem

HOME = "index.html"
NOT_FOUND = "404.html"


def root_of(path: str) -> str:
    """'runs/a/index.html' -> '../../': the prefix from a page back to the site root."""
    return "../" * path.count("/")


def url(here: str, site_path: str) -> str:
    """The shortest relative URL from the page at ``here`` to ``site_path`` (both
    site-relative), percent-encoded: 'runs/a/layers/b.html' -> '../media/...'. A name
    holding undecodable bytes (lone surrogates) is encoded as those bytes, which is the
    name the file has on disk."""
    relative = posixpath.relpath(site_path, posixpath.dirname(here) or ".")
    return quote_path(relative)


def quote_path(path: str) -> str:
    """Percent-encode a relative path, undecodable bytes included."""
    return quote(path, safe="/", errors="surrogateescape")


@dataclass(frozen=True)
class RunPaths:
    """The site paths of one run's pages and figures, from its slug and layer names."""

    slug: str
    files: dict[str, str]  # layer name -> its file-name stem

    @classmethod
    def of(cls, slug: str, layers: Iterable[str]) -> RunPaths:
        return cls(slug, {name: file_stem(name) for name in layers})

    @property
    def base(self) -> str:
        return f"runs/{self.slug}"

    @property
    def run(self) -> str:
        return f"{self.base}/index.html"

    @property
    def overview(self) -> str:
        """The network overview page: the module tree with a small view of every layer."""
        return f"{self.base}/network.html"

    def thumbnail(self, name: str) -> str:
        """Layer ``name``'s view at every epoch, one PNG the overview moves per epoch."""
        return f"{self.base}/thumbs/{self.files[name]}.png"

    def strip(self, name: str, probe: int) -> str:
        """Layer ``name``'s channels over epochs for ``probe`` (counted from 0), a still of
        a layer without spatial maps; named from 1."""
        return f"{self.base}/strips/{self.files[name]}-p{probe + 1}.png"

    @property
    def confusion_image(self) -> str:
        return f"{self.base}/confusion.png"

    def layer(self, name: str) -> str:
        return f"{self.base}/layers/{self.files[name]}.html"

    def channel(self, name: str, channel: int) -> str:
        """The page of ``channel`` (counted from 0) of layer ``name``; named from 1."""
        return f"{self.base}/channels/{self.files[name]}-c{channel + 1}.html"
