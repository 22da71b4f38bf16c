"""The settings of the small commands: ``ingest``, ``info`` and ``serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator import defaults
from generator.config.fields import check_ranges, option, storage_options


@dataclass(frozen=True)
class IngestConfig:
    """How ``ingest`` turns a video into a class folder of square frames."""

    label: str = option(
        help="class name: the folder under --out", parse=str, cli={"required": True}
    )
    out: Path = option(help="dataset root (ImageFolder)", parse=Path, cli={"required": True})
    size: int = option(defaults.INGEST_SIZE, help="square crop size", parse=int, low=16, high=8192)
    every: int = option(
        defaults.INGEST_EVERY, help="keep every N-th frame", parse=int, low=1, high=10**9
    )
    dark_threshold: float = option(
        defaults.DARK_THRESHOLD,
        help="drop frames whose mean brightness (0-255) is below this",
        parse=float,
        low=0,
        high=255,
    )

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class InfoConfig:
    """What ``info`` needs besides the store it summarises."""

    storage_option: tuple[tuple[str, str], ...] = storage_options(
        "an object-storage client option for a URL store (repeatable)"
    )


@dataclass(frozen=True)
class ServeConfig:
    """Where ``serve`` serves the built site (always on 127.0.0.1)."""

    site: Path = option(Path(defaults.SITE), help="the built site", parse=Path)
    port: int = option(
        defaults.PORT, help="port; 0 picks a free one", parse=int, low=0, high=65_535
    )

    def __post_init__(self) -> None:
        check_ranges(self)
