"""The error hierarchy (``generator/errors.py``): each class is also the built-in a caller
would catch, and every error class of the package lives in that one file."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import generator.errors as errors
from generator.errors import (
    DataError,
    NetlapseError,
    OptionError,
    RecorderClosedError,
    StoreNotFoundError,
    one_line,
)
from generator.store import open_run

PACKAGE = Path(errors.__file__).parent


def test_a_bad_option_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        raise OptionError("--fps must be positive, got 0")
    assert issubclass(DataError, ValueError)
    assert issubclass(RecorderClosedError, RuntimeError)


def test_a_missing_store_is_also_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such store") as caught:
        open_run(tmp_path / "nope.zarr")
    assert isinstance(caught.value, StoreNotFoundError) and isinstance(caught.value, NetlapseError)
    assert not (tmp_path / "nope.zarr").exists()


def test_every_error_class_is_defined_in_errors_py() -> None:
    """A public exception class anywhere else would be a second home for the hierarchy."""
    elsewhere = []
    for file in sorted(PACKAGE.rglob("*.py")):
        if file.name == "errors.py" and file.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            bases = [ast.unparse(base) for base in getattr(node, "bases", [])]
            named_error = any(b.endswith(("Error", "Exception")) for b in bases)
            if isinstance(node, ast.ClassDef) and named_error and not node.name.startswith("_"):
                elsewhere.append(f"{file.relative_to(PACKAGE.parent)}: {node.name}")
    assert not elsewhere, "define these in generator/errors.py: " + ", ".join(elsewhere)


def test_errors_all_lists_every_class_it_defines() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert defined == set(errors.__all__) - {"one_line", "redact"}


def test_one_line_keeps_the_first_line_and_cuts_it() -> None:
    assert one_line(RuntimeError("\n  first  \nsecond")) == "first"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert one_line(RuntimeError("x" * 300), limit=10) == "xxxxxxx..."


SECRETS = ("SECRET", "SIGVALUE", "CREDVALUE", "TOKVALUE", "KEYVALUE")
URLS = (
    "https://KEY:SECRET@127.0.0.1:1/bkt/x.zarr",
    "http://user:SECRET@with@at@127.0.0.1:1/bkt/x.zarr",
    "https://127.0.0.1:1/bkt/x.zarr?X-Amz-Credential=CREDVALUE&X-Amz-Signature=SIGVALUE",
    "https://127.0.0.1:1/bkt/x.zarr?X-Amz-Security-Token=TOKVALUE&X-Amz-Date=20260101",
    "https://127.0.0.1:1/c/x.zarr?sv=2024&se=2027&sp=r&sig=SIGVALUE",
    "https://127.0.0.1:1/x.zarr?AWSAccessKeyId=KEYVALUE&Signature=SIGVALUE&access_token=TOKVALUE",
)


@pytest.mark.parametrize("url", URLS)
def test_no_url_netlapse_shows_holds_a_password_or_signature(
    url: str, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """User info and signed-query tokens are redacted in an error line (``info URL``), in
    any ``NetlapseError`` a library caller prints, in a log line the CLI writes and in a
    run's name on pages (``StoreURL.name``); the rest of the URL stays readable."""
    from generator.__main__ import main
    from generator.store import store_location

    assert main(["-q", "info", url, "--storage-option", "allow_http=true"]) == 2
    line = capsys.readouterr().err
    assert "netlapse info: error:" in line and "127.0.0.1:1/" in line
    assert not any(secret in line for secret in SECRETS), line
    message = str(errors.StoreError(f"{url}: cannot reach it"))
    assert not any(secret in message for secret in SECRETS) and "x.zarr" in message
    from generator.terminal import Redacting

    record = logging.LogRecord("generator", logging.INFO, "", 0, "opened %s", (url,), None)
    logged = Redacting("%(message)s").format(record)
    assert not any(secret in logged for secret in SECRETS) and "/x.zarr" in logged
    assert store_location(url).name == "x.zarr"  # what pages and the manifest show
    assert errors.redact("plain text key=value, http://127.0.0.1:9000/b") == (
        "plain text key=value, http://127.0.0.1:9000/b"
    )
