"""The CLI wiring: --help everywhere, one-line errors with exit codes, `info`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.__main__ import main
from tests.conftest import make_store


@pytest.mark.parametrize("command", ["train", "ingest", "info"])
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m generator " + command in capsys.readouterr().out


def test_info_summarises_a_store(tiny_store: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(tiny_store)]) == 0
    out = capsys.readouterr().out
    assert "alpha, beta, gamma" in out
    assert "3 committed" in out
    assert "block2" in out and "6x4x4" in out
    assert "val_accuracy 0.4000" in out
    assert "on disk" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "nowhere.zarr"], "no such store"),
        (["train", "--out", "x.zarr", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--out", "x.zarr", "--lr", "-1"], "--lr must be positive"),
        (["train", "--out", "x.zarr", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["train", "--out", "x.zarr", "--probes", "0"], "--probes must be at least 1"),
        (["train", "--out", "x.zarr", "--device", "tpu"], "argument --device: invalid choice"),
        (["train", "--out", "x.zarr", "--data", "no/such/folder"], "no/such/folder"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    argv, message, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


def test_build_with_no_store_trains_the_demo_with_its_gallery_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's first command: no store under ``--runs``, so ``build`` trains the demo
    run, and the gallery in ``--out`` is kept current while it trains (``train --site``),
    then built once more with the build's own options."""
    import generator.build
    import generator.train

    trained, built = [], []

    def fake_training(config):  # records what training was asked for; trains nothing
        trained.append(config)
        return config.out

    monkeypatch.setattr(generator.train, "run_training", fake_training)
    monkeypatch.setattr(generator.build, "build", lambda config: built.append(config))
    runs, site = tmp_path / "runs", tmp_path / "gallery"
    assert main(["-q", "build", "--runs", str(runs), "--out", str(site)]) == 0
    assert [(c.out, c.site) for c in trained] == [(runs / "demo.zarr", site)]
    assert [(c.stores, c.out) for c in built] == [((runs / "demo.zarr",), site)]


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """``info a.zarr | head -5``: the reader goes away; the command ends with 141 (as one
    killed by SIGPIPE) and no ``BrokenPipeError`` traceback, for any command's output."""
    store = tmp_path / "run.zarr"
    make_store(store)
    read, write = os.pipe()
    os.close(read)  # the reader is already gone: every write to stdout fails
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "generator", "info", str(store)],
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert done.stderr.decode() == "" and done.returncode == 141
