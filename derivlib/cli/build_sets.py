"""``python -m derivlib build-sets --derivations FILE --out DIR --seed S [sizes]``"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import config, sets


def add_arguments(p):
    defaults = sets.SetsParams()
    p.add_argument("--derivations", required=True, type=Path,
                   help="derivations JSONL (01_generate's derivations.jsonl) or a run directory holding it")
    p.add_argument("--out", required=True, type=Path, help="sets directory to write (created if missing)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the split hash and of VR/AG draws")
    for name in ("n_train", "n_static", "n_vr", "n_ee", "n_ag", "n_sr"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=sets.PAPER_SIZES[name],
                       help=f"size of {name[2:]} (default {sets.PAPER_SIZES[name]}, the paper's)")
    p.add_argument("--dev-fraction", type=float, default=defaults.dev_fraction,
                   help=f"share of n_train kept as dev (default {defaults.dev_fraction})")
    p.add_argument("--intermediate-policy", default=defaults.intermediate_policy,
                   help="evaluate (authors' rule, default) or random")
    p.add_argument("--workers", type=int, default=1, help="processes for the perturbations (joblib)")
    p.add_argument("--no-verify", action="store_true", help="do not replay perturbed derivations")


def run(args) -> int:
    params = config.validate(sets.SetsParams, {
        "derivations": str(args.derivations), "seed": args.seed, "n_train": args.n_train,
        "dev_fraction": args.dev_fraction, "n_static": args.n_static, "n_vr": args.n_vr,
        "n_ee": args.n_ee, "n_ag": args.n_ag, "n_sr": args.n_sr,
        "intermediate_policy": args.intermediate_policy, "verify": not args.no_verify,
        "workers": args.workers})
    config.check_writable(args.out / "static.jsonl", "out")
    derivations = sets.read_derivations(args.derivations)
    source = args.derivations / "derivations.jsonl" if args.derivations.is_dir() else args.derivations
    # --out becomes a complete run directory, so `train --sets` and `predict --sets` take it
    run = config.start_run_at(args.out, sets.STAGE, params,
                              inputs={"derivations": config.file_digest(source)})
    built = sets.build_sets(derivations, params)
    paths = sets.write_sets(args.out, built)
    config.atomic_write_json(args.out / "counts.json", {"params": dataclasses.asdict(params), **built.counts})
    run.finish(**built.counts)
    print(f"wrote {', '.join(f'{p.name} ({len(built.items[n])})' for n, p in paths.items() if n in built.items)} "
          f"and {paths['combined'].name} to {args.out}")
    return 0
