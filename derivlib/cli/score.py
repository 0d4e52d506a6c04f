"""``python -m derivlib score --results PATH``: mean scores per model x test set x metric."""
from __future__ import annotations

import sys

from .. import metrics, scoring
from .results import add_results_arguments, read_results


def add_arguments(p):
    add_results_arguments(p)
    p.add_argument("--format", choices=("table", "csv"), default="table",
                   help="csv: exactly the columns model,set,metric,mean (mean over items x100)")
    p.add_argument("--latex", action="store_true",
                   help="table format: add derivlib's LaTeX-aware metrics (rouge2_latex, ...)")
    p.add_argument("--sensitivity", action="store_true",
                   help="table format: also print P_m, P_m_abs (x100), ratio_P_m, norm_P_m_abs means")


def run(args) -> int:
    records = read_results(args)
    if not records:  # a complete run may hold none (05 offline): nothing to score, said with its name
        raise ValueError(f"{', '.join(map(str, args.results))}: no prediction records to score")
    if args.format == "csv":
        scores = scoring.score_records(records, metrics.PAPER_METRICS)
        scoring.csv_rows(scores, metrics.PAPER_METRICS).to_csv(
            sys.stdout, index=False, lineterminator="\n")
        return 0
    names = metrics.PAPER_METRICS + (metrics.LATEX_METRICS if args.latex else ())
    scores = scoring.score_records(records, names)
    table = scoring.csv_rows(scores, names).pivot_table(
        index=["model", "metric"], columns="set", values="mean", observed=True, sort=True)
    print("mean score x100 per model, metric and test set")
    print(table.round(2).to_string())
    if args.sensitivity:
        print("\nsensitivity (P_m, P_m_abs x100; ratios unscaled), means over matched items")
        print(scoring.sensitivity_table(scoring.sensitivity_items(records, names)).round(3).to_string())
    return 0
