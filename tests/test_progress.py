"""The rate and time left on progress lines (generation, checking, training)."""
from __future__ import annotations

from derivlib.base.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_from_what_was_done_since_the_start():
    clock = Clock()
    progress = Progress(total=1000, clock=clock)
    assert progress.rate_and_eta(0) == "ETA ?"
    clock.now += 10
    assert progress.rate_and_eta(100, "derivations") == "10.0 derivations/s, ETA 01:30"
    clock.now += 90
    assert progress.rate_and_eta(1000) == "10.0/s, ETA 00:00"


def test_a_resumed_run_counts_only_new_work_towards_the_rate():
    clock = Clock()
    progress = Progress(total=100, done=60, clock=clock)
    clock.now += 20
    assert progress.rate_and_eta(60) == "ETA ?"
    assert progress.rate_and_eta(70, "steps") == "0.5 steps/s, ETA 01:00"
