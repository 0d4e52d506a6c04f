"""Stage ``predict_t5`` (notebook ``04_predict_t5``): decode every test set with a trained T5,
beside the copy-the-prompt baseline.

The run directory holds ``predictions.jsonl`` (the shared predictions format, read by 06 and
07: the model's records, then the baseline's, per test set), ``summary.csv`` (mean ROUGE-2 and
share of well-formed outputs per model and set) and the figure ``predict_t5_vs_copy_prompt``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from .. import baseline
from ..base.files import read_jsonl, read_text, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..base.vocabulary import SETS
from ..models import t5
from ..presentation import plots
from ..readers.runs import load_set
from . import rundir

STAGE = "predict_t5"
BASELINE_FIGURE = "predict_t5_vs_copy_prompt"
#: Outputs shown below the summary: the first few static items of the model.
N_SAMPLES = 3
#: Weight files a saved model directory holds one of (transformers' names).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclasses.dataclass(frozen=True)
class Params(t5.DecodeConfig):
    """Notebook 04's parameters: the decoding configuration, plus which model and sets, how many
    items, the CPU threads and the label."""

    model: str = "train_t5/smoke"  # run directory of 03_train_t5
    sets: str = "testsets/smoke"  # run directory of 02_testsets (static/VR/EE/AG/SR.jsonl)
    max_items: int = 0  # first N items of each test set; 0 for all
    workers: int = 2  # torch CPU threads (not part of the run key)
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        super().check()
        if self.max_items < 0:
            raise ParameterError("parameter 'max_items' must be >= 0 (0 = every item)")
        if self.workers < 1:
            raise ParameterError(f"parameter 'workers' must be >= 1, got {self.workers}")

    def decode_config(self) -> t5.DecodeConfig:
        return t5.config_of(t5.DecodeConfig, self)


@dataclasses.dataclass
class Result:
    predictions: pd.DataFrame    # one row per (model, set, item): PREDICTION_FIELDS
    summary: pd.DataFrame        # model, set, rouge2 (x100), well_formed (%), items
    samples: list[dict]          # the model's first static outputs (id, prompt, reference, prediction)
    figures: dict[str, Path]     # {"predict_t5_vs_copy_prompt": path}


def open_run(namespace, out=None) -> rundir.Run:
    """Validate 04's parameters and open the run directory (upstream: the model run and the sets
    run). A model run whose saved model lacks its tokenizer is refused here, before decoding."""
    t5.prefer_passive_threads()  # before anything imports torch
    params = from_namespace(Params, namespace)
    model_run = rundir.resolve_run_dir(params.model, "model")
    t5.check_model_dir(model_run / "model")
    check_model_files(model_run)
    sets_dir = rundir.resolve_run_dir(params.sets, "sets")
    if out is not None:
        rundir.refuse_out_over_input(out, model_run, "model")
        rundir.refuse_out_over_input(out, sets_dir, "sets")
    return rundir.start_run(STAGE, params, upstream={"model": model_run, "sets": sets_dir}, out=out)


def trained_model_label(model_run: Path) -> str:
    """The ``model`` label a train_t5 run recorded in its ``summary.json``."""
    path = Path(model_run) / "summary.json"
    try:
        label = json.loads(read_text(path, "the train_t5 run's summary.json")).get("model")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a train_t5 summary ({err})") from None
    if not isinstance(label, str) or not label:
        raise ValueError(f"{path}: lacks the trained model's label (field 'model', text)")
    return label


def check_model_files(model_run: Path) -> None:
    """Fail before decoding when the saved model of a train_t5 run cannot be read: a summary
    without the model's label, a ``config.json`` that is not JSON, no weights file."""
    trained_model_label(model_run)
    model_dir = Path(model_run) / "model"
    try:
        json.loads(read_text(model_dir / "config.json", "the saved model's config.json"))
    except ValueError as err:
        raise ValueError(f"{model_dir / 'config.json'}: not a model configuration ({err})") from None
    weights = [name for name in WEIGHT_FILES if (model_dir / name).is_file() and (model_dir / name).stat().st_size]
    if not weights:
        raise FileNotFoundError(f"{model_dir}: no model weights (expected one of {', '.join(WEIGHT_FILES)})")


def run(run: rundir.Run) -> Result:
    """Decode every test set and write the run's payload; a complete run loads."""
    if run.complete:
        records = read_jsonl(run.path("predictions.jsonl"))
        return _result(run, records, pd.read_csv(run.path("summary.csv")))
    params: Params = run.params
    sets_dir = Path(run.upstream["sets"])
    model_run = Path(run.upstream["model"])
    test_sets = {name: load_set(sets_dir, name) for name in SETS}
    t5.set_cpu_threads(params.workers)
    try:
        model, tokenizer = t5.load_model(model_run / "model")
    except Exception as err:  # noqa: BLE001 -- torch, safetensors, tokenizers and transformers each raise their own
        raise ValueError(f"{model_run / 'model'}: cannot load the saved model ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:300]})") from None
    trained_label = trained_model_label(model_run)
    decoding = params.decode_config()
    records: list[dict] = []
    for name, items in test_sets.items():
        if params.max_items:
            items = items[: params.max_items]
        started = time.perf_counter()
        records += t5.predictions(model, tokenizer, items, name, trained_label, decoding, log=run.log)
        run.log(f"{name}: {len(items)} items decoded in {time.perf_counter() - started:.1f} s")
        records += baseline.predictions(items, name)
    write_jsonl(run.path("predictions.jsonl"), records)
    summary = t5.summary_table(records)
    summary.to_csv(run.path("summary.csv"), index=False)
    run.save_figure(plots.model_vs_baseline(summary), BASELINE_FIGURE)
    run.finish(predictions=len(records))
    return _result(run, records, summary)


def _result(run: rundir.Run, records: list[dict], summary: pd.DataFrame) -> Result:
    samples = [r for r in records if r["set"] == "static" and r["model"] != baseline.MODEL_NAME][:N_SAMPLES]
    return Result(predictions=pd.DataFrame(records), summary=summary, samples=samples, figures=run.figures())
