"""``python -m derivlib predict``: decode every test set with a trained model, writing
``predictions.jsonl``. A train_t5 run decodes with beams and the copy-the-prompt baseline beside it
(stage predict_t5, notebook 04); a train_lora run decodes its adapter greedily with the zero-shot
template it was trained on (stage prompt_llm, ``backend transformers``).

Options are notebook 04_predict_t5's parameters; ``--model`` is a train_t5 or train_lora run
directory and ``--out`` a complete run directory, usable as ``score --results``.
"""
from __future__ import annotations

from pathlib import Path

from ..stages import predict_t5 as stage
from ..stages import prompt_llm, rundir, train_lora
from . import options


def add_arguments(p):
    options.add_params_arguments(p, stage.Params, required=("model", "sets"))
    options.add_out_argument(p, "predictions.jsonl and the summary table")


def run(args) -> int:
    values = options.values(args, stage.Params)
    if rundir.stage_of(values["model"]) == train_lora.STAGE:
        return _predict_lora(values, args.out)
    run_ = stage.open_run(values, out=args.out)
    result = stage.run(run_)
    print(result.summary.to_string(index=False))
    print(f"predictions: {run_.path('predictions.jsonl')}")
    print(f"run directory: {run_.dir}")
    return 0


def _predict_lora(values: dict, out: Path | None) -> int:
    unsupported = {"num_beams": 1, "repetition_penalty": 1.0, "balanced_decoding": False}
    for name, only in unsupported.items():
        if name in values and values[name] != only:
            raise ValueError(f"--{name.replace('_', '-')}: a LoRA adapter ({values['model']}) decodes greedily; "
                             f"only {only} is supported")
    local = {"model": values["model"], "sets": values["sets"], "backend": "transformers", "n_shots": 0,
             "profile": ""}
    renamed = {"max_new_tokens": "max_tokens", "max_items": "max_items", "batch_size": "batch_size",
               "workers": "workers"}
    local.update({new: values[old] for old, new in renamed.items() if old in values})
    run_ = prompt_llm.open_run(local, out=out)
    result = prompt_llm.run(run_)
    print(result.summary_table().to_string())
    print(f"predictions: {run_.path('predictions.jsonl')}")
    print(f"run directory: {run_.dir}")
    return 0
