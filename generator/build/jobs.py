"""Where build jobs run: local processes, or the workers of a dask cluster.

``build`` hands its jobs to a runner and gets back, job by job, the records of what was
made, with the files already in the site folder. Two runners share that one interface:

* ``LocalProcesses``: ``--jobs`` spawned processes on this machine (or this process for
  one), each writing its files straight into the site folder.
* ``DaskCluster``: ``--scheduler tcp://HOST:PORT``. Each worker opens the store from its
  location (an object-storage URL, or a path the worker sees at the same place), renders
  into a private temp folder and returns the files' bytes; this process writes them into
  the site. So workers need no access to the site folder and may be other machines; the
  cost is that every artefact crosses the network once (a job's files are at most a few
  tens of MB: one layer and probe at ``--max-side``). dask is imported only here, only
  when a scheduler is given.

A runner is a context manager: ``DaskCluster`` connects on entry (a scheduler that is not
there fails within ``CONNECT_TIMEOUT`` seconds, before anything is written) and lets go of
the cluster on exit. On a failure or Ctrl-C no new job starts and every file written so
far is in the site, where ``build`` gives it to the manifest it leaves.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from generator.atomic import atomic_path
from generator.build.artefacts import Job, run_job
from generator.build.parent import watch_parent
from generator.build.scheduler import probe, wait_for_some
from generator.errors import NetlapseError, OptionError
from generator.site.manifest import ArtefactRecord

CONNECT_TIMEOUT = 5.0  # seconds to reach a scheduler before ``--scheduler`` is refused
CLUSTER_EXTRA = "netlapse[cluster]"


class JobRunner(AbstractContextManager, Protocol):
    """Runs build jobs; yields each job's made records once its files are in ``site``."""

    def run(self, jobs: Sequence[Job], site: Path) -> Iterator[list[ArtefactRecord]]: ...


def job_runner(*, workers: int, scheduler: str | None) -> JobRunner:
    """The runner a build asked for: a dask cluster when ``scheduler`` is given."""
    if scheduler:
        return DaskCluster(scheduler)
    return LocalProcesses(workers)


# -- local processes -----------------------------------------------------------------------
class LocalProcesses(AbstractContextManager):
    """``workers`` spawned processes writing straight into the site (this process for 1)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, jobs: Sequence[Job], site: Path) -> Iterator[list[ArtefactRecord]]:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield run_job(job, site)
            return
        # spawn, not fork: the parent holds zarr's event-loop thread, which fork would copy.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=watch_parent,  # a worker never outlives a killed build
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(run_job, job, site) for job in jobs]
            try:
                for future in as_completed(futures):
                    yield future.result()
            except BaseException:
                # Start no more jobs; leaving the block waits for the running ones, so the
                # caller then sees (and owns) every file a worker wrote.
                pool.shutdown(wait=True, cancel_futures=True)
                raise


# -- a dask cluster ------------------------------------------------------------------------
class DaskCluster(AbstractContextManager):
    """The workers of the dask scheduler at ``address``; files come back as bytes."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None

    def __enter__(self) -> DaskCluster:
        distributed = _import_distributed()
        _check_address(self.address)
        probe(self.address, timeout=CONNECT_TIMEOUT)  # a peer that is not dask: one line
        try:
            self._client = distributed.Client(
                self.address, timeout=CONNECT_TIMEOUT, set_as_default=False
            )
        except Exception as exc:  # dask's connect timeout is an OSError; anything else too
            raise OptionError(
                f"--scheduler {self.address}: no dask scheduler answered within "
                f"{CONNECT_TIMEOUT:g} s ({_first_line(exc)}); start one (`dask scheduler`) "
                "or fix the address"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, jobs: Sequence[Job], site: Path) -> Iterator[list[ArtefactRecord]]:
        client = self._client
        build_id = uuid.uuid4().hex[:8]  # keys are global on the scheduler: one per build
        futures = {
            client.submit(made_elsewhere, portable(job), key=f"{_first_id(job)}-{build_id}"): job
            for job in jobs
        }
        try:
            while futures:  # bounded: without workers for a minute, one line
                for future in wait_for_some(client, futures, self.address):
                    job = futures.pop(future)
                    records, files = self._result(future, job)
                    future.release()  # the worker may drop the bytes now
                    for relative, data in files.items():
                        _write(site, relative, data)
                    yield records
        except BaseException:
            client.cancel(list(futures))  # start no more jobs; nothing late is written
            raise

    def _result(self, future: Any, job: Job) -> tuple[list[ArtefactRecord], dict[str, bytes]]:
        """The job's result; a worker without netlapse or one that died is one line."""
        from distributed import KilledWorker

        try:
            return future.result()
        except NetlapseError:
            raise
        except ImportError as exc:
            raise OptionError(
                f"--scheduler {self.address}: a worker cannot run {_first_id(job)} "
                f"({_first_line(exc)}); install netlapse where the workers run"
            ) from None
        except KilledWorker as exc:
            raise NetlapseError(
                f"{_first_id(job)}: the dask worker making it died ({_first_line(exc)}); "
                "see the worker's log (out of memory?)"
            ) from None


def made_elsewhere(job: Job) -> tuple[list[ArtefactRecord], dict[str, bytes]]:
    """Run ``job`` into a private temp folder and return its records and files' bytes
    (runs on a dask worker, which need not see the site folder)."""
    with tempfile.TemporaryDirectory(prefix="netlapse-job-") as folder:
        records = run_job(job, Path(folder))
        files = {
            relative: (Path(folder) / relative).read_bytes()
            for record in records
            for relative in record.files.values()
        }
    return records, files


def portable(job: Job) -> Job:
    """``job`` with a relative store path made absolute, so a worker started elsewhere
    (another folder, another machine on a shared file system) opens the same store."""
    from dataclasses import replace

    if "://" in job.store:
        return job
    return replace(job, store=str(Path(job.store).resolve()))


def _write(site: Path, relative: str, data: bytes) -> None:
    """Put one returned file in place, atomically (as the encoders do for local jobs)."""
    target = site / relative
    try:
        with atomic_path(target) as temp:
            temp.write_bytes(data)
    except OSError as exc:
        raise NetlapseError(f"{target}: cannot write ({exc.strerror or exc})") from exc


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise OptionError(
            f"--scheduler needs dask.distributed, which is not installed: "
            f"pip install '{CLUSTER_EXTRA}'"
        ) from None
    return distributed


def _check_address(address: str) -> None:
    """Refuse an address dask cannot parse before a client exists (a half-made client
    spends ten seconds closing itself)."""
    from distributed.comm.addressing import get_address_host_port

    try:
        get_address_host_port(address)
    except ValueError as exc:
        raise OptionError(
            f"--scheduler {address}: not a scheduler address ({_first_line(exc)}); "
            "use tcp://HOST:PORT, as `dask scheduler` prints it"
        ) from None


def _first_id(job: Job) -> str:
    return job.artefacts[0].id


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
