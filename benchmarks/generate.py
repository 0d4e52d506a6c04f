"""Generation throughput: 1 worker per CPU-second, 2 workers per wall-second, the projection for
the paper's 30,000 derivations, and with ``--backend dask`` a 2-worker Dask ``LocalCluster`` on
the same derivations.

Usage: ``python benchmarks/generate.py [--n 200] [--seed 1] [--backend dask]``. The machine is
shared, so the 1-worker figure is CPU time (``time.process_time``), which does not depend on how
busy the other cores are; the 2-worker figures are wall time (what a user waits for) next to the
CPU time of the parent plus its finished workers. Every arm generates the same derivations
(same n, same seed), after its workers have started and generated a few (as they are once per run
of 30,000); their start-up CPU time is still counted. The goal (issue 2): 30,000 derivations in
under 10 minutes with 2 workers, i.e. >= 50 per wall-second, >= 25 per CPU-second per worker. The
authors' generator made about 22 derivations per CPU-minute (0.37 per CPU-second) here.

The last line is the projected minutes for 30,000 derivations with 2 workers, or with
``--backend dask`` the ratio of Dask's wall time to loky's for the same n (the scheduler's
overhead: 1.00 is none).
"""
from __future__ import annotations

import argparse
import os
import time

from derivlib import generate
from derivlib.base import parallel

PAPER_SCALE = 30000


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(n: int, workers: int, seed: int, backend: str = "loky") -> tuple[int, float, float]:
    """(derivations, CPU seconds, wall seconds) of ``generate(n, seed)`` on ``workers`` workers of
    ``backend``; the workers are started (SymPy imported, a chunk each generated) before the
    clock starts and stopped before the CPU time is read."""
    cpu = cpu_seconds()
    with parallel.backend(backend, workers) as jobs:
        if jobs > 1:  # two chunks per worker, on another seed
            generate.generate(2 * jobs * generate.MIN_CHUNK, seed=seed + 1000, workers=jobs)
        wall = time.perf_counter()
        records, _ = generate.generate(n, seed=seed, workers=jobs)
        wall = time.perf_counter() - wall
    return len(records), cpu_seconds() - cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="derivations per measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("loky", "dask"), default="loky",
                        help="dask: also measure a 2-worker LocalCluster on the same derivations")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    n1, cpu1, wall1 = measure(args.n, 1, args.seed)
    n2, cpu2, wall2 = measure(args.n, 2, args.seed)
    per_cpu_1, per_wall_2 = n1 / cpu1, n2 / wall2
    print(f"load average before: {load:.1f} on {os.cpu_count()} cores")
    print(f"{'':22s} {'per CPU-second':>15s} {'per wall-second':>16s}")
    print(f"{'1 worker':22s} {per_cpu_1:15.2f} {n1 / wall1:16.2f}")
    print(f"{'2 workers (loky)':22s} {n2 / cpu2:15.2f} {per_wall_2:16.2f}  (CPU includes worker start-up)")
    if args.backend == "dask":
        nd, cpud, walld = measure(args.n, 2, args.seed, "dask")
        print(f"{'2 workers (dask local)':22s} {nd / cpud:15.2f} {nd / walld:16.2f}  "
              "(CPU includes the cluster's start-up)")
    idle = PAPER_SCALE / (2 * per_cpu_1) / 60
    print(f"on 2 idle cores at the 1-worker CPU rate: {idle:.1f} min for {PAPER_SCALE:,}")
    print(f"projected minutes for {PAPER_SCALE:,} derivations with 2 workers (measured wall rate, "
          f"goal < 10): {PAPER_SCALE / per_wall_2 / 60:.1f}")
    if args.backend == "dask":
        print(f"dask/loky wall time for the same {args.n} derivations on 2 workers: {walld / wall2:.2f}")


if __name__ == "__main__":
    main()
