"""The build manifest: the one typed record of what a build made and owns.

``build`` writes it last; the gallery reads it to find each artefact's files; the next
build reads it to decide what is up to date and which files it may delete (only files a
manifest lists are ever deleted). It holds no local paths: the site is published, so a
run is named by its slug and display name, never by where its store lies on disk.

The JSON carries its own ``version``; a manifest of another version, or one that does not
parse, loads as an empty manifest, which means a clean rebuild, never a crash.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from generator.config import PublishedOptions

T = TypeVar("T")
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2


class ArtefactKind(str, enum.Enum):
    """What an artefact shows; its value is the name used in file names and the JSON."""

    GRID = "grid"  # a layer's channels as a grid, one probe, over epochs
    CHANNEL = "channel"  # one channel, one probe, over epochs
    CONTACT = "contact"  # a still: a layer's grid at a few log-spaced epochs
    KERNELS = "kernels"  # a conv layer's kernels over epochs
    KERNEL_CHANGE = "kernel-change"  # a conv layer's W_e - W_0 over epochs
    PROBE = "probe"  # a probe image with its class probabilities over epochs
    FEATVIZ = "featviz"  # one channel's feature visualization over epochs
    FEATVIZ_SHEET = "featviz-sheet"  # every visualised channel of a layer over epochs
    PATCHES = "patches"  # one conv channel's top dataset-example patches over epochs
    PATCH_SHEET = "patch-sheet"  # a still: every channel's top patch, last epoch

    def __str__(self) -> str:  # as ``enum.StrEnum`` (3.11+) does: the plain name
        return self.value

    @property
    def is_animation(self) -> bool:
        """Animations have video files (WebM, MP4), maybe a GIF, and a poster; stills are
        one PNG. Every file of a record is listed in ``files``, so the manifest owns it."""
        return self not in (ArtefactKind.CONTACT, ArtefactKind.PATCH_SHEET)


@dataclass(frozen=True)
class ArtefactRecord:
    """One artefact: what it shows, its files (format -> site-relative path), the
    fingerprint of its inputs, and what rendering reported (frames, size, notes)."""

    id: str
    kind: ArtefactKind
    layer: str | None
    probe: int | None
    channel: int | None
    files: Mapping[str, str]
    fingerprint: str
    title: str = ""
    frames: int = 1
    width: int = 0
    height: int = 0
    nonfinite: int = 0
    note: str = ""
    epochs: tuple[int, ...] = ()
    kernels_shown: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "layer": self.layer,
            "probe": self.probe,
            "channel": self.channel,
            "files": dict(self.files),
            "fingerprint": self.fingerprint,
            "title": self.title,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "nonfinite": self.nonfinite,
            "note": self.note,
            "epochs": list(self.epochs),
            "kernels_shown": self.kernels_shown,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtefactRecord:
        """Parse one record; raises ``KeyError``/``ValueError``/``TypeError`` if malformed."""
        return cls(
            id=str(data["id"]),
            kind=ArtefactKind(data["kind"]),
            layer=_optional_str(data.get("layer")),
            probe=_optional_int(data.get("probe")),
            channel=_optional_int(data.get("channel")),
            files={str(k): str(v) for k, v in dict(data["files"]).items()},
            fingerprint=str(data["fingerprint"]),
            title=str(data.get("title", "")),
            frames=int(data.get("frames", 1)),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            nonfinite=int(data.get("nonfinite", 0)),
            note=str(data.get("note", "")),
            epochs=tuple(int(e) for e in data.get("epochs", ())),
            kernels_shown=_optional_int(data.get("kernels_shown")),
        )

    @property
    def required_layer(self) -> str:
        """``layer``, for the kinds that always have one (a ``ValueError`` otherwise)."""
        return _required(self.layer, "layer", self.id)

    @property
    def required_probe(self) -> int:
        """``probe``, for the kinds that always have one (a ``ValueError`` otherwise)."""
        return _required(self.probe, "probe", self.id)

    @property
    def required_channel(self) -> int:
        """``channel``, for the kinds that always have one (a ``ValueError`` otherwise)."""
        return _required(self.channel, "channel", self.id)

    @property
    def key(self) -> tuple[ArtefactKind, str | None, int | None, int | None]:
        """How the gallery looks an artefact up: (kind, layer, probe, channel)."""
        return (self.kind, self.layer, self.probe, self.channel)


@dataclass(frozen=True)
class LeftOut:
    """Animations a build chose not to make for a run, and the option that makes them:
    ``what`` as a reader sees it, ``option`` to give ``build``, the ``layers`` it concerns
    (their pages say so), how many ``artefacts`` that is, and whether those layers still
    have ``channel_pages`` (a deep net's default makes none for its unanimated layers:
    thousands of pages with nothing of their own to show)."""

    what: str
    option: str
    layers: tuple[str, ...] = ()
    artefacts: int = 0
    channel_pages: bool = True

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "layers": list(self.layers)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeftOut:
        layers = tuple(str(layer) for layer in data.get("layers", ()))
        artefacts, pages = int(data.get("artefacts", 0)), bool(data.get("channel_pages", True))
        return cls(str(data["what"]), str(data["option"]), layers, artefacts, pages)


@dataclass(frozen=True)
class RunEntry:
    """One run on the site: its slug (folder under ``runs/``), display name, the epochs
    built, the ids of its artefacts and what the build left out of it. Deliberately no
    store path (it would leak the author's file system into a public site)."""

    slug: str
    name: str
    epochs: int
    artefacts: tuple[str, ...] = ()
    left_out: tuple[LeftOut, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "epochs": self.epochs,
            "artefacts": list(self.artefacts),
            "left_out": [item.to_json() for item in self.left_out],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunEntry:
        return cls(
            slug=str(data["slug"]),
            name=str(data["name"]),
            epochs=int(data["epochs"]),
            artefacts=tuple(str(a) for a in data.get("artefacts", ())),
            left_out=tuple(LeftOut.from_json(item) for item in data.get("left_out", ())),
        )

    def left_out_of(self, layer: str) -> LeftOut | None:
        """What the build left out of ``layer``'s animations, if anything."""
        return next((item for item in self.left_out if layer in item.layers), None)


@dataclass(frozen=True)
class Manifest:
    """Everything a build owns. ``options`` are the published build settings (no paths);
    ``files`` is every site-relative file the build wrote, pages too."""

    tool_version: str = "unknown"
    options: PublishedOptions = field(default_factory=PublishedOptions)
    runs: tuple[RunEntry, ...] = ()
    artefacts: Mapping[str, ArtefactRecord] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tool_version": self.tool_version,
            "options": self.options.to_json(),
            "runs": [run.to_json() for run in self.runs],
            "artefacts": {aid: record.to_json() for aid, record in self.artefacts.items()},
            "files": list(self.files),
        }

    def dumps(self) -> bytes:
        """The JSON bytes as written to ``manifest.json`` (sorted, stable across builds)."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse a manifest; raises ``ValueError`` for another version or a malformed one."""
        if not isinstance(data, Mapping) or data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"not a manifest of version {MANIFEST_VERSION}")
        try:
            return cls(
                tool_version=str(data.get("tool_version", "unknown")),
                options=PublishedOptions.from_json(data.get("options", {})),
                runs=tuple(RunEntry.from_json(r) for r in data.get("runs", ())),
                artefacts={
                    str(aid): ArtefactRecord.from_json(r)
                    for aid, r in dict(data.get("artefacts", {})).items()
                },
                files=tuple(str(f) for f in data.get("files", ())),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed manifest: {exc}") from exc

    def with_files(self, extra: tuple[str, ...] | list[str]) -> Manifest:
        """A copy that also owns ``extra`` files (the pages written after the media)."""
        return replace(self, files=tuple(sorted({*self.files, *extra})))

    def records_of(self, run: RunEntry) -> list[ArtefactRecord]:
        """The records of one run's artefacts that exist in this manifest."""
        return [self.artefacts[aid] for aid in run.artefacts if aid in self.artefacts]


def load_manifest(site: Path) -> Manifest:
    """The previous build's manifest under ``site``, or an empty one when there is none,
    it does not parse, or it is of another version (all three mean: rebuild everything).
    Of another version, only the list of files it owned is kept, so the rebuild still
    cleans up what the older build wrote."""
    try:
        data = json.loads((Path(site) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Manifest()
    try:
        return Manifest.from_json(data)
    except ValueError:
        return Manifest(files=_owned_files(data))


def is_netlapse_manifest(data: Any) -> bool:
    """Whether parsed JSON is a manifest some netlapse build wrote (any version): a
    ``manifest.json`` of another tool must never hand its files over to be deleted."""
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("version"), int)
        and isinstance(data.get("runs"), list)
        and isinstance(data.get("artefacts"), Mapping)
    )


def has_netlapse_manifest(site: Path) -> bool:
    """Whether ``site`` holds a manifest of an earlier netlapse build, even a damaged one
    (a versioned document with runs or artefacts): such a folder is rebuilt cleanly."""
    try:
        data = json.loads((Path(site) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("version"), int)
        and ("runs" in data or "artefacts" in data)
    )


def _owned_files(data: Any) -> tuple[str, ...]:
    """The ``files`` list of a netlapse manifest of any version, if it is a list of strings."""
    files = data.get("files") if is_netlapse_manifest(data) else None
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return tuple(files)
    return ()


def _required(value: T | None, what: str, artefact: str) -> T:
    """``value``, which an artefact of its kind always has: None is a planning bug."""
    if value is None:
        raise ValueError(f"artefact {artefact} has no {what}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
