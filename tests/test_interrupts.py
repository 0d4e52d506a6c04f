"""Ctrl-C deferred to safe points (derivlib.base.interrupts)."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from derivlib.base.interrupts import deferred_signals


def test_ctrl_c_waits_for_check_then_raises_there():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals() as signals:
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")  # not interrupted mid-way
            signals.check()
            reached.append("after check")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_left_unchecked_is_acted_on_when_the_block_ends():
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_exception_from_the_block_is_not_masked_by_a_pending_signal():
    with pytest.raises(ValueError):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("the block's own error")


def test_python_sigterm_handlers_are_deferred_and_os_dispositions_kept():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with deferred_signals() as signals:
            os.kill(os.getpid(), signal.SIGTERM)
            assert calls == []
            signals.check()
            assert calls == [signal.SIGTERM]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with deferred_signals():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the default: the process ends at once
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_nothing_changes():
    seen = []

    def body():
        with deferred_signals() as signals:
            seen.append(signal.getsignal(signal.SIGINT))
            signals.check()

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [signal.default_int_handler]
