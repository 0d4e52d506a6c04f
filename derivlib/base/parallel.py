"""Where parallel work runs: joblib's backend for one block of work, chosen by name.

Code that fans work out calls ``joblib.Parallel(n_jobs=jobs)`` and nothing else; the block
around it chooses where the jobs go::

    with parallel.backend("dask", workers=4) as jobs:   # or "loky"; scheduler="tcp://host:8786"
        records, rejections = generate.generate(30000, seed=0, workers=jobs)

- ``"loky"`` (joblib's default): ``workers`` local processes. While the block runs, SIGTERM is
  turned into an exception (:class:`Terminated`), so that ``finally`` clauses run as on Ctrl-C;
  the workers are killed when the block ends, however it ends; and each worker dies with this
  process even when it is killed with SIGKILL (Linux: ``prctl(PR_SET_PDEATHSIG)`` in loky's
  worker initializer). Without this, loky's workers and resource trackers outlived a killed
  parent by minutes.
- ``"dask"``: joblib's dask backend on a ``distributed`` cluster. Without ``scheduler``, a
  ``LocalCluster`` of ``workers`` single-threaded, non-daemonic worker processes on 127.0.0.1,
  without dashboard, closed when the block ends (its workers also exit when this process dies:
  distributed watches the parent). With ``scheduler`` (``tcp://host:8786``), that cluster, e.g.
  one started with ``dask scheduler`` and ``DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker
  --nthreads 1`` (non-daemonic workers are needed by ``check`` only), or by dask-jobqueue on
  Slurm. Each worker must run one thread: SymPy's caches and the generator's stand-ins for SymPy
  internals (:mod:`derivlib.sympy_fast`) are per process. A worker that dies is replaced by its
  nanny and its task rescheduled by the scheduler.

The block yields the ``n_jobs`` to pass on: ``workers`` for loky; for dask the cluster's worker
threads, which joblib's dask backend uses whatever ``n_jobs`` says. A cluster of one worker
thread is refused: joblib would compute in this process instead (measured: every task of a
1-worker LocalCluster ran in the caller). Outputs never depend on it: callers key their work by
(seed, index range).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from typing import Callable, Iterator

import joblib

from .params import ParameterError

BACKENDS = ("loky", "dask")
#: Seconds to wait for a scheduler given by address to answer, and for its first worker.
CONNECT_TIMEOUT = 30
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM received inside a :func:`backend` block: handled like Ctrl-C, so that the block's
    cleanup runs and the command says what it kept."""


def check(backend: str, scheduler: str = "", workers: int = 1) -> None:
    """Raise ``ParameterError`` naming the parameter unless the choice is valid."""
    if backend not in BACKENDS:
        raise ParameterError(f"parameter 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(scheduler, str):
        raise ParameterError(f"parameter 'scheduler' must be an address string, got {scheduler!r}")
    if scheduler and backend != "dask":
        raise ParameterError(f"parameter 'scheduler' ({scheduler}) needs backend 'dask', got {backend!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ParameterError(f"parameter 'workers' must be a positive integer, got {workers!r}")
    if backend == "dask" and not scheduler and workers < 2:
        raise ParameterError(f"parameter 'workers' must be at least 2 with backend 'dask', got {workers}: joblib "
                             "computes in this process when the cluster has one worker thread (use loky)")


@contextlib.contextmanager
def backend(name: str = "loky", workers: int = 1, scheduler: str = "",
            log: Callable[[str], None] | None = None) -> Iterator[int]:
    """Run the block's joblib work on ``name``'s processes; yields the ``n_jobs`` to use."""
    check(name, scheduler, workers)
    say = log or (lambda message: None)
    with _sigterm_raises():
        if name == "loky":
            with _loky(workers) as jobs:
                yield jobs
        else:
            with _dask(workers, scheduler, say) as jobs:
                yield jobs


@contextlib.contextmanager
def _loky(workers: int) -> Iterator[int]:
    from joblib.externals.loky import get_reusable_executor  # joblib's own process pool

    try:
        with joblib.parallel_config(backend="loky", initializer=die_with_parent, initargs=(os.getpid(),)):
            yield workers
    finally:
        if workers > 1:  # with 1, joblib computes in this process and starts no executor
            # reuse=True returns the executor the block's Parallel calls used (or an idle new
            # one), never resizes it; kill_workers stops a chunk in progress too
            get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)


@contextlib.contextmanager
def _dask(workers: int, scheduler: str, say: Callable[[str], None]) -> Iterator[int]:
    import dask  # optional heavy dependency (1 s to import): only for backend "dask"
    import distributed

    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(distributed.Client(scheduler, timeout=CONNECT_TIMEOUT))
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except OSError as err:  # TimeoutError included
                raise ParameterError(f"parameter 'scheduler': no dask cluster with workers at {scheduler} "
                                     f"within {CONNECT_TIMEOUT} s ({' '.join(str(err).split())})") from None
            threads = client.nthreads()
            if sum(threads.values()) < 2:
                raise ParameterError(f"parameter 'scheduler': the cluster at {scheduler} has 1 worker thread, and "
                                     "joblib computes in this process then; start at least 2 workers")
            crowded = sorted(address for address, n in threads.items() if n > 1)
            if crowded:
                raise ParameterError(f"parameter 'scheduler': the workers of {scheduler} must run one thread "
                                     f"each (SymPy's state is per process), but {crowded[0]} runs "
                                     f"{threads[crowded[0]]}; start them with `dask worker --nthreads 1`")
            say(f"dask: {len(threads)} workers of the cluster at {scheduler}")
        else:
            # not daemonic, so that a task may start processes of its own (the checker's, which
            # enforce its time limit by being killed); the nanny reads this whenever it (re)starts
            # a worker, so it holds for the block
            stack.enter_context(dask.config.set({"distributed.worker.daemon": False}))
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=logging.CRITICAL))  # errors reach us as exceptions
            client = stack.enter_context(distributed.Client(cluster))
            threads = client.nthreads()
            say(f"dask: a LocalCluster of {workers} worker processes at {cluster.scheduler_address}")
        with joblib.parallel_config(backend="dask"):
            yield sum(threads.values())


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def terminated(signum, frame):
        raise Terminated(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(parent: int) -> None:
    """Loky's worker initializer: this process gets SIGKILL when its parent dies (Linux), and
    exits at once if the parent ``parent`` is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
