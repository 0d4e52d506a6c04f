"""``python -m derivlib predict``: decode every test set with a trained model (stage predict_t5),
writing ``predictions.jsonl`` with the model's outputs and the copy-the-prompt baseline's.

Options are notebook 04_predict_t5's parameters; ``--model`` is a train_t5 run directory and
``--out`` a complete predict_t5 run directory, usable as ``score --results``.
"""
from __future__ import annotations

from ..stages import predict_t5 as stage
from . import options


def add_arguments(p):
    options.add_params_arguments(p, stage.Params, required=("model", "sets"))
    options.add_out_argument(p, "predictions.jsonl and the summary table")


def run(args) -> int:
    run_ = stage.open_run(options.values(args, stage.Params), out=args.out)
    result = stage.run(run_)
    print(result.summary.to_string(index=False))
    print(f"predictions: {run_.path('predictions.jsonl')}")
    print(f"run directory: {run_.dir}")
    return 0
