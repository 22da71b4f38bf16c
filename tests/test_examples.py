"""The runnable examples, at their --small size: they train, record and build a gallery."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.store import file_stem, open_run
from tests.test_site import html_pages, parse, resolve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One demo dataset for both examples."""
    return tmp_path_factory.mktemp("cache")


def run_example(name: str, folder: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NETLAPSE_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--small"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def check_run_and_site(folder: Path, store: str) -> None:
    run = open_run(folder / "runs" / store)
    assert run.epochs == 2  # untrained + 1 epoch
    assert np.isnan(run.scalar_metric("val_loss")[0])
    for metric in ("train_loss", "val_loss", "val_accuracy"):
        assert np.isfinite(run.scalar_metric(metric)[1:]).all(), metric
    assert any(layer.kind == "block" for layer in run.layers)  # residual blocks recorded
    assert (folder / "site" / "index.html").is_file()
    assert_every_link_resolves(folder / "site")


def assert_every_link_resolves(site: Path) -> None:
    """Every src/href/poster of every page points at a file of the site."""
    checked = 0
    for page in html_pages(site):
        for _, attr, link in parse(page).found:
            if link.startswith("data:"):
                continue
            target = resolve(site, page, link)
            assert target is None or target.is_file(), f"{page}: {attr}={link} is missing"
            checked += target is not None
    assert checked > 100


def dataset_example_files(channel_page: Path) -> list[Path]:
    """The files a channel page shows in its "dataset examples" panel, resolved to disk."""
    panel = re.search(
        r'<section[^>]*aria-labelledby="examples".*?</section>', channel_page.read_text(), re.S
    )
    if panel is None:
        return []
    sources = re.findall(r'(?:src|data-poster)="([^"]+)"', panel.group(0))
    return [(channel_page.parent / source).resolve() for source in sources]


def check_dataset_examples(folder: Path, store: str) -> None:
    """The example pool was recorded and every conv channel page shows its top patches."""
    run = open_run(folder / "runs" / store)
    assert run.attrs.examples
    first_conv = file_stem(run.attrs.conv_layers[0].name)  # the stem its pages are named by
    pages = sorted((folder / "site").glob(f"runs/*/channels/{first_conv}-c*.html"))
    assert pages, f"no channel page of {first_conv}"
    for page in pages:
        files = dataset_example_files(page)
        assert files and all(f.is_file() and f.stat().st_size > 0 for f in files), page.name


@pytest.mark.slow
def test_own_loop_example_records_and_builds(tmp_path, cache):
    result = run_example("own_loop.py", tmp_path, cache)
    assert result.returncode == 0, result.stderr[-2000:]
    check_run_and_site(tmp_path, "own_loop.zarr")
    check_dataset_examples(tmp_path, "own_loop.zarr")
    confusion = open_run(tmp_path / "runs" / "own_loop.zarr").confusion()
    assert confusion[1:].sum(axis=(1, 2)).min() > 0  # passed from epoch 1 on


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("lightning") is None, reason="needs the lightning extra"
)
def test_lightning_example_records_and_builds(tmp_path, cache):
    result = run_example("lightning_loop.py", tmp_path, cache)
    assert result.returncode == 0, result.stderr[-2000:]
    check_run_and_site(tmp_path, "lightning_loop.zarr")
    check_dataset_examples(tmp_path, "lightning_loop.zarr")


@pytest.mark.slow
def test_an_existing_store_is_one_line_not_a_traceback(tmp_path, cache):
    (tmp_path / "runs" / "own_loop.zarr").mkdir(parents=True)
    result = run_example("own_loop.py", tmp_path, cache)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "resume=True" in result.stderr


def test_the_notebook_runs_on_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/notebook.ipynb executed as Jupyter would (nbclient, an IPython kernel) on a
    store made here: the run opens, a layer and a channel show inline as GIFs, the metrics
    plot, and xarray opens the metrics group and one layer with labelled axes."""
    import nbformat
    from nbclient import NotebookClient

    from tests.conftest import make_store

    make_store(tmp_path / "run.zarr", featviz=True, examples=True)
    monkeypatch.setenv("NETLAPSE_RUN", str(tmp_path / "run.zarr"))
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    shown = [out.get("data", {}) for out in outputs]
    gifs = [data for data in shown if 'src="data:image/gif;base64,' in data.get("text/html", "")]
    assert len(gifs) == 2 and all("image/png" in data for data in gifs)  # with their stills
    assert sum("image/png" in data for data in shown) == 4  # and the two plots
    assert "<Animation block1, probe 0: 3 frames" in gifs[0]["text/plain"]
    printed = "".join(out.get("text", "") for out in outputs)
    assert "run: 3 epochs (0 = untrained), 2 probes" in printed and "block1" in printed
    labelled = " ".join(data.get("text/plain", "") for data in shown)
    assert "val_loss" in labelled and "(epoch: 3, channel: 4)" in labelled
    assert not list(tmp_path.glob("runs")), "the notebook trained although a run was given"
