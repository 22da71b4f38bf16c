"""How an option is declared once: ``option`` puts its help, parser and range into a
dataclass field's metadata, so ``__main__`` builds the argument parser from the fields and
``check_ranges`` refuses a bad value the same way for every entry point (CLI, tests,
benchmarks). The parsers of list-valued options live here too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any

from generator.errors import OptionError
from generator.store import parse_storage_option


def option(
    default: Any = MISSING,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    shown: str | None = None,
    local: bool = False,
    cli: dict[str, Any] | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field that is also a command-line option ``--field-name``.

    ``parse`` turns the text into the value (``store_true`` flags have none); ``low``,
    ``high`` and ``positive`` bound a number (each element of a tuple), checked by
    ``check_ranges``; ``shown`` is the default as the help prints it; ``local`` marks a
    setting that is never published (paths, worker counts); ``cli`` holds extra argparse
    keywords (``metavar``, ``nargs``, ``required``).
    """
    metadata = {
        "help": help,
        "parse": parse,
        "choices": choices,
        "low": low,
        "high": high,
        "positive": positive,
        "shown": shown,
        "local": local,
        "cli": cli or {},
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def storage_options(help: str) -> Any:
    """The repeatable ``--storage-option KEY=VALUE`` of a command that opens stores in
    object storage; only its help, which names the stores it is for, differs."""
    return option(
        (),
        help=help,
        parse=parse_storage_option,
        shown="none",
        local=True,
        cli={"action": "append", "metavar": "KEY=VALUE"},
    )


def flag_name(name: str) -> str:
    """``max_side`` -> ``--max-side``."""
    return "--" + name.replace("_", "-")


def check_ranges(config: Any) -> None:
    """Refuse a number outside its field's range (NaN and inf included), naming the option."""
    for f in fields(config):
        meta = f.metadata
        if not (
            meta.get("low") is not None or meta.get("high") is not None or meta.get("positive")
        ):
            continue
        value = getattr(config, f.name)
        for number in value if isinstance(value, tuple) else (value,):
            problem = _range_problem(number, meta)
            if problem:
                raise OptionError(f"{flag_name(f.name)} must be {problem}, got {number}")


def _range_problem(number: Any, meta: Any) -> str | None:
    if number is None:
        return None
    if not isinstance(number, (int, float)) or not math.isfinite(number):
        return "a finite number"
    if meta["positive"] and number <= 0:
        return "positive"
    if meta["low"] is not None and number < meta["low"]:
        return f"at least {meta['low']:g}"
    if meta["high"] is not None and number > meta["high"]:
        return f"at most {meta['high']:g}"
    return None


def int_list(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``; anything else is an argparse error naming the option."""
    import argparse

    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def name_list(text: str) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) or None


def featviz_layer_list(text: str) -> tuple[str, ...]:
    """``--featviz-layers``: comma-separated layer names; ``none`` turns it off (())."""
    return () if text.strip().lower() == "none" else name_list(text) or ()


FORMATS = ("gif", "mp4")


def parse_formats(text: str) -> tuple[str, ...]:
    """``auto`` or a comma list of gif/mp4 -> the formats, in a fixed order."""
    if text == "auto":
        return ("auto",)
    chosen = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = chosen - set(FORMATS)
    if not chosen or unknown:
        raise OptionError(f"--formats {text!r}: use auto or a comma list of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in chosen)


class RenamedOption(argparse.Action):
    """An option's old spelling: stores its value under the new name (``dest``) and leaves
    a one-line notice naming the new option in ``namespace.renamed`` for ``main`` to
    print once logging is set up; hidden from ``--help``."""

    @classmethod
    def of(cls, dest: str) -> dict[str, Any]:
        """``add_argument`` keywords for an old name of the option ``dest``."""
        return {
            "dest": dest,
            "action": cls,
            "default": argparse.SUPPRESS,
            "help": argparse.SUPPRESS,
        }

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        notice = f"{option_string} is deprecated for {parser.prog.split()[-1]}: use "
        notice += f"{flag_name(self.dest)} (same values)"
        namespace.renamed = (*getattr(namespace, "renamed", ()), notice)
