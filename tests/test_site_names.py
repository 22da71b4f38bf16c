"""Any module name makes safe site files: a model whose modules are named with unicode,
brackets, spaces and slashes (``nn.ModuleDict`` keys) is recorded through the Recorder
API and built; every file stays inside its folder and every link of every page resolves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from generator.build import build
from generator.config import BuildConfig
from generator.info import human_size
from generator.store import file_stem
from tests.conftest import record_model_run
from tests.test_site import html_pages, parse, resolve

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
nn = torch.nn

ODD_NAMES = ("café Ω", "stage[0]", "a/b", "a-b", "%2E", "日本")


class OddlyNamed(nn.Module):
    """Convs in an ``nn.ModuleDict`` whose keys are hard file names, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(3, 3, 3, padding=1) for name in ODD_NAMES})
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs.values():
            x = torch.relu(conv(x))
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("name", [*(f"convs.{n}" for n in ODD_NAMES), "layer1.0.conv1"])
def test_a_file_stem_is_one_plain_file_name(name: str) -> None:
    stem = file_stem(name)
    assert "/" not in stem and stem not in (".", "..") and not stem.startswith(".")
    assert stem.isascii() and len(stem.encode()) < 200


def test_distinct_names_never_share_a_file_stem() -> None:
    stems = {file_stem(f"convs.{n}") for n in ODD_NAMES}
    assert len(stems) == len(ODD_NAMES)


def test_a_model_with_unicode_and_bracket_module_names_builds_a_whole_site(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = record_model_run(tmp_path / "odd.zarr", OddlyNamed(), epochs=1, probes=2, size=16)
    site = tmp_path / "site"
    with caplog.at_level(logging.INFO, logger="generator"):
        result = build(BuildConfig(stores=(store,), out=site, jobs=1))
    # build reports the site's size, and it is the size on disk
    assert result.total_bytes == sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert f"site size {human_size(result.total_bytes)}" in caplog.text
    recorded = {r.layer for r in result.manifest.artefacts.values() if r.layer}
    assert {f"convs.{n}" for n in ODD_NAMES} <= recorded
    for relative in result.manifest.files:
        path = (site / relative).resolve()
        assert site.resolve() in path.parents and path.is_file(), relative
    pages = html_pages(site)
    assert len([p for p in pages if "/layers/" in p.as_posix()]) >= len(ODD_NAMES)
    for page in pages:
        for _, attr, link in parse(page).found:
            if link.startswith("data:"):
                continue
            target = resolve(site, page, link)
            assert target is None or target.is_file(), f"{page}: {attr}={link}"
