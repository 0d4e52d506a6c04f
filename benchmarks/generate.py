"""Generation throughput: 1 worker per CPU-second, 2 workers per wall-second, and the projection
for the paper's 30,000 derivations.

Usage: ``python benchmarks/generate.py [--n 200] [--seed 1]``. The machine is shared, so the
1-worker figure is CPU time (``time.process_time``), which does not depend on how busy the
other cores are; the 2-worker figure is wall time (what a user waits for) next to the CPU time
of the parent plus its finished joblib workers. The goal (issue 2): 30,000 derivations in under
10 minutes with 2 workers, i.e. >= 50 per wall-second, >= 25 per CPU-second per worker. The
authors' generator made about 22 derivations per CPU-minute (0.37 per CPU-second) here. The last
line is the projected minutes for 30,000 derivations with 2 workers.
"""
from __future__ import annotations

import argparse
import os
import time

from joblib.externals.loky import get_reusable_executor

from derivlib import generate

PAPER_SCALE = 30000


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the joblib workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(n: int, workers: int, seed: int) -> tuple[int, float, float]:
    """(derivations, CPU seconds, wall seconds) of ``generate(n, seed, workers)``.

    With workers, joblib's reusable worker processes are started (SymPy imported) before the
    clock starts, as they are once per run of 30,000; their start-up CPU time is still counted.
    """
    cpu = cpu_seconds()
    if workers > 1:
        generate.generate(workers, seed=seed + 1000, workers=workers)  # start the workers
    wall = time.perf_counter()
    records, _ = generate.generate(n, seed=seed, workers=workers)
    wall = time.perf_counter() - wall
    if workers > 1:
        get_reusable_executor().shutdown(wait=True)  # so the workers' CPU time is counted
    return len(records), cpu_seconds() - cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="derivations per measurement")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    n1, cpu1, wall1 = measure(args.n, 1, args.seed)
    n2, cpu2, wall2 = measure(args.n, 2, args.seed + 1)
    per_cpu_1, per_wall_2 = n1 / cpu1, n2 / wall2
    print(f"load average before: {load:.1f} on {os.cpu_count()} cores")
    print(f"{'':10s} {'per CPU-second':>15s} {'per wall-second':>16s}")
    print(f"{'1 worker':10s} {per_cpu_1:15.2f} {n1 / wall1:16.2f}")
    print(f"{'2 workers':10s} {n2 / cpu2:15.2f} {per_wall_2:16.2f}  (CPU includes worker start-up)")
    idle = PAPER_SCALE / (2 * per_cpu_1) / 60
    print(f"on 2 idle cores at the 1-worker CPU rate: {idle:.1f} min for {PAPER_SCALE:,}")
    print(f"projected minutes for {PAPER_SCALE:,} derivations with 2 workers (measured wall rate, "
          f"goal < 10): {PAPER_SCALE / per_wall_2 / 60:.1f}")


if __name__ == "__main__":
    main()
