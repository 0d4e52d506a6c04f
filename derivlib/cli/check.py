"""``python -m derivlib check --results PATH [--workers N] [--backend dask [--scheduler ADDRESS]]``:
symbolic error labels per model and test set."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import check
from ..base import parallel
from ..base.files import check_writable, write_jsonl
from .results import add_results_arguments, read_results, refuse_input_path


def add_arguments(p):
    add_results_arguments(p)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="table: readable per-model error table; csv: one row per model x set with "
                        "the columns " + ",".join(("model", "set") + check.COUNT_COLUMNS))
    p.add_argument("--seed", type=int, default=0, help="seed of the numeric check points (default 0)")
    p.add_argument("--details", type=Path,
                   help="also write one JSON line per derivation (labels, step ratings, first wrong step, "
                        "reasons) here; never one of the --results inputs or a file inside an input run "
                        "directory")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1); the labels are the same for any number. Each step is "
                        f"limited to --time-limit seconds and each worker to --memory-limit MiB; 0 checks in "
                        "this process with neither limit (structural budgets only)")
    p.add_argument("--backend", choices=parallel.BACKENDS, default="loky",
                   help="where the workers run: loky (processes of this machine; default) or dask (a "
                        "LocalCluster of --workers processes, or the cluster at --scheduler); same labels")
    p.add_argument("--scheduler", default="", metavar="ADDRESS",
                   help="with --backend dask: a running scheduler (tcp://HOST:8786) whose workers run one "
                        "thread each and are not daemonic (DASK_DISTRIBUTED__WORKER__DAEMON=False)")
    p.add_argument("--time-limit", type=float, default=check.TIME_LIMIT,
                   help=f"seconds a worker may spend on one equation before it is killed and the equation "
                        f"labelled timeout (default {check.TIME_LIMIT:g})")
    p.add_argument("--memory-limit", type=int, default=check.MEMORY_LIMIT_MB, metavar="MIB",
                   help="address space each worker may add to its start-up size, in MiB (Linux; default "
                        f"{check.MEMORY_LIMIT_MB}); past it an equation is labelled too_large")


def run(args) -> int:
    if args.details:
        refuse_input_path(args.details, args, "--details")
        check_writable(args.details, "--details")
    records = read_results(args)
    if not records:
        raise ValueError(f"{', '.join(map(str, args.results))}: no prediction records")
    checks = check.check_records(records, seed=args.seed, workers=args.workers, time_limit=args.time_limit,
                                 memory_limit_mb=args.memory_limit, backend=args.backend, scheduler=args.scheduler,
                                 log=lambda line: print(line, file=sys.stderr))
    if args.details:
        write_jsonl(args.details, (c.to_dict() for c in checks))
    table = check.summarize(checks)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        print(check.format_table(table))
    return 0
