"""--budget-mb and the estimate: the site stays under the budget, what was left out is named
(log and manifest) with the option that brings it back, the estimate printed before the
build is within a factor of the real size; build's old --probes still works, with a
notice; a bad --budget-mb is one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generator.__main__ import main
from generator.info import directory_size
from generator.site.manifest import ArtefactKind, load_manifest
from tests.conftest import make_store

FAST = ["--jobs", "1", "--channel-pages", "2"]


def estimated_mb(err: str) -> float:
    found = re.search(r"a site of about ([\d.]+) (KB|MB)", err)
    assert found, err
    return float(found[1]) * {"KB": 2**10, "MB": 2**20}[found[2]] / 1e6  # as human_size


def test_budget_estimate_and_renamed_probe_option(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = tmp_path / "run.zarr"
    make_store(store)
    full, small = tmp_path / "full", tmp_path / "small"
    assert main(["build", "--store", str(store), "--out", str(full), *FAST]) == 0
    err = capsys.readouterr().err
    size = directory_size(full) / 1e6
    assert 1 / 1.5 <= estimated_mb(err) / size <= 1.5, (estimated_mb(err), size)
    assert "left out" not in err

    budget = 0.75 * size  # room for the pages and some of the media
    argv = ["build", "--store", str(store), "--out", str(small), *FAST, "--probes", "2"]
    assert main([*argv, "--budget-mb", f"{budget:.3f}"]) == 0
    err = capsys.readouterr().err
    assert err.count("--probes is deprecated for build: use --probe-index") == 1
    assert directory_size(small) / 1e6 <= budget
    named = [line for line in err.splitlines() if "left out" in line]
    assert named and all("to fit --budget-mb; to make them: --budget-mb" in n for n in named)
    manifest = load_manifest(small)
    (run,) = manifest.runs
    assert run.left_out and run.left_out[0].option.startswith("--budget-mb ")
    kinds = {manifest.artefacts[a].kind for a in run.artefacts}
    assert ArtefactKind.GRID in kinds and ArtefactKind.CHANNEL not in kinds
    assert {manifest.artefacts[a].probe for a in run.artefacts} == {1, None}  # --probes 2


@pytest.mark.parametrize("value", ["0", "-5", "nan", "lots"])
def test_a_bad_budget_is_one_line(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    site = tmp_path / "site"
    code = main(["build", "--store", str(tmp_path), "--out", str(site), "--budget-mb", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--budget-mb" in err, err
    assert not site.exists()


def test_sizes_and_durations_as_printed() -> None:
    from generator.build.estimate import human_duration, rounded_mb

    assert [rounded_mb(x) for x in (3e5, 4.2e6, 61.3e6, 1234e6)] == [1, 5, 62, 1300]
    assert [human_duration(x) for x in (0.2, 8.4, 95)] == ["1 s", "8 s", "1 min 35 s"]
