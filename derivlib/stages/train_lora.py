"""Stage ``train_lora`` (notebook ``06_train_lora``, command ``train`` for decoder-only models):
LoRA fine-tuning of a decoder-only causal LM (:mod:`derivlib.models.decoder`, peft) on a sets
run, as the authors' later code fine-tunes Llama-3.1-8B, then zero-shot decoding of its test sets.

The run directory holds ``adapter/`` (the best dev ROUGE-2 adapter, with ``base_model.json``
naming the base weights it belongs to), ``history.json``, ``summary.json``, ``dev_samples.jsonl``,
the loss-curve figure ``train_lora_loss``, and ``predictions.jsonl`` / ``usage.json`` of the test
sets decoded zero-shot, so 07 and 08 read it like any predictions run. ``predict --model RUN``
decodes other sets with the same adapter. An interrupted run resumes from its last checkpoint;
decoded answers live in the response cache (:mod:`derivlib.models.local`), so a run killed while
decoding decodes only the rest.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .. import fewshot
from ..base.files import atomic_write_json, read_jsonl, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..models import decoder, llm, local, t5
from ..presentation import plots
from ..readers import runs
from . import prompt_llm, rundir

STAGE = "train_lora"
LOSS_FIGURE = "train_lora_loss"


@dataclasses.dataclass(frozen=True)
class Params(decoder.TrainConfig):
    """Notebook 06's parameters: the LoRA training configuration, plus the sets, how the test sets
    are decoded afterwards, the CPU threads and the label."""

    sets: str = "testsets/smoke"  # run directory of 02_testsets (train.jsonl, dev.jsonl, static.jsonl, ...)
    max_items: int = 0  # test items decoded after training: the first N static items and their perturbed versions; 0 for all
    max_new_tokens: int = 256  # longest decoded answer, in tokens
    decode_batch_size: int = 8  # prompts decoded together after training
    workers: int = 2  # torch CPU threads (not part of the run key)
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        super().check()
        for name in ("max_items",):
            if getattr(self, name) < 0:
                raise ParameterError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")
        for name in ("max_new_tokens", "decode_batch_size", "workers"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")

    def train_config(self) -> decoder.TrainConfig:
        return t5.config_of(decoder.TrainConfig, self)


@dataclasses.dataclass
class Result:
    summary: dict             # counts, best epoch, dev ROUGE-2 per epoch, tokens/s, device
    history: list[dict]       # the Trainer's log_history
    samples: list[dict]       # dev items decoded after training (id, prompt, reference, prediction)
    adapter_dir: Path         # adapter/ of the complete run: what predict and prompt --backend transformers load
    decoded: prompt_llm.Result  # the test sets decoded zero-shot
    figures: dict[str, Path]  # {"train_lora_loss": path}


def open_run(namespace, out=None) -> rundir.Run:
    """Validate 06's parameters and open the run directory (upstream: the sets run; input: the
    base model's identity). A model that is not a decoder-only causal LM is refused here."""
    t5.prefer_passive_threads()  # before anything imports torch
    params = from_namespace(Params, namespace)
    sets_dir = rundir.resolve_run_dir(params.sets, "sets")
    if out is not None:
        rundir.refuse_out_over_input(out, sets_dir, "sets")
    decoder.check_hardware(params)
    source = decoder.resolve(params.model)
    return rundir.start_run(STAGE, params, upstream={"sets": sets_dir}, out=out,
                            inputs={"model": local.identity_digest(source)})


def run(run: rundir.Run, *, cache_dir: Path | str | None = None) -> Result:
    """Train (or resume, or load when the run is complete) the adapter, then decode the test sets."""
    params: Params = run.params
    sets_dir = Path(run.upstream["sets"])
    cache = llm.ResponseCache(cache_dir or prompt_llm.default_cache_dir())
    if run.complete:
        return Result(summary=json.loads(run.path("summary.json").read_text()),
                      history=json.loads(run.path("history.json").read_text()),
                      samples=read_jsonl(run.path("dev_samples.jsonl")), adapter_dir=run.path("adapter"),
                      decoded=prompt_llm.load_result(run.dir),
                      figures=run.figures())
    t5.set_cpu_threads(params.workers)
    try:
        trained = decoder.train_lora(runs.load_set(sets_dir, "train"), runs.load_set(sets_dir, "dev"), run.dir,
                                     params.train_config(), user_message=zero_shot_message,
                                     parse_answer=fewshot.extract_derivation, log=run.log)
        atomic_write_json(run.path("summary.json"), trained.summary)
        atomic_write_json(run.path("history.json"), trained.history)
        write_jsonl(run.path("dev_samples.jsonl"), trained.samples)
        run.save_figure(plots.loss_curve(trained.history), LOSS_FIGURE)
        decoded = _decode(params, trained.adapter_dir, sets_dir, run.dir, cache, run.log)
    except BaseException:
        # checkpoints and decoded answers are kept; the partial directory stays for a rerun, unlocked
        run.release()
        raise
    summary = trained.summary
    rundir.record_precision(run, summary.get("precision"), summary.get("torch_threads"), summary.get("device"))
    run.finish(steps=trained.summary.get("steps"), predictions=len(decoded.predictions))
    return Result(summary=trained.summary, history=trained.history, samples=trained.samples,
                  adapter_dir=run.path("adapter"), decoded=decoded, figures=run.figures())


def zero_shot_message(item: dict) -> str:
    """The user turn of a training pair: the zero-shot template, as the test sets are asked."""
    return fewshot.render_prompt([], item["prompt"])


def _decode(params: Params, adapter_dir: Path, sets_dir: Path, out_dir: Path, cache: llm.ResponseCache,
            log) -> prompt_llm.Result:
    """The test sets put to the fine-tuned model with the zero-shot template it was trained on."""
    decode = prompt_llm.Params(sets=str(sets_dir), model=str(adapter_dir), backend="transformers", n_shots=0,
                               max_items=params.max_items, max_tokens=params.max_new_tokens,
                               batch_size=params.decode_batch_size, chat_template=params.chat_template,
                               workers=params.workers, seed=params.seed, profile="")
    return prompt_llm.prompt_sets(decode, sets_dir, Path(out_dir), cache, log)
