"""The package as a user installs it: a wheel, in a fresh virtual environment outside the
repository, builds a gallery whose pages render.

Installing torch and the other dependencies afresh would take minutes, so the new
environment gets the wheel alone (``--no-deps``) and sees the test environment's
site-packages through a ``.pth`` line. A plain path line in a ``.pth`` file adds that
folder to ``sys.path`` without running the ``.pth`` files inside it, so the test
environment's editable install of this checkout (an import hook started by a ``.pth``
file) stays off; the test asserts that ``generator`` and its templates are imported from
the new environment all the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# What a wheel is built from (what an sdist holds); not the checkout itself, so that no
# build/ folder is left in it and no stale file from an earlier build/ enters the wheel.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "generator", "templates")
LOCAL_LINK = re.compile(r'(?:href|src|poster|data-poster)="(?!https?:|#|mailto:|data:)([^"]+)"')


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    run([*pip_wheel, "-w", str(out), str(source)], cwd=out)
    (built,) = out.glob("netlapse-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment holding only the wheel, with the test environment's
    dependencies visible after its own site-packages."""
    root = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    run([*pip_install, "--no-deps", str(wheel)], cwd=root.parent)
    own = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root
    )
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(own.strip()) / "netlapse-test-dependencies.pth").write_text(
        "".join(f"{folder}\n" for folder in sorted(dependencies))
    )
    return root


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the checkout on ``sys.path``."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}


def test_wheel_holds_every_module_template_and_static_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "generator").rglob("*.py"):
        assert path.relative_to(REPO).as_posix() in names
    for path in (REPO / "templates").rglob("*"):
        if path.is_file():
            assert f"generator/templates/{path.relative_to(REPO / 'templates').as_posix()}" in names


def test_wheel_says_it_is_typed(wheel: Path) -> None:
    """PEP 561: without ``py.typed`` a user's type checker ignores our annotations."""
    assert "generator/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_the_installed_wheel_builds_a_gallery_from_outside_the_repository(
    venv: Path, tmp_path: Path
) -> None:
    python = str(venv / "bin" / "python")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run(
        [
            python,
            "-c",
            "import generator, generator.resources as r; "
            "print(generator.__file__); print(r.templates_path())",
        ],
        cwd=work,
        env=clean_env(),
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    make_store(work / "runs" / "tiny.zarr")
    run(
        [python, "-m", "generator", "-q", "build", "--store", "runs/tiny.zarr", "--out", "site"],
        cwd=work,
        env=clean_env(),
    )
    site = work / "site"
    home = (site / "index.html").read_text(encoding="utf-8")
    (run_page,) = (site / "runs").glob("*/index.html")
    page = run_page.read_text(encoding="utf-8")
    assert "tiny" in home and "alpha" in page and "block2" in page
    for html, text in ((site / "index.html", home), (run_page, page)):
        links = LOCAL_LINK.findall(text)
        assert links, html
        for link in links:
            target = (html.parent / link.split("#")[0].split("?")[0]).resolve()
            assert target.is_file() and target.is_relative_to(site.resolve()), (html, link)
    assert (site / "static" / "netlapse.js").is_file()
