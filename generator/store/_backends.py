"""Where a run store lives: a local folder or an object-storage URL (``s3://``, ``gs://``,
``az://``, ...), and the one place that opens a URL.

A store location is a ``Path`` or a :class:`StoreURL`. URLs are opened with ``obstore``
(``obstore.store.from_url``) behind zarr's own ``zarr.storage.ObjectStore``; credentials and
the endpoint come from the standard environment variables of each cloud (for S3:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ALLOW_HTTP``), plus ``--storage-option KEY=VALUE`` (:func:`use_storage_options`).
Every failure of the object store becomes a one-line ``StoreError`` naming what to fix
(:func:`remote_error`); retries are few and short, so a wrong endpoint fails in seconds.

Object storage has no rename and no ``flock``; the writer commits in place instead (the
root metadata is written last, ``_staging``) and locks with an object created by a
conditional put (``_locks.RemoteLock``). ``docs/store.md`` describes that protocol.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from generator.errors import (
    NetlapseError,
    OptionError,
    StoreError,
    StoreNotFoundError,
    one_line,
)
from generator.store._settings import check_settings

if TYPE_CHECKING:  # obstore is optional (the cloud extra)
    from obstore.store import RetryConfig

log = logging.getLogger(__name__)

OPTIONS_ENV = "NETLAPSE_STORAGE_OPTIONS"  # JSON; carries --storage-option to build workers
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# What a user sets to reach each kind of storage (named in error messages).
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT)",
    "az": "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY",
}
ENDPOINTS = {"s3": "AWS_ENDPOINT_URL", "gs": "GOOGLE_CLOUD_STORAGE_URL", "az": "AZURE_ENDPOINT"}
FAMILY = {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az", "azure": "az", "adl": "az"}
# Fail within seconds on an unreachable endpoint instead of object_store's 3-minute retries
# (its client keeps its defaults: 5 s to connect, 30 s a request; passing client options
# would also drop those read from the environment, such as AWS_ALLOW_HTTP).
RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}


@dataclass(frozen=True)
class StoreURL:
    """A run store in object storage, e.g. ``s3://bucket/runs/demo.zarr``.

    Offers the few ``Path`` members the stages use on a store location (``name``,
    ``with_name``, ``/``, ``resolve``, ``exists``), so a URL travels where a path does.
    """

    url: str
    # Local folder for the run's checkpoints (``train --checkpoints``; None: the current one).
    checkpoints: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/"))

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:  # pragma: no cover - a URL is never a local file
        raise TypeError(f"{self.url} is an object-storage URL, not a local path")

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def family(self) -> str:
        """``s3``, ``gs``, ``az`` or the scheme itself: which credentials apply."""
        return FAMILY.get(self.scheme, self.scheme)

    @property
    def name(self) -> str:
        """The last part of the path, without a query (a presigned URL's signature)."""
        return urlsplit(self.url).path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoreURL:
        return StoreURL(self.url.rsplit("/", 1)[0])

    def with_name(self, name: str) -> StoreURL:
        return StoreURL(f"{self.parent.url}/{name}")

    def __truediv__(self, part: str) -> StoreURL:
        return StoreURL(f"{self.url}/{part}")

    def resolve(self) -> StoreURL:
        return self

    def exists(self) -> bool:
        """Whether a run store's root metadata is there (what ``Path.exists`` tells of a
        local store); a failure to ask is a one-line ``StoreError``."""
        return head(self, "zarr.json") is not None


StoreLocation = Path | StoreURL


def is_url(location: object) -> bool:
    """``s3://b/x.zarr`` (or a ``StoreURL``) is a URL; ``runs/x.zarr`` and ``C:\\x`` are not."""
    return isinstance(location, StoreURL) or bool(_URL.match(str(location)))


def store_location(text: str | os.PathLike | StoreURL) -> StoreLocation:
    """A ``--out``/``--store`` value as a location: ``file://`` URLs and paths are local."""
    if isinstance(text, StoreURL | Path):
        return text
    text = os.fspath(text) if not isinstance(text, str) else text
    if not is_url(text):
        return Path(text)
    try:
        scheme = urlsplit(text).scheme.lower()
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 host
        raise OptionError(f"{text}: not a valid URL ({exc}) (--out / --store)") from None
    if scheme == "file":
        return Path(urlsplit(text).path)
    url = StoreURL(text)
    if "/" not in url.url.split("://", 1)[1]:
        raise OptionError(
            f"{text}: name a store inside the bucket, e.g. {url.url}/runs/demo.zarr "
            "(--out / --store)"
        )
    return url


# -- options -----------------------------------------------------------------------------------
def parse_storage_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value), for ``--storage-option``."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def use_storage_options(options: Mapping[str, str]) -> None:
    """Options for every object store opened from now on, in this process and in the build
    workers it starts (they inherit ``NETLAPSE_STORAGE_OPTIONS``); they override the
    environment variables, e.g. ``endpoint=http://127.0.0.1:9000``."""
    merged = {**storage_options(), **dict(options)}
    os.environ[OPTIONS_ENV] = json.dumps(merged)


def storage_options() -> dict[str, str]:
    raw = os.environ.get(OPTIONS_ENV)
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError:
        raise OptionError(f"{OPTIONS_ENV}: not a JSON object of storage options") from None
    if not isinstance(options, dict):
        raise OptionError(f"{OPTIONS_ENV}: not a JSON object of storage options")
    return {str(k): str(v) for k, v in options.items()}


# -- opening -----------------------------------------------------------------------------------
def object_store(url: StoreURL) -> Any:
    """An ``obstore`` store rooted at ``url`` (the store's own prefix)."""
    try:
        from obstore.store import from_url
    except ImportError:
        raise StoreError(
            f"{url}: object-storage URLs need the obstore package; pip install 'netlapse[cloud]'"
        ) from None
    # any cloud's keys, chosen at run time: obstore checks them, not its overloads
    options: dict[str, Any] = storage_options()
    check_settings(url.family, options)
    with remote_call(url):  # obstore raises its own kinds for a bad URL or option
        return from_url(url.url, retry_config=RETRY, **options)


@contextmanager
def remote_call(url: StoreURL) -> Iterator[None]:
    """Every failure of obstore in the block as a one-line ``StoreError``, a panic of its
    Rust code included (pyo3 raises that as a ``BaseException``)."""
    try:
        yield
    except NetlapseError:
        raise
    except Exception as exc:
        raise remote_error(url, exc) from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise remote_error(url, exc) from None


def is_panic(exc: BaseException) -> bool:
    """A panic of obstore's Rust code (``pyo3_runtime.PanicException``, not importable)."""
    return type(exc).__name__ == "PanicException"


def zarr_store(url: StoreURL, *, read_only: bool) -> Any:
    """zarr's ``ObjectStore`` over :func:`object_store`."""
    import zarr.storage

    return zarr.storage.ObjectStore(object_store(url), read_only=read_only)


def head(url: StoreURL, key: str) -> dict[str, Any] | None:
    """The metadata of object ``key`` under ``url``, or None if it is not there.

    A missing bucket also answers a HEAD with a plain 404, so a missing object is
    confirmed by a listing, which names the missing bucket ("no bucket", not "no store").
    """
    import obstore
    from obstore.exceptions import NotFoundError

    store = object_store(url)
    with remote_call(url):
        try:
            return dict(obstore.head(store, key))
        except (NotFoundError, FileNotFoundError):
            pass
    has_objects(url)  # raises for a missing bucket
    return None


def get_bytes(url: StoreURL, key: str, *, limit: int) -> bytes | None:
    """The bytes of object ``key`` under ``url`` (None if absent), refusing more than
    ``limit`` bytes before reading them."""
    import obstore

    meta = head(url, key)
    if meta is None:
        return None
    if meta["size"] > limit:
        raise StoreError(f"{url}/{key}: larger than {limit // 2**20} MB; the store is damaged")
    with remote_call(url):
        return bytes(obstore.get(object_store(url), key).bytes())


def has_objects(url: StoreURL) -> bool:
    """Anything at all under ``url/`` (a store, or something else in the way)."""
    import obstore

    with remote_call(url):
        for batch in obstore.list(object_store(url), chunk_size=1):
            return bool(batch)
    return False


def delete_prefix(url: StoreURL) -> int:
    """Delete every object under ``url/``; returns how many."""
    import obstore

    store = object_store(url)
    with remote_call(url):
        paths = [meta["path"] for batch in obstore.list(store) for meta in batch]
        if paths:
            obstore.delete(store, paths)
    return len(paths)


def total_size(url: StoreURL) -> int:
    """Bytes of every object under ``url/`` (``info``'s "on disk")."""
    import obstore

    with remote_call(url):
        return sum(meta["size"] for batch in obstore.list(object_store(url)) for meta in batch)


# -- errors ------------------------------------------------------------------------------------
def remote_errors() -> tuple[type[BaseException], ...]:
    """The exception classes an object store raises (empty without obstore)."""
    try:
        from obstore.exceptions import BaseError
    except ImportError:
        return ()
    return (BaseError,)


def io_errors() -> tuple[type[BaseException], ...]:
    """What a write to a store of either kind raises when the storage fails: ``OSError``
    for a folder, obstore's errors for object storage."""
    return (OSError, *remote_errors())


def remote_error(url: StoreURL, exc: BaseException) -> StoreError:
    """An obstore failure as one line: what went wrong and which setting fixes it."""
    text = str(exc)
    first = one_line(Exception(re.split(r"<\?xml|<Error>", text, maxsplit=1)[0]), 200)
    endpoint = ENDPOINTS.get(url.family, "the endpoint")
    options = "(or --storage-option KEY=VALUE)"
    bucket = urlsplit(url.url).netloc
    if is_panic(exc):
        why = f"the object-storage client failed ({first}); check {endpoint} {options}"
    elif "Unable to recognise URL" in text or "Unknown url scheme" in text:
        why = (
            f"no object store for {url.scheme}:// URLs; use s3://, gs://, az:// or https:// "
            "in --out / --store, or a local path"
        )
    elif "NoSuchBucket" in text or "ContainerNotFound" in text or "bucket does not exist" in text:
        why = (
            f"the bucket {bucket!r} does not exist; create it or fix the bucket in --out / --store"
        )
    elif _credentials_refused(text):
        code = _error_code(text)
        detail = f" ({code})" if code else ""
        why = (
            f"the server refused the credentials{detail}; check "
            f"{CREDENTIALS.get(url.family, 'the credentials')} {options}"
        )
    elif "allow_http" in text.lower() or "URL scheme is not allowed" in text:
        why = f"the endpoint is plain http; set AWS_ALLOW_HTTP=true {options}"
    elif _unreachable(text):
        why = f"cannot reach the endpoint; check {endpoint} and that the server runs {options}"
    elif "Missing bucket" in text or "missing region" in text.lower():
        why = f"{first}; check --out / --store and {endpoint} {options}"
    else:
        why = f"{first}; check --out / --store, {endpoint} {options}"
    gone = why.startswith("the bucket")  # no bucket: no store either
    return (StoreNotFoundError if gone else StoreError)(f"{url}: {why}")


def _credentials_refused(text: str) -> bool:
    codes = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden")
    return any(code in text for code in codes) or bool(re.search(r"status code: 40[13]\b", text))


def _unreachable(text: str) -> bool:
    signs = ("error sending request", "Connection refused", "connect", "timed out", "dns")
    return any(sign in text for sign in signs) or "builder error" in text


def _error_code(text: str) -> str | None:
    match = re.search(r"<Code>([A-Za-z]+)</Code>", text)
    return match.group(1) if match else None
