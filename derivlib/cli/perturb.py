"""``python -m derivlib perturb --kind VR --in static.jsonl --out VR.jsonl``"""
from __future__ import annotations

from pathlib import Path

from .. import config, perturb


def add_arguments(p):
    p.add_argument("--kind", required=True, help=f"perturbation: {', '.join(perturb.KINDS)}")
    p.add_argument("--in", dest="input", required=True, type=Path,
                   help="static items: JSONL with prompt, derivation, srepr_derivation (e.g. a sets "
                        "directory's static.jsonl), or an authors' results JSON")
    p.add_argument("--out", required=True, type=Path, help="perturbed items (JSONL), same ids as the input")
    p.add_argument("--seed", type=int, default=0, help="seed of VR renamings and AG steps (default 0)")
    p.add_argument("--no-verify", action="store_true",
                   help="keep perturbed derivations without replaying them through the verifier")


def run(args) -> int:
    perturb.check_kind(args.kind)
    config.check_writable(args.out, "out")
    items = perturb.read_items(args.input)
    options = {"verify": None} if args.no_verify else {}
    out, skipped = perturb.perturb_records(items, args.kind, args.seed, **options)
    config.write_jsonl(args.out, out)
    summary = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none"
    print(f"{args.kind}: wrote {len(out)} of {len(items)} items to {args.out}; skipped: {summary}")
    return 0
