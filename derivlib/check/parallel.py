"""Checking many records (:func:`check_records`) in worker processes that enforce the time limit.

Each record is one task of a :class:`pebble.ProcessPool`. While it runs, the worker writes the
step it is on (reading the reference, equation i, the relevance pass) and when it began into
shared memory; the parent polls it, and when one step has run for more than ``time_limit``
seconds it cancels the task: pebble kills that worker and starts a fresh one (no signals in the
checking code, so it is safe off the main thread). The step gets the label ``timeout`` and the
record is checked again from the start with that step skipped, so every other equation is still
labelled. A worker that dies (e.g. at its memory limit) labels its step ``too_large`` the same
way. Memory: each worker's address space may grow by ``memory_limit_mb`` beyond its size at
start-up (``RLIMIT_AS``, Linux); past it allocations fail with MemoryError (label ``too_large``).

Labels do not depend on the number of workers: each record is checked by itself, with check
points seeded from (seed, symbol name), and the results are put back in input order. A
``timeout`` depends on the machine's speed, which is why the structural budgets
(:mod:`.budgets`) come first and the limit is generous: no released or generated equation comes
near it.

On a cluster (``backend="dask"``: a ``distributed.LocalCluster`` or the one at ``scheduler``, see
:mod:`derivlib.base.parallel`), the records go in chunks (:data:`CHUNK_RECORDS`) through joblib, and
each chunk is checked by the mechanism above with one worker process, started by the cluster's worker
that runs the chunk: the same limits, the same labels. A cluster worker that dies is replaced and
its chunk computed again, from the records alone. Such a worker must be allowed children: a
LocalCluster's are; start the workers of a cluster with ``DASK_DISTRIBUTED__WORKER__DAEMON=False``.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import multiprocessing
import os
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable

import pebble
from joblib import Parallel, delayed

from ..base import parallel
from ..base.interrupts import deferred_signals
from ..base.params import ParameterError
from ..base.progress import Progress
from .derivations import RELEVANCE, SETUP, DerivationCheck, EquationCheck, check_record, validate_record

try:
    import resource
except ImportError:  # not on Windows: workers run without a memory limit there
    resource = None

TIME_LIMIT = 60.0       # seconds one step (an equation, reading the reference) may take in a worker
MEMORY_LIMIT_MB = 2048  # address space a worker may add to its size at start-up
#: Records per task on a cluster: 4 tasks per worker thread, within these bounds. Each task
#: starts a process with cold caches; at 32 records a task, 1,200 generated derivations took 17.5 s
#: on a 2-worker LocalCluster against loky's 11.2 s, at 150 13.7 s (2.2 s of it the cluster's start).
CHUNK_RECORDS = (32, 512)
_POLL = 0.05            # seconds between looks at the workers' progress
_SPAN = 1024            # progress = attempt * _SPAN + step + 2 (a step is in -1 .. RELEVANCE)
_NOT_STARTED = -2

_progress = None  # the shared arrays, in a worker
_started = None


def _progress_line(done: int, total: int, rate: Progress) -> str:
    return f"checked {done}/{total} derivations ({rate.rate_and_eta(done, 'derivations')})"


def _init_worker(progress, started, memory_limit_mb: int) -> None:
    global _progress, _started
    _progress, _started = progress, started
    if memory_limit_mb:
        limit_memory(memory_limit_mb)


def limit_memory(memory_limit_mb: int) -> int | None:
    """Limit this process's address space to its present size plus ``memory_limit_mb`` MiB
    (``RLIMIT_AS``; what a worker calls when it starts). Returns the limit in bytes, or None where
    the size cannot be read (not Linux): there the process stays unlimited."""
    size = _address_space()
    if size is None or resource is None:
        return None
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + memory_limit_mb * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _report(index: int, attempt: int, step: int) -> None:
    _started[index] = time.monotonic()  # first the time, then the step it belongs to
    _progress[index] = attempt * _SPAN + step + 2


def _task(index: int, attempt: int, record: dict, seed: int, skip: dict, relevance: bool) -> DerivationCheck:
    return check_record(record, seed, skip=skip, relevance=relevance,
                        progress=functools.partial(_report, index, attempt))


def _start_method():
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # workers fork from a server that has imported the checker once: a fresh worker (after a
        # kill) starts in milliseconds, with none of the parent's memory (a notebook kernel's)
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _whole(record: dict, label: str, reason: str) -> DerivationCheck:
    """The check of a record whose reference could not be read in time: one entry."""
    text = record["prediction"] if isinstance(record["prediction"], str) else " and ".join(record["prediction"])
    return DerivationCheck(id=str(record.get("id", "")), model=str(record.get("model", "")),
                           set=str(record.get("set", "")), equations=[EquationCheck(text[:200], label, reason)],
                           goal_reached=False, skipped_steps=0, length=1,
                           reference_length=len(record["srepr_derivation"]))


class _Run:
    """One parallel check of ``records``: what is waiting, running and done, and each record's
    attempt, skipped steps and relevance flag."""

    def __init__(self, records: list[dict], seed: int, workers: int, time_limit: float, memory_limit_mb: int,
                 log: Callable[[str], None] | None, first_number: int = 1):
        self.records, self.seed, self.workers, self.time_limit = records, seed, workers, time_limit
        self.first_number = first_number  # the number of records[0] in the caller's list
        self.memory_limit_mb, self.log = memory_limit_mb, log
        self.results: list[DerivationCheck | None] = [None] * len(records)
        self.attempt = [0] * len(records)
        self.skip: list[dict] = [{} for _ in records]
        self.relevance = [True] * len(records)
        self.waiting = collections.deque(range(len(records)))
        self.running: dict = {}
        self.done = 0
        self.rate = Progress(len(records))

    def step(self, index: int) -> int:
        """The step the current attempt at ``index`` is on (``_NOT_STARTED`` before it starts)."""
        value = self.progress[index]
        if value // _SPAN != self.attempt[index]:
            return _NOT_STARTED  # not started, or a message of an attempt already given up
        return value % _SPAN - 2

    def run(self) -> list[DerivationCheck]:
        context = _start_method()
        self.progress = context.RawArray("q", len(self.records))
        self.started = context.RawArray("d", len(self.records))
        pool = pebble.ProcessPool(max_workers=self.workers, initializer=_init_worker,
                                  initargs=(self.progress, self.started, self.memory_limit_mb), context=context)
        try:
            with deferred_signals() as signals:  # Ctrl-C inside wait() could hang pool.join()
                while self.waiting or self.running:
                    self._submit(pool)
                    finished, _ = concurrent.futures.wait(list(self.running), timeout=_POLL,
                                                          return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in finished:
                        self._collect(future)
                    self._enforce_time_limit()
                    signals.check()
        except BrokenProcessPool as err:  # workers that cannot even start (e.g. a script without a main guard)
            raise OSError(f"the checking workers could not start or all died ({err}); a script that calls "
                          "check_records with workers must guard its code with if __name__ == '__main__'") from None
        finally:
            pool.stop()
            pool.join()
        return self.results

    def _submit(self, pool) -> None:
        while self.waiting and len(self.running) < 2 * self.workers:
            index = self.waiting.popleft()
            self.attempt[index] += 1
            self.progress[index] = self.attempt[index] * _SPAN  # not started
            future = pool.schedule(_task, args=(index, self.attempt[index], self.records[index], self.seed,
                                                dict(self.skip[index]), self.relevance[index]))
            self.running[future] = index

    def _collect(self, future) -> None:
        index = self.running.pop(future, None)
        if index is None:
            return  # cancelled by _enforce_time_limit, already handled
        try:
            self.results[index] = future.result()
        except pebble.ProcessExpired as err:
            self._stopped(index, "too_large", f"the worker died (exit code {err.exitcode}), presumably at its "
                                              f"memory limit ({self.memory_limit_mb} MiB over its start-up size)")
            return
        except MemoryError:  # raised outside the equations' own handling (reading the reference)
            self._stopped(index, "too_large", f"the worker's memory limit ({self.memory_limit_mb} MiB over its "
                                              "start-up size) was reached")
            return
        except concurrent.futures.CancelledError:
            return
        except ValueError as err:
            name = self.records[index].get("id", "?")
            raise ValueError(f"record {index + self.first_number} ({name!r}): {err}") from None
        self.done += 1
        if self.log and self.done % 200 == 0:
            self.log(_progress_line(self.done, len(self.records), self.rate))

    def _enforce_time_limit(self) -> None:
        now = time.monotonic()
        for future, index in list(self.running.items()):
            if self.step(index) == _NOT_STARTED or now - self.started[index] <= self.time_limit:
                continue
            if future.cancel():  # pebble kills the worker running it and starts another
                del self.running[future]
                self._stopped(index, "timeout", f"took more than {self.time_limit:g} s (the worker was killed "
                                                "and replaced)")

    def _stopped(self, index: int, label: str, reason: str) -> None:
        """The current step of ``index`` ran out of time or memory: label it and try again."""
        step = self.step(index)
        if step in (SETUP, _NOT_STARTED):
            self.results[index] = _whole(self.records[index], label,
                                         f"reading the reference or splitting the prediction: {reason}")
            self.done += 1
            return
        if step == RELEVANCE:
            self.relevance[index] = False
        else:
            self.skip[index][step] = (label, reason)
        self.waiting.appendleft(index)


def _check_chunk(records: list[dict], seed: int, time_limit: float, memory_limit_mb: int,
                 first_number: int) -> list[DerivationCheck]:
    """One cluster task: ``records`` checked by one worker process of this (cluster) process."""
    if multiprocessing.current_process().daemon:
        raise ParameterError("parameter 'scheduler': the cluster's workers are daemonic processes, which may "
                             "not start the process that enforces the time limit; start them with "
                             "DASK_DISTRIBUTED__WORKER__DAEMON=False")
    return _Run(records, seed, 1, time_limit, memory_limit_mb, None, first_number).run()


def _check_on_cluster(records: list[dict], seed: int, workers: int, scheduler: str, time_limit: float,
                      memory_limit_mb: int, log: Callable[[str], None] | None) -> list[DerivationCheck]:
    checks: list[DerivationCheck] = []
    rate = Progress(len(records))
    with parallel.backend("dask", workers, scheduler, log=log) as jobs:
        low, high = CHUNK_RECORDS
        size = min(high, max(low, -(-len(records) // (4 * jobs))))
        for part in Parallel(n_jobs=jobs, return_as="generator")(
                delayed(_check_chunk)(records[k:k + size], seed, time_limit, memory_limit_mb, k + 1)
                for k in range(0, len(records), size)):
            checks.extend(part)
            if log and len(checks) // 200 > (len(checks) - len(part)) // 200:
                log(_progress_line(len(checks), len(records), rate))
    return checks


def check_records(records: Iterable[dict], seed: int = 0, workers: int = 0, time_limit: float = TIME_LIMIT,
                  memory_limit_mb: int = MEMORY_LIMIT_MB, log: Callable[[str], None] | None = None,
                  backend: str = "loky", scheduler: str = "") -> list[DerivationCheck]:
    """Check every record; the same labels for any ``workers`` and either ``backend``.

    ``workers=0`` checks in this process, with the structural budgets only (no time limit, no
    memory limit): for debugging and for trusted inputs. ``workers >= 1`` uses that many worker
    processes, each step limited to ``time_limit`` seconds and each worker's growth to
    ``memory_limit_mb`` MiB (module docstring). ``log`` receives a progress line every 200
    derivations. ``backend="dask"`` checks on a cluster (module docstring): a LocalCluster of
    ``workers`` processes, or the cluster at ``scheduler``. A record that cannot be checked at all
    raises ValueError naming it. Workers start by ``forkserver`` (``spawn`` where there is none),
    so a script calling this with workers needs the usual ``if __name__ == "__main__":`` guard.
    """
    records = list(records)
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if time_limit <= 0:
        raise ValueError(f"time_limit must be positive, got {time_limit!r}")
    if backend != "loky" and workers == 0:
        raise ParameterError(f"parameter 'workers': 0 checks in this process, but backend {backend!r} was chosen")
    parallel.check(backend, scheduler, max(workers, 1))
    for number, record in enumerate(records, 1):
        try:
            validate_record(record)
        except ValueError as err:
            raise ValueError(f"record {number}: {err}") from None
    if workers == 0 or not records:
        checks, progress = [], Progress(len(records))
        for number, record in enumerate(records, 1):
            checks.append(check_record(record, seed))
            if log and number % 200 == 0:
                log(_progress_line(number, len(records), progress))
        return checks
    if backend == "dask":
        return _check_on_cluster(records, seed, workers, scheduler, time_limit, memory_limit_mb, log)
    return _Run(records, seed, workers, time_limit, memory_limit_mb, log).run()
