"""Generation throughput: derivations per CPU-second with 1 worker and with 2.

Usage: ``python benchmarks/generate.py [--n 200]``. CPU-seconds are the process CPU time of
the parent plus its finished children (joblib workers), so the figure does not depend on how
busy the machine is. The authors' generator made about 22 derivations per CPU-minute
(0.37 per CPU-second) on this machine; the goal is 20x that per core. The last line prints
the 1-worker figure.
"""
from __future__ import annotations

import argparse
import os
import time

from derivlib import generate


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(n: int, workers: int, seed: int) -> tuple[float, float]:
    from joblib.externals.loky import get_reusable_executor
    wall, cpu = time.time(), cpu_seconds()
    records, _ = generate.generate(n, seed=seed, workers=workers)
    if workers > 1:
        get_reusable_executor().shutdown(wait=True)  # so the workers' CPU time is counted
    return len(records) / (cpu_seconds() - cpu), len(records) / (time.time() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    one_cpu, one_wall = measure(args.n, 1, args.seed)
    print(f"1 worker: {one_cpu:.2f} derivations per CPU-second, {one_wall:.2f} per wall-second")
    two_cpu, two_wall = measure(args.n, 2, args.seed + 1)
    print(f"2 workers: {two_cpu:.2f} derivations per CPU-second, {two_wall:.2f} per wall-second "
          f"({30000 / max(two_wall, 1e-9) / 60:.1f} min for 30,000 at this rate)")
    print(f"{one_cpu:.2f} derivations per CPU-second per worker "
          f"({one_cpu * 60 / 22:.0f}x the authors' 22 per CPU-minute)")


if __name__ == "__main__":
    main()
