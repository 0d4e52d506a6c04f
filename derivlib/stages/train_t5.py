"""Stage ``train_t5`` (notebook ``03_train_t5``): fine-tune a T5-family model on a sets run.

The run directory holds ``model/`` (weights and tokenizer of the best dev ROUGE-2 checkpoint),
``history.json`` (the Trainer's log), ``summary.json`` (counts, losses, precision, torch
threads, device), ``dev_samples.jsonl`` and the loss-curve figure ``train_t5_loss``. An
interrupted run resumes from its last checkpoint when it is opened again.

Several processes (``accelerate launch --multi_gpu --num_processes N -m derivlib train ...``, or
``torchrun``; gloo on CPUs, NCCL on GPUs) train one model with the Trainer's data parallelism:
rank 0 opens the run directory first and is the only one that writes, locks and finishes it; the
other ranks compute in the same directory (the Trainer's checkpoints are shared) and write
nothing of the run's own.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..base.files import atomic_write_json, read_jsonl, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..base.vocabulary import SET_FILES
from ..models import t5
from ..presentation import plots
from ..readers.runs import load_set
from . import rundir

STAGE = "train_t5"
LOSS_FIGURE = "train_t5_loss"


@dataclasses.dataclass(frozen=True)
class Params(t5.TrainConfig):
    """Notebook 03's parameters: the training configuration, plus where the sets come from, the
    CPU threads and the label."""

    sets: str = "testsets/smoke"  # run directory of 02_testsets (train.jsonl, dev.jsonl, ...)
    workers: int = 2  # torch CPU threads (not part of the run key)
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        super().check()
        if self.workers < 1:
            raise ParameterError(f"parameter 'workers' must be >= 1, got {self.workers}")

    def train_config(self) -> t5.TrainConfig:
        return t5.config_of(t5.TrainConfig, self)


@dataclasses.dataclass
class Result:
    summary: dict                # counts, best checkpoint, dev losses, precision, torch threads, device
    history: list[dict]          # the Trainer's log_history: training loss per logging step, dev per evaluation
    samples: list[dict]          # a few dev items decoded greedily (id, prompt, reference, prediction)
    model_dir: Path              # model/ of the complete run: what 04_predict_t5 decodes with
    figures: dict[str, Path]     # {"train_t5_loss": path}


def open_run(namespace, out=None) -> rundir.Run:
    """Validate 03's parameters (a notebook's namespace or a command's values) and open the run
    directory (upstream: the sets run). A model that cannot be loaded is refused here."""
    t5.prefer_passive_threads()  # before anything imports torch
    params = from_namespace(Params, namespace)
    sets_dir = rundir.resolve_run_dir(params.sets, "sets")
    if out is not None:
        rundir.refuse_out_over_input(out, sets_dir, "sets")
    t5.check_model_source(params.model)
    state = t5.distributed_state()  # after prefer_passive_threads: it imports torch
    with state.main_process_first():  # rank 0 opens (and prepares) the directory before the others look
        return rundir.start_run(STAGE, params, upstream={"sets": sets_dir}, out=out,
                                writer=state.is_main_process)


def run(run: rundir.Run) -> Result:
    """Train (or resume, or load when the run is complete) the run's model."""
    if run.complete:
        return _load(run)
    params: Params = run.params
    sets_dir = Path(run.upstream["sets"])
    train_items = load_set(sets_dir, "train")
    dev_items = load_set(sets_dir, "dev")
    # the dev and test texts, which no sub-derivation may repeat (no leak through augmentation)
    held_out = [text for name in SET_FILES if name != "train" for item in load_set(sets_dir, name)
                for text in (item["prompt"], item["derivation"])] if params.sub_derivations else []
    t5.set_cpu_threads(params.workers)
    trained = t5.train(train_items, dev_items, run.dir, params.train_config(), held_out_texts=held_out,
                       log=run.log)
    if not run.writer:  # another rank of a distributed training: rank 0 writes the run
        return Result(summary=trained.summary, history=trained.history, samples=trained.samples,
                      model_dir=run.final / "model", figures={})
    atomic_write_json(run.path("summary.json"), trained.summary)
    write_jsonl(run.path("dev_samples.jsonl"), trained.samples)
    run.save_figure(plots.loss_curve(trained.history), LOSS_FIGURE)
    summary = trained.summary
    rundir.record_precision(run, summary.get("precision"), summary.get("torch_threads"), summary.get("device"))
    run.finish(train_items=summary["train_items"], dev_items=summary["dev_items"], steps=summary["steps"])
    return Result(summary=summary, history=trained.history, samples=trained.samples,
                  model_dir=run.path("model"), figures=run.figures())


def _load(run: rundir.Run) -> Result:
    return Result(summary=json.loads(run.path("summary.json").read_text()),
                  history=json.loads(run.path("history.json").read_text()),
                  samples=read_jsonl(run.path("dev_samples.jsonl")),
                  model_dir=run.path("model"), figures=run.figures())
