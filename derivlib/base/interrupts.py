"""Ctrl-C, and SIGTERM where a handler turns it into an exception, acted on at safe points only.

Why: Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised inside
``concurrent.futures.wait`` between taking the futures' locks and giving them back, it leaves a
future's lock held for ever: the worker thread that finishes that future blocks on it, and
``shutdown(wait=True)`` waits for that worker. ``derivlib prompt`` hung so after Ctrl-C (seen once
in CI). Inside :func:`deferred_signals`, such a signal only records itself, and
:meth:`DeferredSignals.check`, called by a loop between bounded waits, runs its handler there.

Only handlers that are Python code are deferred: a signal left to the operating system (the
default SIGTERM ends the process at once) or ignored keeps that disposition.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredSignals:
    def __init__(self) -> None:
        self.previous: dict[int, object] = {}
        self.received: list[int] = []

    def record(self, signum: int, frame) -> None:
        self.received.append(signum)

    def check(self) -> None:
        """Run the handler of the first signal received since the block began (it raises)."""
        if self.received:
            signum = self.received[0]
            self.received.clear()
            self.previous[signum](signum, None)


@contextlib.contextmanager
def deferred_signals(signums: tuple[int, ...] = SIGNALS) -> Iterator[DeferredSignals]:
    """Defer ``signums`` to :meth:`DeferredSignals.check` within the block (main thread only:
    elsewhere signals never arrive, and nothing changes). A signal received but not yet acted on
    when the block ends normally is acted on then."""
    deferred = DeferredSignals()
    if threading.current_thread() is threading.main_thread():
        for signum in signums:
            handler = signal.getsignal(signum)
            if callable(handler):
                deferred.previous[signum] = handler
                signal.signal(signum, deferred.record)
    try:
        yield deferred
    finally:
        for signum, handler in deferred.previous.items():
            signal.signal(signum, handler)
    deferred.check()
