"""``python -m derivlib generate --n N --seed S --workers W [--backend dask [--scheduler ADDRESS]]
[--out DIR]``: a generate run directory holding ``derivations.jsonl`` (with the rejections,
statistics, figures and the verifier's report), usable as the ``--derivations`` of ``build-sets``.

``--backend dask`` without ``--scheduler`` runs on a ``distributed.LocalCluster`` of ``--workers``
processes (loopback, no dashboard); with ``--scheduler tcp://HOST:8786`` on that cluster (workers
with one thread each). The files are the same with either backend and any number of workers."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..base.files import check_writable
from ..stages import generate as stage
from . import options

HELPS = {
    "seed": "stream seed: derivation i is drawn from (seed, i)",
    "workers": "worker processes (loky's, or the dask LocalCluster's); never changes the output",
    "backend": "where the chunks run: loky (local processes) or dask (a distributed cluster)",
    "scheduler": "with --backend dask: the address of a running scheduler (tcp://HOST:8786); "
                 "default: start a LocalCluster of --workers processes",
    "arity_weights": 'weights of arities 0, 1, 2, e.g. \'{"0": 5, "1": 50, "2": 100}\' (the authors\')',
    "operator_weights": "weights of named operators, e.g. '{\"expand\": 0}'; the others keep the authors' values",
    "recency": "p of the cubic recency weight 1 + (p-i-1)^3 of the i-th most recent equation",
    "length_mean": "mean of the target length L in equations, L ~ round(Normal(mean, std))",
    "length_std": "standard deviation of L",
    "min_length": "L is redrawn until min_length <= L <= max_length",
    "max_length": "largest L",
    "max_rejections": "rejected proposals that abandon a derivation",
    "max_latex_length": "steps whose LaTeX has at least this many characters are rejected",
}


def add_arguments(p):
    p.add_argument("--n-derivations", "--n", dest="n_derivations", type=int, required=True,
                   metavar="N", default=argparse.SUPPRESS, help="number of derivations (required)")
    options.add_params_arguments(p, stage.Params, skip=options.NOT_OPTIONS + ("n_derivations",), helps=HELPS)
    options.add_out_argument(p, "derivations.jsonl, rejections.json, statistics, figures, verification")


def run(args) -> int:
    values = options.values(args, stage.Params)
    if "operator_weights" in values:  # a partial mapping: the operators it does not name keep their weights
        values["operator_weights"] = {**stage.Params().operator_weights, **values["operator_weights"]}
    if args.out is not None:
        check_writable(Path(args.out) / "derivations.jsonl", "out")  # before any work
    start = time.time()
    run_ = stage.open_run(values, out=args.out)
    result = stage.run(run_)
    print(f"wrote {len(result.records)} derivations to {run_.path('derivations.jsonl')} and verified "
          f"every step, in {time.time() - start:.1f} s")
    print("rejected proposals: " + ", ".join(f"{k} {v}" for k, v in result.rejections.items()))
    print(result.verification.summary())
    print(f"run directory: {run_.dir}")
    return 0
