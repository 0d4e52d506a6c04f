"""``python -m derivlib check --results FILE``: symbolic error labels per model and test set."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import check, paper


def add_arguments(p):
    p.add_argument("--results", type=Path, required=True, action="append",
                   help="an authors' results JSON, a derivlib predictions.jsonl, or a run directory "
                        "holding one (repeat for several)")
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="table: readable per-model error table; csv: one row per model x set with "
                        "the columns " + ",".join(("model", "set") + check.COUNT_COLUMNS))
    p.add_argument("--seed", type=int, default=0, help="seed of the numeric check points (default 0)")
    p.add_argument("--details", type=Path, help="also write one JSON line per derivation (labels, reasons) here")


def run(args) -> int:
    records = []
    for path in args.results:
        records.extend(paper.load_predictions(path))
    if not records:
        raise ValueError(f"{', '.join(map(str, args.results))}: no prediction records")
    checks = check.check_records(records, seed=args.seed)
    if args.details:
        from ..config import check_writable, write_jsonl
        check_writable(args.details, "--details")
        write_jsonl(args.details, (c.to_dict() for c in checks))
    table = check.summarize(checks)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        print(check.format_table(table))
    return 0
