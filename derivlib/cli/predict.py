"""``python -m derivlib predict``: decode every test set with a trained model (stage predict_t5),
writing ``predictions.jsonl`` with the model's outputs and the copy-the-prompt baseline's."""
from __future__ import annotations

from .. import config
from ..models import t5
from .train import add_dataclass_arguments, values_from_args


def add_arguments(p):
    add_dataclass_arguments(p, t5.PredictParams, required=("model", "sets"))


def run(args) -> int:
    params = config.validate(t5.PredictParams, values_from_args(args, t5.PredictParams))
    run_ = t5.start_predict_run(params)
    predictions = t5.predict(run_)
    print(t5.summary_table(predictions).to_string(index=False))
    print(f"predictions: {run_.path('predictions.jsonl')}")
    return 0
