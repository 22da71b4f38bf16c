"""Property: any value of any numeric option of any command is either accepted or refused
with one line that names the option (exit code 2), never a traceback (issue 8.11).

The commands' work is replaced by stand-ins, so only parsing and validation run: nothing
is trained, built, ingested or served."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from generator.__main__ import main
from generator.config import (
    BuildConfig,
    IngestConfig,
    ServeConfig,
    TrainConfig,
    flag_name,
    int_list,
)

CONFIGS = {"train": TrainConfig, "build": BuildConfig, "ingest": IngestConfig, "serve": ServeConfig}
NUMERIC_PARSERS = (int, float, int_list)


def numeric_options() -> list[tuple[str, str]]:
    """(command, --option) for every option whose value is a number or a list of numbers."""
    return [
        (command, flag_name(f.name))
        for command, config in CONFIGS.items()
        for f in dataclasses.fields(config)
        if f.metadata.get("parse") in NUMERIC_PARSERS
    ]


TRICKY = [
    "",
    " ",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "1e309",
    "-0",
    "-0.0",
    "0",
    "-1",
    "1e-9",
    "0x10",
    "1_000",
    " 7 ",
    "1,2",
    ",",
    "1,,2",
    "٣",
    "9" * 40,
    "-" + "9" * 40,
    "1e9999999",
    "\x00",
    "5\n6",
    "abc",
]
VALUES = st.one_of(
    st.sampled_from(TRICKY),
    st.integers().map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.integers(min_value=-5, max_value=10**12), min_size=1, max_size=4).map(
        lambda xs: ",".join(map(str, xs))
    ),
    st.text(max_size=12),
)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list[str]]:
    """Every command's work replaced by a stand-in; returns each command's fixed argv."""
    import generator.build
    import generator.data
    import generator.site
    import generator.train

    monkeypatch.setattr(generator.train, "run_training", lambda config: config.out)
    monkeypatch.setattr(generator.build, "build", lambda config: None)
    report = SimpleNamespace(read=1, kept=1, dropped_dark=0, existing=0, out_dir=tmp_path)
    monkeypatch.setattr(generator.data, "ingest_video", lambda *a, **k: report)
    monkeypatch.setattr(generator.site, "serve", lambda site, port: None)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<!doctype html>")
    return {
        "train": ["train", "--out", str(tmp_path / "x.zarr")],
        "build": ["build", "--store", str(tmp_path / "x.zarr"), "--out", str(tmp_path / "s")],
        "ingest": ["ingest", "clip.mp4", "--label", "a", "--out", str(tmp_path / "data")],
        "serve": ["serve", "--site", str(tmp_path / "site")],
    }


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["-q", *argv])
    return code, err.getvalue()


def test_every_numeric_option_is_covered() -> None:
    flags = {flag for _, flag in numeric_options()}
    assert {"--fps", "--max-side", "--gif-max-side", "--epochs", "--lr", "--port"} <= flags
    assert {"--size", "--every", "--dark-threshold", "--seed", "--channels"} <= flags
    assert {"--probes", "--jobs", "--channel-side", "--channel-probes"} <= flags


@pytest.mark.parametrize("command, option", numeric_options())
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=VALUES)
@example(value="nan")
@example(value="inf")
@example(value="-0")
@example(value="9" * 40)
@example(value="")
def test_a_numeric_option_is_accepted_or_refused_in_one_line(
    stand_ins: dict[str, list[str]], command: str, option: str, value: str
) -> None:
    code, err = run_cli([*stand_ins[command], f"{option}={value}"])
    if code == 0:
        assert err == ""
        return
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"netlapse {command}: error: ") and option in lines[0], lines[0]


@pytest.mark.parametrize("command, option", numeric_options())
def test_a_value_that_looks_like_an_option_is_one_line(
    stand_ins: dict[str, list[str]], command: str, option: str
) -> None:
    """``--fps -inf`` (not ``--fps=-inf``): argparse takes ``-inf`` for an option."""
    code, err = run_cli([*stand_ins[command], option, "-inf"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and option in err, err
    assert err.startswith(f"netlapse {command}: error: ")
