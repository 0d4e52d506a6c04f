"""``python -m derivlib check --results PATH``: symbolic error labels per model and test set."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import check
from ..base.files import check_writable, write_jsonl
from .results import add_results_arguments, read_results, refuse_input_path


def add_arguments(p):
    add_results_arguments(p)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="table: readable per-model error table; csv: one row per model x set with "
                        "the columns " + ",".join(("model", "set") + check.COUNT_COLUMNS))
    p.add_argument("--seed", type=int, default=0, help="seed of the numeric check points (default 0)")
    p.add_argument("--details", type=Path,
                   help="also write one JSON line per derivation (labels, reasons) here; never one of "
                        "the --results inputs or a file inside an input run directory")


def run(args) -> int:
    if args.details:
        refuse_input_path(args.details, args, "--details")
        check_writable(args.details, "--details")
    records = read_results(args)
    if not records:
        raise ValueError(f"{', '.join(map(str, args.results))}: no prediction records")
    checks = check.check_records(records, seed=args.seed)
    if args.details:
        write_jsonl(args.details, (c.to_dict() for c in checks))
    table = check.summarize(checks)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        print(check.format_table(table))
    return 0
