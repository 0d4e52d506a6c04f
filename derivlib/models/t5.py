"""Fine-tuning T5-family models on derivations (stage ``train_t5``) and decoding (``predict_t5``).

Training is transformers' ``Seq2SeqTrainer``: labels are the target's token ids ending in
``</s>``, and the model shifts them right itself (the authors shifted once more, so their model
never learned the first token, PAPER.md §4); batches are padded dynamically
(``DataCollatorForSeq2Seq``) and grouped by length; dev ROUGE-2 (``derivlib.metrics``) picks the
best checkpoint; an interrupted run resumes from its last checkpoint. The same code runs on CPU
and on a CUDA GPU (bf16 where the GPU supports it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from .. import augment, baseline, config
from ..config import ParameterError
from ..derivation import JOIN, split_equations
from . import tokenization

# OpenMP threads that spin while waiting ran training 6-10x slower on a 2-core machine shared with
# other processes (20 steps: 112 s spinning, 17 s passive, same losses); passive waiting must be
# chosen before torch loads its OpenMP runtime, hence at import. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SCRATCH = "scratch"
SET_FILES = ("train", "dev", "static", "VR", "EE", "AG", "SR")
TEST_SETS = ("static", "VR", "EE", "AG", "SR")
REQUIRED_FIELDS = ("id", "prompt", "derivation")
#: "auto": bf16 mixed precision where the hardware computes in bf16 (a CUDA GPU that supports
#: it, or a CPU with AVX-512 BF16/AMX, where it measured 1.4x faster training), else fp32.
PRECISIONS = ("auto", "bf16", "fp32")
#: Opt-in to hub downloads; by default a hub id must already be in the local cache.
DOWNLOAD_ENV = "DERIVLIB_HUB_DOWNLOAD"


# ----------------------------------------------------------------------------------- parameters

@dataclasses.dataclass(frozen=True)
class TrainParams:
    sets: str = "testsets/smoke"
    profile: str = "smoke"
    model: str = SCRATCH
    vocab_size: int = 1000
    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 8
    dropout: float = 0.0
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 1e-3
    position_bias_learning_rate: float = 0.1
    optimizer: str = "adamw_torch"
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.05
    max_length: int = 1024
    max_train_items: int = 0
    sub_derivations: bool = True
    max_dev_items: int = 20
    eval_num_beams: int = 1
    eval_repetition_penalty: float = 1.0
    checkpoint_every: int = 0
    length_grouping: bool = True
    precision: str = "auto"
    log_every: int = 20
    seed: int = 42
    workers: int = 2

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ParameterError(f"parameter 'precision' must be one of {', '.join(PRECISIONS)}, "
                                 f"got {self.precision!r}")
        positive = ("vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "epochs",
                    "batch_size", "max_length", "eval_num_beams", "log_every", "workers")
        for name in positive:
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("max_train_items", "max_dev_items", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ParameterError(f"parameter {name!r} must be >= 0 (0 = all / per epoch)")
        if self.learning_rate <= 0:
            raise ParameterError(f"parameter 'learning_rate' must be > 0, got {self.learning_rate}")
        if self.position_bias_learning_rate < 0:
            raise ParameterError("parameter 'position_bias_learning_rate' must be >= 0 (0 = the same "
                                 f"as 'learning_rate'), got {self.position_bias_learning_rate}")
        if not 0 <= self.dropout < 1:
            raise ParameterError(f"parameter 'dropout' must be in [0, 1), got {self.dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ParameterError(f"parameter 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.d_model % self.num_heads:
            raise ParameterError(f"parameter 'd_model' ({self.d_model}) must be a multiple of 'num_heads' ({self.num_heads})")


@dataclasses.dataclass(frozen=True)
class PredictParams:
    model: str = "train_t5/smoke"
    sets: str = "testsets/smoke"
    profile: str = "smoke"
    num_beams: int = 1
    repetition_penalty: float = 1.0
    max_new_tokens: int = 704
    batch_size: int = 32
    max_items: int = 0
    balanced_decoding: bool = False
    workers: int = 2

    def check(self) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size", "workers"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        if self.max_items < 0:
            raise ParameterError("parameter 'max_items' must be >= 0 (0 = every item)")
        if self.repetition_penalty <= 0:
            raise ParameterError("parameter 'repetition_penalty' must be > 0")


# ----------------------------------------------------------------------------------- data

def load_set(sets_dir: Path | str, name: str, required: tuple[str, ...] = REQUIRED_FIELDS) -> list[dict]:
    """The items of ``<sets_dir>/<name>.jsonl``; a missing file or field is an error naming it."""
    path = Path(sets_dir) / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (a sets directory holds {', '.join(SET_FILES)} .jsonl)")
    items = config.read_jsonl(path)
    if not items:
        raise ValueError(f"{path} holds no items")
    for number, item in enumerate(items, 1):
        absent = [f for f in required if not isinstance(item.get(f), str) or not item.get(f)]
        if absent:
            raise ValueError(f"{path}: item {number} (id {item.get('id', '?')!r}) lacks field(s) "
                             f"{', '.join(absent)} (required: {', '.join(required)})")
    return items


def set_cpu_threads(workers: int) -> None:
    """Torch's CPU threads. ``workers`` is not part of the run key: the outputs do not depend on it
    (same losses with 1 or 2 threads)."""
    import torch

    torch.set_num_threads(workers)


def _allow_download() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "") == "1"


def check_model_source(model: str) -> None:
    """Fail at once, before any data is read, when ``model`` is neither a local directory nor a
    hub id in the local cache (downloads happen only with DERIVLIB_HUB_DOWNLOAD=1)."""
    if model == SCRATCH:
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, local_files_only=not _allow_download())
    except (OSError, ValueError) as err:
        where = "local directory" if Path(model).exists() else "hub id in the local Hugging Face cache"
        raise ParameterError(
            f"parameter 'model': cannot load {model!r} as a T5 model ({where}); it must be a local "
            f"model directory or a cached hub id (fetch one with `hf download {model}`, or set "
            f"{DOWNLOAD_ENV}=1 to allow downloads). Cause: {str(err).splitlines()[0]}") from None


def model_label(model: str) -> str:
    """The ``model`` field of predictions: ``t5-scratch`` or the pretrained model's name."""
    return "t5-scratch" if model == SCRATCH else Path(model.rstrip("/")).name


# ----------------------------------------------------------------------------------- runs

def open_train_run(namespace: Mapping[str, Any]) -> config.Run:
    """Validate 03_train_t5's parameters and open its run directory (upstream: the sets)."""
    params = config.from_namespace(TrainParams, namespace)
    return start_train_run(params)


def start_train_run(params: TrainParams) -> config.Run:
    sets_dir = config.resolve_run_dir(params.sets, "sets")
    return config.start_run("train_t5", params, upstream={"sets": sets_dir})


def open_predict_run(namespace: Mapping[str, Any]) -> config.Run:
    """Validate 04_predict_t5's parameters and open its run directory (upstream: model, sets)."""
    params = config.from_namespace(PredictParams, namespace)
    return start_predict_run(params)


def start_predict_run(params: PredictParams) -> config.Run:
    model_dir = config.resolve_run_dir(params.model, "model")
    sets_dir = config.resolve_run_dir(params.sets, "sets")
    return config.start_run("predict_t5", params, upstream={"model": model_dir, "sets": sets_dir})


# ----------------------------------------------------------------------------------- model

def build_model_and_tokenizer(params: TrainParams, texts: list[str]):
    """A from-scratch T5 with a LaTeX tokenizer trained on ``texts``, or a pretrained T5 whose
    vocabulary is extended with the characters of ``texts`` it cannot encode."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration, set_seed

    set_seed(params.seed)  # the initial weights of a fresh model come from torch's global generator
    if params.model == SCRATCH:
        tokenizer = tokenization.train_latex_tokenizer(texts, params.vocab_size)
        model_config = T5Config(
            vocab_size=len(tokenizer), d_model=params.d_model, d_ff=params.d_ff,
            d_kv=params.d_model // params.num_heads, num_layers=params.num_layers,
            num_decoder_layers=params.num_layers, num_heads=params.num_heads,
            feed_forward_proj="gated-gelu", tie_word_embeddings=True, dropout_rate=params.dropout,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id)
        return T5ForConditionalGeneration(model_config), tokenizer, []
    local_only = not _allow_download()
    tokenizer = AutoTokenizer.from_pretrained(params.model, local_files_only=local_only)
    tokenizer, added = tokenization.add_missing_characters(tokenizer, texts)
    model = T5ForConditionalGeneration.from_pretrained(params.model, local_files_only=local_only)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer, added


def _encode(tokenizer, items: list[dict], max_length: int):
    """Tokenized items (input_ids, labels, length) and how many exceeded ``max_length``."""
    sources = tokenizer([it["prompt"] for it in items])["input_ids"]
    targets = tokenizer(text_target=[it["derivation"] for it in items])["input_ids"]
    rows, too_long = [], 0
    for item, source, target in zip(items, sources, targets):
        if len(source) > max_length or len(target) > max_length:
            too_long += 1
            continue
        rows.append({"id": item["id"], "input_ids": source, "labels": target,
                     "length": len(source) + len(target)})
    return rows, too_long


def _generation_config(tokenizer, num_beams: int, repetition_penalty: float, max_new_tokens: int):
    from transformers import GenerationConfig

    # max_length counts the decoder start token; max_new_tokens would clash with the default max_length
    return GenerationConfig(num_beams=num_beams, repetition_penalty=repetition_penalty,
                            max_length=max_new_tokens + 1, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.pad_token_id)


def dev_rouge2_metric(tokenizer):
    """The Trainer's ``compute_metrics``: mean ROUGE-2 of the generated dev outputs against their
    own labels, decoded. The references come with each prediction rather than from the dev
    file's order because the Trainer reorders evaluation batches by length when training
    batches are length-grouped (transformers 5); matching by position scored every output
    against another item's reference, and picked checkpoints on noise."""
    import numpy as np

    def decode(ids):
        return tokenizer.batch_decode(np.where(ids < 0, tokenizer.pad_token_id, ids), skip_special_tokens=True)

    def compute_metrics(prediction):
        outputs, references = decode(prediction.predictions), decode(prediction.label_ids)
        return {"rouge2": float(np.mean(rouge2(outputs, references)))}

    return compute_metrics


def rouge2(predictions: list[str], references: list[str]) -> list[float]:
    """Per-pair ROUGE-2 F-measure, paper-exact (``derivlib.metrics``)."""
    from .. import metrics

    return [float(x) for x in metrics.score_pairs(predictions, references, metrics=("rouge",))["rouge"]]


# ----------------------------------------------------------------------------------- progress

def _progress_callback(run: config.Run):
    from transformers import TrainerCallback

    class RunLogCallback(TrainerCallback):
        """One line per logging step to the notebook and the run's log.txt: loss and tokens/s.

        Tokens are real (non-padding) input and target tokens, counted by the Trainer
        (``include_num_input_tokens_seen``); padding is work, not progress.
        """

        def __init__(self):
            self.last_time = None
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time, self.last_tokens = time.perf_counter(), state.num_input_tokens_seen
            run.log(f"training: {state.max_steps} steps, resuming at step {state.global_step}"
                    if state.global_step else f"training: {state.max_steps} steps")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                now = time.perf_counter()
                rate = (state.num_input_tokens_seen - self.last_tokens) / max(now - self.last_time, 1e-9)
                self.last_time, self.last_tokens = now, state.num_input_tokens_seen
                run.log(f"step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f}): "
                        f"loss {logs['loss']:.4f}, {rate:,.0f} input tok/s")
            if "eval_loss" in logs:
                run.log(f"step {state.global_step} (epoch {state.epoch:.2f}): dev loss "
                        f"{logs['eval_loss']:.4f}, dev ROUGE-2 {100 * logs.get('eval_rouge2', float('nan')):.2f}")

    return RunLogCallback()


# ----------------------------------------------------------------------------------- training

@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]
    summary: dict
    samples: list[dict]

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def load_model(run_dir: Path | str, device: str | None = None):
    """The trained model and tokenizer of a train_t5 run directory, in eval mode."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    model_dir = Path(run_dir) / "model"
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} does not exist: {run_dir} is not a train_t5 run")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = T5ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def _load_result(run: config.Run) -> TrainResult:
    return TrainResult(run_dir=run.dir, history=json.loads(run.path("history.json").read_text()),
                       summary=json.loads(run.path("summary.json").read_text()),
                       samples=config.read_jsonl(run.path("dev_samples.jsonl")))


def train(run: config.Run, callbacks: list | None = None, n_samples: int = 5) -> TrainResult:
    """Train (or resume, or load if complete) the run's model; returns history, summary, samples.

    Every input check (model source, sets, fields, lengths) happens before the first step.
    ``callbacks`` are extra ``TrainerCallback`` objects (tests use one to interrupt a run).
    """
    if run.complete:
        return _load_result(run)
    params: TrainParams = run.params
    check_model_source(params.model)
    sets_dir = Path(run.upstream["sets"])
    train_items = load_set(sets_dir, "train")
    dev_items = load_set(sets_dir, "dev")
    if params.max_train_items:
        train_items = train_items[: params.max_train_items]
    augmented = {}
    if params.sub_derivations:
        held_out = [t for name in SET_FILES if name != "train"
                    for it in load_set(sets_dir, name) for t in (it["prompt"], it["derivation"])]
        try:
            train_items, augmented = augment.with_sub_derivations(train_items, held_out)
        except ValueError as err:
            raise ParameterError(f"parameter 'sub_derivations': {err}") from None
    if params.max_dev_items:
        dev_items = dev_items[: params.max_dev_items]

    import torch
    from datasets import Dataset

    set_cpu_threads(params.workers)
    from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                              Seq2SeqTrainingArguments, T5ForConditionalGeneration)
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = run.path("checkpoints")
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    texts = [t for it in train_items for t in (it["prompt"], it["derivation"])]
    if last is not None:  # the tokenizer and vocabulary were fixed when the run started
        tokenizer = AutoTokenizer.from_pretrained(last, local_files_only=True)
        model = T5ForConditionalGeneration.from_pretrained(last, local_files_only=True)
        added = json.loads(run.path("added_tokens.json").read_text())
    else:
        model, tokenizer, added = build_model_and_tokenizer(params, texts)
        config.atomic_write_json(run.path("added_tokens.json"), added)

    train_rows, train_too_long = _encode(tokenizer, train_items, params.max_length)
    dev_rows, dev_too_long = _encode(tokenizer, dev_items, params.max_length)
    if not train_rows:
        raise ParameterError(f"parameter 'max_length' ({params.max_length}) is shorter than every "
                             f"training example (prompt or target, in tokens)")
    if not dev_rows:
        raise ParameterError(f"parameter 'max_length' ({params.max_length}) is shorter than every dev example")
    run.log(f"{len(train_rows)} training and {len(dev_rows)} dev items "
            f"({train_too_long + dev_too_long} longer than {params.max_length} tokens dropped); "
            f"vocabulary {len(tokenizer)}" + (f", added characters {''.join(added)}" if added else "")
            + f"; {sum(p.numel() for p in model.parameters()):,} parameters"
            + (f"; {augmented['sub_derivations']} of the training items are sub-derivations" if augmented else ""))

    longest_dev_target = max(len(r["labels"]) for r in dev_rows)
    # Decoding dev with an early, babbling model up to max_length would dominate a CPU epoch:
    # cap it a little above the longest reference, which no correct output exceeds.
    dev_generation = _generation_config(tokenizer, params.eval_num_beams, params.eval_repetition_penalty,
                                        min(params.max_length, longest_dev_target + 16))
    strategy = "steps" if params.checkpoint_every else "epoch"
    bf16 = use_bf16(params.precision)
    args = _training_arguments(Seq2SeqTrainingArguments, checkpoints, params, strategy,
                               dev_generation, bf16)

    kept = {r["id"] for r in dev_rows}
    dev_by_id = [it for it in dev_items if it["id"] in kept]
    columns = ["input_ids", "labels", "length"]
    bias_rate = position_bias_rate(params)
    if params.position_bias_learning_rate and not bias_rate:
        run.log("position_bias_learning_rate applies to from-scratch models: this pretrained "
                "model's position-bias tables train at learning_rate")
    trainer = _trainer_class(Seq2SeqTrainer, bias_rate)(
        model=model, args=args,
        train_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in train_rows]),
        eval_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in dev_rows]),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer, compute_metrics=dev_rouge2_metric(tokenizer),
        callbacks=[_progress_callback(run), *(callbacks or [])])
    # Without tqdm the Trainer prints every log dict; RunLogCallback already writes a readable line
    trainer.remove_callback(PrinterCallback)
    if last is not None:
        run.log(f"resuming from {Path(last).name}")
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started

    trainer.save_model(str(run.path("model")))
    tokenizer.save_pretrained(str(run.path("model")))
    history = trainer.state.log_history
    config.atomic_write_json(run.path("history.json"), history)
    model.eval()
    sample_items = dev_by_id[:n_samples]
    sample_outputs = generate(trainer.model, tokenizer, [it["prompt"] for it in sample_items],
                              num_beams=1, max_new_tokens=longest_dev_target + 16)
    samples = [{"id": it["id"], "prompt": it["prompt"], "reference": it["derivation"], "prediction": out}
               for it, out in zip(sample_items, sample_outputs)]
    config.write_jsonl(run.path("dev_samples.jsonl"), samples)
    evals = [h for h in history if "eval_loss" in h]
    summary = {
        "model": model_label(params.model), "train_items": len(train_rows), "dev_items": len(dev_rows),
        "sub_derivations": augmented.get("sub_derivations", 0),
        "dropped_too_long": train_too_long + dev_too_long, "vocabulary": len(tokenizer),
        "added_characters": added, "parameters": sum(p.numel() for p in model.parameters()),
        "steps": trainer.state.global_step, "resumed_from": Path(last).name if last else None,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "best_dev_rouge2": trainer.state.best_metric,
        "first_dev_loss": evals[0]["eval_loss"] if evals else None,
        "last_dev_loss": evals[-1]["eval_loss"] if evals else None,
        "train_loss": output.training_loss, "train_seconds_this_session": round(seconds, 1),
        "tokens_seen": trainer.state.num_input_tokens_seen, "device": str(trainer.args.device),
        "bf16": bf16}
    config.atomic_write_json(run.path("summary.json"), summary)
    # model/ holds the best checkpoint's weights; the checkpoints (optimizer state included) only
    # served resumption and would double the run's size.
    shutil.rmtree(checkpoints, ignore_errors=True)
    run.finish(train_items=len(train_rows), dev_items=len(dev_rows), steps=trainer.state.global_step)
    run.log(f"done: best dev ROUGE-2 {100 * (trainer.state.best_metric or 0):.2f} at "
            f"{summary['best_checkpoint']}")
    return TrainResult(run_dir=run.dir, history=history, summary=summary, samples=samples)


#: T5's only position information: one bias table per stack, (buckets x heads), added to the
#: self-attention logits.
POSITION_BIAS = "relative_attention_bias"


def position_bias_rate(params: TrainParams) -> float:
    """The position-bias tables' own learning rate, 0 for none. From-scratch models only: a
    pretrained model's tables are trained, and a large rate would undo them."""
    return params.position_bias_learning_rate if params.model == SCRATCH else 0.0


def _trainer_class(base, position_bias_learning_rate: float):
    """``base`` (``Seq2SeqTrainer``) whose optimizer gives T5's position-bias tables their own
    learning rate (same schedule, no weight decay); 0 keeps the Trainer's single rate.

    Why: the tables start near 0 (std d_model^-0.5) and Adam moves each entry by about the
    learning rate per step, so at 1e-3 a table needs thousands of steps to reach the few units a
    sharp previous-token head needs, and without such heads a from-scratch T5 cannot find its
    place in the prompt to copy from. Measured on a probe (prompt -> first premise, held-out
    teacher-forced token accuracy after 600 steps): 0.77 at 1e-3, 0.94 at 3e-2, 0.96 at 1e-1.
    A pretrained T5's tables are already trained: use 0 there.
    """
    if not position_bias_learning_rate:
        return base

    class PositionBiasTrainer(base):
        def create_optimizer(self, model=None):
            fresh = self.optimizer is None
            optimizer = super().create_optimizer(model)
            if not fresh:
                return optimizer
            tables = {id(p) for name, p in (model or self.model).named_parameters()
                      if POSITION_BIAS in name and p.requires_grad}
            moved = [p for group in optimizer.param_groups for p in group["params"] if id(p) in tables]
            if moved:
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if id(p) not in tables]
                optimizer.add_param_group({"params": moved, "lr": position_bias_learning_rate,
                                           "weight_decay": 0.0})
            return optimizer

    return PositionBiasTrainer


def _training_arguments(cls, checkpoints: Path, params: TrainParams, strategy: str, generation, bf16: bool):
    return cls(
        output_dir=str(checkpoints), seed=params.seed, data_seed=params.seed,
        num_train_epochs=params.epochs, per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size, learning_rate=params.learning_rate,
        optim=params.optimizer, lr_scheduler_type=params.lr_scheduler, warmup_steps=params.warmup_ratio,
        train_sampling_strategy="group_by_length" if params.length_grouping else "random",
        eval_strategy=strategy, save_strategy=strategy,
        eval_steps=params.checkpoint_every or None, save_steps=params.checkpoint_every or None,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="rouge2",
        greater_is_better=True, predict_with_generate=True, generation_config=generation,
        logging_strategy="steps", logging_steps=params.log_every, logging_first_step=True,
        include_num_input_tokens_seen="non_padding", bf16=bf16, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=_cuda(), use_cpu=not _cuda())


# ----------------------------------------------------------------------------------- decoding

def generate(model, tokenizer, prompts: list[str], num_beams: int = 1, repetition_penalty: float = 1.0,
             max_new_tokens: int = 512, batch_size: int = 32, balanced: bool = False) -> list[str]:
    """Batched greedy (``num_beams=1``) or beam-search decoding, outputs in the prompts' order.

    Prompts are decoded in order of length so that each batch pads little; deterministic.
    ``balanced``: only outputs with balanced brackets and one top-level ``=`` per equation
    (:mod:`derivlib.models.syntax`).
    """
    import torch

    from .syntax import BalancedBrackets

    generation = _generation_config(tokenizer, num_beams, repetition_penalty, max_new_tokens)
    constraint = {"prefix_allowed_tokens_fn": BalancedBrackets(tokenizer)} if balanced else {}
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            generated = model.generate(**batch, generation_config=generation, **constraint)
        for i, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True,
                                                         clean_up_tokenization_spaces=False)):
            outputs[i] = text.strip()
    return outputs


def predict(run: config.Run, log_every_batches: int = 10) -> "pd.DataFrame":
    """Decode every test set with the run's model and write ``predictions.jsonl`` (the model's
    records and the copy-the-prompt baseline's). Loads the file if the run is complete."""
    import pandas as pd

    if run.complete:
        return pd.DataFrame(config.read_jsonl(run.path("predictions.jsonl")))
    params: PredictParams = run.params
    sets_dir = Path(run.upstream["sets"])
    model_run = Path(run.upstream["model"])
    test_sets = {name: load_set(sets_dir, name) for name in TEST_SETS}
    set_cpu_threads(params.workers)
    model, tokenizer = load_model(model_run)
    label = json.loads((model_run / "summary.json").read_text())["model"]
    if params.balanced_decoding:  # a row of its own beside the same model's free outputs in 06 and 07
        label += "+balanced"
    records: list[dict] = []
    for name, items in test_sets.items():
        if params.max_items:
            items = items[: params.max_items]
        started = time.perf_counter()
        outputs = generate(model, tokenizer, [it["prompt"] for it in items], params.num_beams,
                           params.repetition_penalty, params.max_new_tokens, params.batch_size,
                           params.balanced_decoding)
        run.log(f"{name}: {len(items)} items decoded in {time.perf_counter() - started:.1f} s")
        records += [{"id": it["id"], "model": label, "set": name, "prompt": it["prompt"],
                     "reference": it["derivation"], "prediction": out,
                     "srepr_derivation": it.get("srepr_derivation")} for it, out in zip(items, outputs)]
        records += baseline.predictions(items, name)
    config.write_jsonl(run.path("predictions.jsonl"), records)
    run.finish(predictions=len(records))
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------------- inspection

def _top_level_equals(equation: str) -> int | None:
    """How many ``=`` lie outside every brace/parenthesis, or None when brackets are unbalanced."""
    depth, count = 0, 0
    pairs = {"{": 1, "(": 1, "[": 1, "}": -1, ")": -1, "]": -1}
    previous = ""
    for char in equation:
        if previous != "\\":  # \{ and \} are literal braces, not grouping
            depth += pairs.get(char, 0)
            if depth < 0:
                return None
            if char == "=" and depth == 0:
                count += 1
        previous = char if previous != "\\" else ""
    return count if depth == 0 else None


def is_well_formed(text: str) -> bool:
    """Whether ``text`` could be the LaTeX printer's output: " and "-separated equations, each with
    balanced brackets and exactly one top-level ``=``, and each parsed into a SymPy equation by
    :mod:`derivlib.latex` (which forgives some noise, hence the structural check first).
    """
    from .. import latex

    equations = text.split(JOIN)
    if not text.strip() or not all(eq.strip() == eq and eq and _top_level_equals(eq) == 1 for eq in equations):
        return False
    return all(latex.parse_equation(eq).ok for eq in equations)


def summary_table(predictions) -> "pd.DataFrame":
    """Mean paper ROUGE-2 (x100) and the share of well-formed outputs (%), per model and set."""
    import pandas as pd

    frame = pd.DataFrame(predictions).copy()
    frame["rouge2"] = [100 * s for s in rouge2(list(frame["prediction"]), list(frame["reference"]))]
    frame["well_formed"] = [100.0 * is_well_formed(p) for p in frame["prediction"]]
    table = frame.groupby(["model", "set"], sort=False)[["rouge2", "well_formed"]].mean().round(2)
    table["items"] = frame.groupby(["model", "set"], sort=False).size()
    return table.reset_index()


def show_samples(samples: list[dict]):
    """Prompts, references and outputs rendered as mathematics (a Markdown object for Jupyter)."""
    from IPython.display import Markdown

    def as_math(text: str) -> str:
        return "<br>".join(f"${eq}$" for eq in split_equations(text)) or "*(empty)*"

    blocks = []
    for sample in samples:
        blocks.append(f"**{sample['id']}** — prompt: {sample['prompt'].replace('$', '')}\n\n"
                      f"| reference | model |\n|---|---|\n"
                      f"| {as_math(sample['reference'])} | {as_math(sample['prediction'])} |\n")
    return Markdown("\n\n".join(blocks))


def use_bf16(precision: str) -> bool:
    """Whether to train in bf16 mixed precision (see :data:`PRECISIONS`)."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
