"""``python -m derivlib perturb --kind K --in FILE [--out DIR]``: one perturbation (VR, EE, AG, SR)
of a file of static items. ``--out`` becomes a complete run directory holding ``<K>.jsonl`` (the
perturbed items, same ids as their static items), keyed by the parameters and the input file's
digest; it may not hold the input file."""
from __future__ import annotations

from . import options
from .. import perturb
from ..stages import testsets as stage

HELPS = {
    "kind": f"perturbation: {', '.join(perturb.KINDS)}",
    "seed": "seed of the VR renamings and the AG steps",
    "verify": "keep only perturbed derivations that pass the replay verifier",
}


def add_arguments(p):
    options.add_params_arguments(p, stage.PerturbParams, required=("kind",), skip=("input",), helps=HELPS)
    p.add_argument("--in", dest="input", required=True,
                   help="static items: JSONL with prompt, derivation, srepr_derivation (e.g. a sets "
                        "directory's static.jsonl; items without a prompt get the authors' rule's), "
                        "or an authors' results JSON")
    options.add_out_argument(p, "<K>.jsonl")


def run(args) -> int:
    result = stage.perturb_file(options.values(args, stage.PerturbParams), out=args.out)
    summary = ", ".join(f"{n} {reason}" for reason, n in result.skipped.items()) or "none"
    print(f"{args.kind}: wrote {len(result.items)} of {result.read} items to {result.path}; skipped: {summary}")
    return 0
