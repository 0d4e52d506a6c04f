"""``python -m derivlib build-sets --derivations PATH --out DIR [--seed S] [sizes]``: notebook
02_testsets as a command. PATH is a run directory of ``generate`` / 01_generate, a derivations
JSONL, or an authors' results file (its static derivations); ``--out`` becomes a complete sets run
directory that ``train --sets``, ``predict --sets`` and ``prompt --sets`` take as it is."""
from __future__ import annotations

from . import options
from ..stages import testsets as stage

HELPS = {
    "derivations": "run directory of generate / 01_generate, a derivations JSONL, or an authors' results file",
    "n_train": "train + dev pairs (at most); the paper used 15300 (static 3100, VR 2900, EE 3100, AG 3100, SR 1000)",
    "dev_fraction": "share of n_train kept as dev",
    "intermediate_policy": "evaluate (the authors' rule) or random",
    "verify": "keep only perturbed derivations that pass the replay verifier",
    "workers": "processes for the perturbations (or the dask LocalCluster's); the files do not depend on it",
    "backend": "where the perturbations run: loky (local processes) or dask (a distributed cluster); same files",
    "scheduler": "with --backend dask: the address of a running scheduler (tcp://HOST:8786); "
                 "default: start a LocalCluster of --workers processes",
}


def add_arguments(p):
    options.add_params_arguments(p, stage.Params, required=("derivations",), helps=HELPS)
    options.add_out_argument(p, "train, dev, static, VR, EE, AG, SR and test_combined .jsonl")


def run(args) -> int:
    # A command's run is never published under a profile name.
    run_ = stage.open_run({**options.values(args, stage.Params), "profile": ""}, out=args.out)
    result = stage.run(run_)
    built = ", ".join(f"{name}.jsonl ({len(items)})" for name, items in result.items.items())
    print(f"wrote {built} and test_combined.jsonl to {run_.dir}")
    return 0
