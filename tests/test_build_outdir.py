"""The ``--out``/``--site`` guard (issue 24, points 4 and 5): a refused site folder is
refused before anything runs, with a suggestion that is itself accepted, and a build
refused for any bad option leaves nothing behind (no ``--out`` folder, no store)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from generator import Recorder
from generator.__main__ import main
from generator.build.outdir import check_out_folder
from generator.errors import OptionError
from generator.model import NetlapseCNN

TINY_TRAIN = ("--input-size", "64", "--demo-per-class", "4", "--epochs", "1", "--probes", "1")


def suggested(message: str) -> str:
    found = re.search(r"such as (\S+)$", message.strip())
    assert found, message
    return found.group(1)


@pytest.mark.parametrize("site", [".", "..", "r.zarr", "r.zarr/site", "data"])
def test_train_refuses_a_site_folder_before_training_and_suggests_one_it_accepts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    site: str,
) -> None:
    """``train --out r.zarr --site .`` (and the other folders a build refuses) fails at
    once, in one line, before any data or store exists; the folder it suggests is
    accepted by the same check."""
    work = tmp_path / "work"
    (work / "data" / "cats").mkdir(parents=True)
    (work / "data" / "cats" / "a.png").write_bytes(b"not really")  # a dataset's class folder
    monkeypatch.chdir(work)
    monkeypatch.setenv("NETLAPSE_CACHE", str(tmp_path / "cache"))
    assert main(["-q", "train", "--out", "r.zarr", "--site", site, *TINY_TRAIN]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--site" in err and "refusing" in err, err
    assert sorted(p.name for p in work.iterdir()) == ["data"]  # no store, no site
    assert not (tmp_path / "cache").exists()  # no demo data made either
    check_out_folder(suggested(err), [Path("r.zarr")])  # the advice is accepted


def test_a_recorder_refuses_its_site_folder_when_it_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = NetlapseCNN(3, 16, channels=(4, 8, 8), hidden=8)
    probes = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(OptionError, match=r"site=\.: refusing .*such as ") as refused:
        Recorder(model, probes=probes, out=tmp_path / "r.zarr", class_names=list("abc"), site=".")
    assert list(tmp_path.iterdir()) == []  # refused before the store was made
    check_out_folder(suggested(str(refused.value)), [tmp_path / "r.zarr"])


@pytest.mark.parametrize(
    "bad",
    [
        ("--layers", "nope"),
        ("--probes", "99"),
        ("--channel-pages", "-1"),
        ("--store", "missing.zarr"),
    ],
)
def test_a_build_refused_for_a_bad_option_leaves_nothing(
    tmp_path: Path,
    tiny_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bad: tuple[str, str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["-q", "build", "--store", str(tiny_store), "--out", "new/site", *bad])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err.strip().splitlines()[-1], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no new/, no store
