"""inject.engine: dask. Campaign tasks on Dask distributed workers: a LocalCluster started for the campaign, or the
workers of an existing scheduler (inject.scheduler: a dask-jobqueue SLURMCluster's, `dask scheduler`'s).

Each worker process loads its own copy of the C-sim library once per campaign (not per task) and keeps it while
the campaign's token is current; the samples and fault-free outputs are scattered to the workers once. Rows come
back as tasks complete and the submitting process writes them (flow/campaign.py); a worker never touches the
database."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.campaign import close_state, run_task, windowed, worker_state
from flow.errors import FlowError
from flow.hls import HlsProject

CONNECT_TIMEOUT = 30  # seconds to reach inject.scheduler
_STATE: dict = {}  # in a worker process: the current campaign's token, its worker_state and the count of loads
_LOCK = threading.Lock()  # a worker with several threads runs one task at a time: faults are process-wide


@dataclass(frozen=True)
class Setup:
    """What every task of a campaign needs, scattered to the workers once; ``token`` names the campaign run."""

    token: str
    project: HlsProject
    x: np.ndarray
    y: np.ndarray
    golden: np.ndarray
    mode: str


def work(setup: Setup, task: tuple) -> list[tuple[int, dict]]:
    """One task on a worker: the rows of its faults, on the worker's library for ``setup`` (loaded on first use)."""
    with _LOCK:
        if _STATE.get("token") != setup.token:
            if "state" in _STATE:
                close_state(_STATE.pop("state"))  # the previous campaign's batch; one library state per process
            state = worker_state(setup.project, setup.x, setup.y, setup.golden, setup.mode)
            _STATE.update(token=setup.token, state=state, loads=_STATE.get("loads", 0) + 1)
        return run_task(_STATE["state"], task)


def worker_info() -> dict:
    """This worker process's campaign state (``client.run(worker_info)``): how many times it loaded a campaign's
    library (once per campaign) and the evaluation mode it runs (fast, full or None)."""
    state = _STATE.get("state")
    mode = None if state is None else "fast" if state["fast"] is not None else "full"
    return {"loads": _STATE.get("loads", 0), "mode": mode}


def dask_results(args: tuple, tasks: Iterator, workers: int, scheduler: str | None) -> Iterator[list]:
    """The rows of each task as it completes on Dask workers; ``args``: (project, x, y, golden, mode)."""
    from distributed import as_completed  # dask.distributed: ~0.6 s to import

    with _client(scheduler, workers) as client:
        setup = client.scatter(Setup(uuid.uuid4().hex, *args), broadcast=True)
        completed = as_completed()
        futures: set = set()

        def submit(task: tuple) -> None:
            future = client.submit(work, setup, task, pure=False)
            futures.add(future)
            completed.add(future)

        def arrived():
            future = next(completed)
            futures.discard(future)
            return future.exception() or future.result()

        try:
            yield from windowed(submit, arrived, tasks, _Window(client, workers))
        finally:  # stopped, interrupted or failed: nothing more runs for this campaign
            client.cancel(list(futures))


class _Window:
    """Tasks in flight: twice the cluster's threads (workers may join later), refreshed every few seconds."""

    def __init__(self, client, workers: int):
        self.client, self.workers, self.size, self.when = client, workers, 0, 0.0

    def __call__(self) -> int:
        if time.monotonic() - self.when > 2.0:
            self.size = 2 * max(self.workers, sum(self.client.nthreads().values()), 1)
            self.when = time.monotonic()
        return self.size


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Hold Dask's and Tornado's loggers at CRITICAL while a campaign uses the cluster: closing a LocalCluster logs
    its shutdown and a harmless CommClosedError traceback; the loggers' levels are put back after."""
    import distributed  # noqa: F401  (its first import sets its loggers' levels: before ours)

    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int):
    """A Client on inject.scheduler, else on a LocalCluster of ``workers`` processes on localhost (no dashboard)."""
    with _quiet_dask():
        yield from _connect(scheduler, workers)


def _connect(scheduler: str | None, workers: int) -> Iterator:
    from distributed import Client, LocalCluster  # dask.distributed: ~0.6 s to import

    if scheduler is None:
        local = {"processes": True, "threads_per_worker": 1, "dashboard_address": None, "host": "127.0.0.1",
                 "silence_logs": logging.CRITICAL}  # fmt: skip
        with LocalCluster(n_workers=workers, **local) as cluster, Client(cluster) as client:
            yield client
        return
    if scheduler.endswith(".json") and not Path(scheduler).is_file():
        raise FlowError(f"inject.scheduler: scheduler file {scheduler!r} does not exist; allowed: the file "
                        "`dask scheduler --scheduler-file` writes, or an address tcp://host:port")  # fmt: skip
    where = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
    try:
        client = Client(**where, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise FlowError(f"inject.scheduler: cannot reach the Dask scheduler {scheduler!r} within "
                        f"{CONNECT_TIMEOUT} s ({exc}); start it first, or remove inject.scheduler for a "
                        "LocalCluster") from None  # fmt: skip
    with client:
        yield client
