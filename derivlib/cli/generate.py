"""``python -m derivlib generate --n N --seed S --workers W --out FILE``."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import generate


def add_arguments(p):
    p.add_argument("--n", type=int, required=True, help="number of derivations")
    p.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", type=Path, required=True, help="output JSONL file")
    p.add_argument("--arity-weights", type=json.loads, default=None, metavar="JSON",
                   help='e.g. \'{"0": 5, "1": 50, "2": 100}\' (the authors\' values)')
    p.add_argument("--operator-weights", type=json.loads, default=None, metavar="JSON",
                   help='weights of named operators, e.g. \'{"expand": 0}\'; others keep the authors\' values')
    defaults = generate.GeneratorConfig()
    for name, kind, meaning in LENGTH_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name),
                       help=f"{meaning} (default {getattr(defaults, name)}, the authors')")


LENGTH_OPTIONS = (
    ("length_mean", float, "mean of the target length L in equations, L ~ round(Normal(mean, std))"),
    ("length_std", float, "standard deviation of L"),
    ("min_length", int, "L is redrawn until min_length <= L <= max_length"),
    ("max_length", int, "largest L"),
    ("max_latex_length", int, "steps whose LaTeX has at least this many characters are rejected"),
)


def run(args) -> int:
    values = {}
    if args.arity_weights is not None:
        values["arity_weights"] = {str(k): v for k, v in args.arity_weights.items()}
    if args.operator_weights is not None:
        values["operator_weights"] = {**generate.GeneratorConfig().operator_weights, **args.operator_weights}
    values.update({name: getattr(args, name) for name, _, _ in LENGTH_OPTIONS})
    config = generate.make_config(**values)
    start, cpu = time.time(), time.process_time()
    count, rejections = generate.write_derivations(args.out, args.n, args.seed, args.workers, config)
    print(f"wrote {count} derivations to {args.out} in {time.time() - start:.1f} s")
    print("rejected proposals: " + ", ".join(f"{k} {v}" for k, v in rejections.items()))
    return 0
