"""``python -m derivlib verify FILE``: our JSONL or an authors' results JSON."""
from __future__ import annotations

from pathlib import Path

from .. import verify


def add_arguments(p):
    p.add_argument("file", type=Path, help="derivations JSONL or an authors' *_results.json")


def run(args) -> int:
    report = verify.verify_file(args.file)
    print(report.summary())
    return 1 if report.failures else 0
