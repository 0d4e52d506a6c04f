"""``python -m derivlib verify FILE``: a derivations JSONL, a generate run directory or an
authors' results JSON; exit status 1 when a step fails."""
from __future__ import annotations

from pathlib import Path

from .. import verify
from ..readers import runs


def add_arguments(p):
    p.add_argument("file", type=Path, help="derivations JSONL, a generate run directory, or an authors' *_results.json")


def run(args) -> int:
    report = verify.verify_derivations(runs.iter_steps(args.file), str(args.file))
    print(report.summary())
    return 1 if report.failures else 0
