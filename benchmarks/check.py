"""Equations checked per second per core, end to end (``check.check_records``: worker start-up,
dialect split, parse, labels, the time-limit bookkeeping), with 1 and 2 worker processes:

- on the released GPT-4 and FLAN-T5-large outputs (DERIVLIB_PAPER_RESULTS; skipped without);
- on generated derivations (seed 0), written back as a model would: every step as SymPy prints
  it, except that every third non-premise step has its right side expanded (valid, not a
  reference equation: the numeric check runs) and the last step of every fifth derivation has
  its sign flipped (incorrect).

"Per core" divides by the number of workers. Also prints the parse round trip on the generated
derivations; with ``--backend dask``, the same check on a 2-worker ``distributed.LocalCluster``
(chunks of 32 to 512 records, each with its own time-limit process) and its wall
time against 2 local workers, cluster start-up included. The last line is the figure: released outputs, 2 workers (generated, 2 workers,
without the released files).
"""
from __future__ import annotations

import argparse
import time

import sympy as sp

from derivlib import check, derivation, generate, latex
from derivlib.base import parallel
from derivlib.readers import released


def generated_records(n: int, workers: int) -> list[dict]:
    records, _ = generate.generate(n, seed=0, workers=workers)
    out = []
    for number, record in enumerate(records):
        texts = []
        steps = record["srepr_derivation"]
        for index, (annotation, text) in enumerate(steps):
            equation = derivation.from_srepr(text)
            premise = derivation.is_premise(derivation.normalise_annotation(annotation))
            if not premise and index % 3 == 0:
                equation = sp.Eq(equation.lhs, sp.expand(equation.rhs), evaluate=False)
            if number % 5 == 0 and index == len(steps) - 1:
                equation = sp.Eq(equation.lhs, -equation.rhs, evaluate=False)
            texts.append(derivation.to_latex(equation))
        out.append({"id": record.get("id", str(number)), "model": "generated", "set": "static",
                    "prediction": " and ".join(texts), "srepr_derivation": steps})
    return out


def measure(name: str, records: list[dict], workers: int, backend: str = "loky") -> float:
    start = time.perf_counter()
    checks = check.check_records(records, workers=workers, backend=backend)
    seconds = time.perf_counter() - start
    equations = sum(len(c.equations) for c in checks)
    table = check.summarize(checks)
    labels = {label: int(table[label].sum()) for label in check.LABELS if table[label].sum()}
    rate = equations / seconds / workers
    where = " on a dask LocalCluster" if backend == "dask" else ""
    print(f"{name}, {workers} worker(s){where}: {equations} equations of {len(checks)} derivations in {seconds:.1f} s "
          f"wall = {rate:.0f} equations/s/core; labels {labels}", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=300, help="generated derivations to check (default 300)")
    parser.add_argument("--generate-workers", type=int, default=2, help="processes generating them (default 2)")
    parser.add_argument("--backend", choices=("loky", "dask"), default="loky",
                        help="dask: also check on a 2-worker LocalCluster and print its ratio to loky")
    args = parser.parse_args()
    rates = {}
    synthetic = generated_records(args.generated, args.generate_workers)
    sreprs = [s for r in synthetic for _, s in r["srepr_derivation"]]
    good = sum(latex.parse(derivation.latex_of_srepr(s)).expr == latex.canonicalize(derivation.from_srepr(s))
               for s in sreprs)
    print(f"round trip on {len(synthetic)} generated derivations: {good}/{len(sreprs)} equations "
          f"({100 * good / len(sreprs):.2f}%)")
    for workers in (1, 2):
        rates[("generated", workers)] = measure("generated", synthetic, workers)
    files = released.results_files()
    if files:
        outputs = [r for path in files.values() for r in released.to_predictions(path)]
        for workers in (1, 2):
            rates[("released", workers)] = measure("released outputs", outputs, workers)
    else:
        print(f"released outputs skipped: {released.DOWNLOAD_HINT}")
    name = "released" if files else "generated"
    if args.backend == "dask":
        records = outputs if files else synthetic
        dask_rate = measure(f"{name} outputs" if files else name, records, 2, "dask")
        start = time.perf_counter()
        with parallel.backend("dask", 2):
            pass
        print(f"a 2-worker LocalCluster alone starts and stops in {time.perf_counter() - start:.1f} s")
        print(f"dask/loky wall time for the same {len(records)} derivations on 2 workers: "
              f"{rates[(name, 2)] / dask_rate:.2f}")
    print("summary: " + "; ".join(f"{name} x{workers}: {rate:.0f}" for (name, workers), rate in rates.items()))
    print(f"{rates[(name, 2)]:.0f} equations/s/core ({name} outputs, 2 workers, end to end)")


if __name__ == "__main__":
    main()
