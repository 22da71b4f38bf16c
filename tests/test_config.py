"""One source per option: the config dataclasses hold every default, help text, choice
and range, and the command line is built from them (issue 9.5)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

import generator.__main__ as cli
from generator.build.artefacts import OPTIONS_USED, RenderOptions
from generator.config import (
    BuildConfig,
    IngestConfig,
    ServeConfig,
    TrainConfig,
    check_ranges,
    flag_name,
)
from generator.errors import OptionError
from generator.site.manifest import ArtefactKind

CONFIGS = {"train": TrainConfig, "build": BuildConfig, "ingest": IngestConfig, "serve": ServeConfig}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def options_of(config: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config) if "help" in f.metadata]


@pytest.mark.parametrize("command", CONFIGS)
def test_every_config_option_is_on_the_command_line_with_its_help(command: str) -> None:
    parser = subparser(command)
    by_flag = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for f in options_of(CONFIGS[command]):
        action = by_flag[flag_name(f.name)]
        assert action.help.startswith(f.metadata["help"])
        assert action.default is argparse.SUPPRESS  # the default lives in the dataclass only
        if f.metadata["choices"]:
            assert tuple(action.choices) == f.metadata["choices"]


def test_enumerations_are_choices() -> None:
    choices = {
        flag_name(f.name)
        for config in CONFIGS.values()
        for f in options_of(config)
        if f.metadata["choices"]
    }
    assert {"--colormap", "--scale", "--device", "--activation-dtype"} <= choices


def test_the_command_line_defaults_are_the_dataclass_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = {}
    import generator.build
    import generator.train

    monkeypatch.setattr(generator.build, "build", lambda config: seen.setdefault("build", config))
    monkeypatch.setattr(
        generator.train, "run_training", lambda config: seen.setdefault("train", config)
    )
    store, out = tmp_path / "a.zarr", tmp_path / "x.zarr"
    assert cli.main(["-q", "build", "--store", str(store)]) == 0
    assert cli.main(["-q", "train", "--out", str(out)]) == 0
    assert seen["build"] == BuildConfig(stores=(store,))
    assert seen["train"] == TrainConfig(out=out)


def test_the_renderer_options_have_no_defaults_of_their_own() -> None:
    """``max_side`` once had a default in __main__, config and artefacts; now only here."""
    options = {f.name: f for f in dataclasses.fields(RenderOptions)}
    for name in ("colormap", "scale", "fps", "max_side", "channel_side", "gif_max_side"):
        assert options[name].default is dataclasses.MISSING, name


def test_every_kind_has_an_options_table_of_renderer_options() -> None:
    names = {f.name for f in dataclasses.fields(RenderOptions)}
    assert set(OPTIONS_USED) == set(ArtefactKind)
    assert all(set(used) <= names for used in OPTIONS_USED.values())


@pytest.mark.parametrize(
    "config, kwargs, message",
    [
        (BuildConfig, {"stores": (), "fps": 1e-9}, "--fps must be at least 0.1"),
        (BuildConfig, {"stores": (), "fps": float("inf")}, "--fps must be a finite number"),
        (BuildConfig, {"stores": (), "gif_max_side": 1}, "--gif-max-side must be at least"),
        (BuildConfig, {"stores": (), "probe_index": (1, 0)}, "--probe-index must be at least 1"),
        (TrainConfig, {"out": Path("x"), "lr": 0.0}, "--lr must be positive"),
        (TrainConfig, {"out": Path("x"), "lr": float("nan")}, "--lr must be a finite number"),
        (TrainConfig, {"out": Path("x"), "seed": -1}, "--seed must be at least 0"),
        (TrainConfig, {"out": Path("x"), "channels": (8, 0)}, "--channels must be at least 1"),
        (ServeConfig, {"port": 70000}, "--port must be at most 65535"),
        (IngestConfig, {"label": "a", "out": Path("d"), "every": 0}, "--every must be at least"),
    ],
)
def test_ranges_are_checked_by_the_configs_themselves(config, kwargs, message) -> None:
    with pytest.raises(OptionError, match=message):
        config(**kwargs)


def test_check_ranges_ignores_fields_without_a_range() -> None:
    check_ranges(BuildConfig(stores=(Path("a"),), layers=("x",)))
