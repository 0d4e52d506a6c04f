"""Rate and time left for the progress lines that long steps write into their run's log (and so
into the notebook and the terminal): generation, checking, training.

tqdm formats the time (``format_interval``); its bar is not used, because these are log lines,
one every N items, read in a file and a notebook as well as on a terminal, where a bar that
redraws itself in place would leave carriage returns."""
from __future__ import annotations

import time

from tqdm import tqdm


class Progress:
    """Counts ``done`` of ``total`` from the moment it is made; items already done then (a
    resumed run) count towards the total but not towards the rate."""

    def __init__(self, total: int, done: int = 0, clock=time.monotonic):
        self.total, self.start_done, self.clock, self.started = total, done, clock, clock()

    def rate_and_eta(self, done: int, unit: str = "") -> str:
        """E.g. ``95.2 derivations/s, ETA 01:53``; ``ETA ?`` before anything new is done."""
        elapsed, new = self.clock() - self.started, done - self.start_done
        if new <= 0 or elapsed <= 0:
            return "ETA ?"
        rate = new / elapsed
        per = f"{rate:,.1f} {unit}/s" if unit else f"{rate:,.1f}/s"
        return f"{per}, ETA {tqdm.format_interval(max(0.0, (self.total - done) / rate))}"
