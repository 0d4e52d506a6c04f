"""T5-family models on derivations: building, encoding, training, decoding, well-formedness.

Training is transformers' ``Seq2SeqTrainer``: labels are the target's token ids ending in
``</s>``, and the model shifts them right itself (the authors shifted once more, so their model
never learned the first token, PAPER.md §4); batches are padded dynamically
(``DataCollatorForSeq2Seq``) and grouped by length; dev ROUGE-2 (``derivlib.metrics``) picks the
best checkpoint; an interrupted training resumes from the last checkpoint in its directory. The
same code runs on CPU and on a CUDA GPU (bf16 where the hardware computes in bf16).

Nothing here knows about run directories: :func:`train` writes into any directory it is given,
and :func:`predictions` decodes items into prediction records. The stages ``train_t5`` and
``predict_t5`` (:mod:`derivlib.stages`) wrap them into notebook runs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import augment, latex, metrics
from ..base.files import atomic_write_json
from ..base.params import ParameterError
from ..base.progress import Progress
from ..base.vocabulary import JOIN
from . import tokenization
from .syntax import BalancedBrackets

SCRATCH = "scratch"
#: "auto": bf16 mixed precision where the hardware computes in bf16 (a CUDA GPU that supports
#: it, or a CPU with AVX-512 BF16/AMX, where it measured 1.4x faster training), else fp32.
PRECISIONS = ("auto", "bf16", "fp32")
#: Opt-in to hub downloads; by default a hub id must already be in the local cache.
DOWNLOAD_ENV = "DERIVLIB_HUB_DOWNLOAD"
#: What a saved model directory needs besides the weights for :func:`load_model` to read it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: T5's only position information: one bias table per stack, (buckets x heads), added to the
#: self-attention logits.
POSITION_BIAS = "relative_attention_bias"
#: Written into each checkpoint after the Trainer's own files, so it marks the checkpoint whole:
#: torch's generator state that the checkpoint's epoch drew its length-grouped batch order from.
RESUME_STATE = "derivlib_resume.pt"


def prefer_passive_threads() -> None:
    """Let torch's OpenMP threads wait passively; call it before torch is first imported.

    OpenMP threads that spin while waiting ran training 6-10x slower on a 2-core machine shared
    with other processes (20 steps: 112 s spinning, 17 s passive, same losses). The policy is
    read once, when torch loads its OpenMP runtime, so setting it later has no effect. An
    explicit setting wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# ----------------------------------------------------------------------------------- configuration

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What :func:`train` does with the items it is given: model, optimisation, dev selection."""

    model: str = SCRATCH  # "scratch": a small T5 built from the sizes below; else a T5/FLAN-T5 hub id or local directory (paper: google/flan-t5-large)
    vocab_size: int = 1000  # BPE vocabulary of the from-scratch tokenizer (ignored for pretrained models)
    d_model: int = 128  # from-scratch model width (t5-small: 512)
    d_ff: int = 512  # from-scratch feed-forward width (t5-small: 2048)
    num_layers: int = 2  # from-scratch encoder and decoder layers each (t5-small: 6)
    num_heads: int = 8  # from-scratch attention heads (t5-small: 8)
    dropout: float = 0.0  # from-scratch dropout rate (t5-small: 0.1; 0 trains 1.5x faster on a CPU, and 2 epochs do not overfit)
    epochs: int = 2  # training epochs (paper: 25)
    batch_size: int = 16  # training batch size (paper: 4)
    learning_rate: float = 1e-3  # peak learning rate (paper: 5e-5; 3e-3 learnt to copy more slowly here)
    position_bias_learning_rate: float = 0.1  # learning rate of T5's position-bias tables, from-scratch models only (0: learning_rate); 1e-3 left them too slow to learn copying
    optimizer: str = "adamw_torch"  # transformers optimizer name (paper: adafactor)
    lr_scheduler: str = "linear"  # transformers schedule name (paper: constant)
    warmup_ratio: float = 0.05  # share of steps spent warming up the learning rate (paper: 0)
    max_length: int = 1024  # longest prompt or target in tokens; longer items are dropped and counted (paper: 512 pretrained-T5 tokens)
    max_train_items: int = 0  # first N training items; 0 for all
    sub_derivations: bool = True  # also train on every sub-derivation of each training derivation (derivlib.augment; about 5x the pairs; paper: false)
    max_dev_items: int = 20  # dev items decoded after each epoch for ROUGE-2; 0 for all (paper: all)
    eval_num_beams: int = 1  # beams when decoding dev, 1 for greedy (cheap on a CPU); paper: 2
    eval_repetition_penalty: float = 1.0  # repetition penalty when decoding dev, 1.0 for none; paper: 2.5
    checkpoint_every: int = 0  # steps between checkpoints and dev evaluations; 0 for once per epoch (paper)
    length_grouping: bool = True  # group batches by length (fewer padding tokens; the authors padded to 512)
    precision: str = "auto"  # "auto" (bf16 where the GPU or CPU computes in bf16, else fp32), "bf16" or "fp32"
    log_every: int = 20  # steps between progress lines (loss, tokens per second)
    seed: int = 42  # weights, batch order and dropout (paper: 42)

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ParameterError(f"parameter 'precision' must be one of {', '.join(PRECISIONS)}, "
                                 f"got {self.precision!r}")
        positive = ("vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "epochs",
                    "batch_size", "max_length", "eval_num_beams", "log_every")
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
class DecodeConfig:
    """How :func:`predictions` decodes."""

    num_beams: int = 1  # 1: greedy, as the paper's test decoding; more: beam search
    repetition_penalty: float = 1.0  # 1.0: none (the paper used 2.5 only when decoding dev)
    max_new_tokens: int = 704  # longest output in tokens (paper: 512; the longest reference at the paper's derivation lengths was 675)
    batch_size: int = 32  # prompts decoded together
    balanced_decoding: bool = False  # True: the decoder may only write balanced brackets and one top-level equals sign per equation (not in the paper)

    def check(self) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        if self.repetition_penalty <= 0:
            raise ParameterError("parameter 'repetition_penalty' must be > 0")


def config_of(cls: type, params):
    """The ``cls`` part (:class:`TrainConfig` or :class:`DecodeConfig`) of a stage's parameters,
    which extend it with fields of their own."""
    return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


# ----------------------------------------------------------------------------------- environment

def set_cpu_threads(workers: int) -> None:
    """Torch's CPU threads. Outputs do not depend on them (same losses with 1 or 2 threads)."""
    import torch  # optional heavy dependency: only training and decoding need it

    torch.set_num_threads(workers)


def _allow_download() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "") == "1"


def check_model_source(model: str) -> None:
    """Fail at once, before any data is read, when ``model`` is neither a local directory nor a
    hub id in the local cache (downloads happen only with DERIVLIB_HUB_DOWNLOAD=1)."""
    if model == SCRATCH:
        return
    from transformers import AutoConfig  # optional heavy dependency (imports torch)

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


def prediction_label(trained_label: str, balanced: bool) -> str:
    """The ``model`` field of a trained model's predictions; balanced decoding gets a row of its
    own beside the same model's free outputs in 06 and 07."""
    return trained_label + "+balanced" if balanced else trained_label


def cpu_computes_bf16() -> bool:
    """Whether this CPU computes in bf16 (oneDNN's check: AVX-512 BF16 or AMX)."""
    import torch  # optional heavy dependency

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def use_bf16(precision: str) -> bool:
    """Whether to train in bf16 mixed precision (see :data:`PRECISIONS`)."""
    import torch  # optional heavy dependency

    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_computes_bf16()


def _cuda() -> bool:
    import torch  # optional heavy dependency

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------- model

def build_model_and_tokenizer(config: TrainConfig, texts: list[str]):
    """A from-scratch T5 with a LaTeX tokenizer trained on ``texts``, or a pretrained T5 whose
    vocabulary is extended with the characters of ``texts`` it cannot encode. Returns (model,
    tokenizer, added characters)."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration, set_seed  # optional heavy dependency

    set_seed(config.seed)  # the initial weights of a fresh model come from torch's global generator
    if config.model == SCRATCH:
        tokenizer = tokenization.train_latex_tokenizer(texts, config.vocab_size)
        model_config = T5Config(
            vocab_size=len(tokenizer), d_model=config.d_model, d_ff=config.d_ff,
            d_kv=config.d_model // config.num_heads, num_layers=config.num_layers,
            num_decoder_layers=config.num_layers, num_heads=config.num_heads,
            feed_forward_proj="gated-gelu", tie_word_embeddings=True, dropout_rate=config.dropout,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id)
        return T5ForConditionalGeneration(model_config), tokenizer, []
    local_only = not _allow_download()
    tokenizer = AutoTokenizer.from_pretrained(config.model, local_files_only=local_only)
    tokenizer, added = tokenization.add_missing_characters(tokenizer, texts)
    model = T5ForConditionalGeneration.from_pretrained(config.model, local_files_only=local_only)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer, added


def check_model_dir(model_dir: Path | str) -> Path:
    """``model_dir`` if it holds a saved model with its tokenizer, else an error naming what is
    missing (without the tokenizer files, transformers would quietly build an empty tokenizer)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} does not exist: not a saved model directory "
                                "(a train_t5 run keeps its model in model/)")
    missing = [name for name in TOKENIZER_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir}: tokenizer file(s) missing: {', '.join(missing)} "
                                "(a saved model directory holds the tokenizer it was trained with)")
    return model_dir


def load_model(model_dir: Path | str, device: str | None = None):
    """The model and tokenizer saved in ``model_dir`` (a train_t5 run's ``model/``), in eval mode."""
    import torch  # optional heavy dependency
    from transformers import AutoTokenizer, T5ForConditionalGeneration  # optional heavy dependency

    model_dir = check_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = T5ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def encode(tokenizer, items: Sequence[dict], max_length: int) -> tuple[list[dict], int]:
    """Tokenized items (id, input_ids, labels, length) and how many exceeded ``max_length``."""
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
    from transformers import GenerationConfig  # optional heavy dependency

    # max_length counts the decoder start token; max_new_tokens would clash with the default max_length
    return GenerationConfig(num_beams=num_beams, repetition_penalty=repetition_penalty,
                            max_length=max_new_tokens + 1, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.pad_token_id)


def rouge2(predictions: list[str], references: list[str]) -> list[float]:
    """Per-pair ROUGE-2 F-measure, paper-exact (``derivlib.metrics``)."""
    return [float(x) for x in metrics.score_pairs(predictions, references, metrics=("rouge",))["rouge"]]


def dev_rouge2_metric(tokenizer):
    """The Trainer's ``compute_metrics``: mean ROUGE-2 of the generated dev outputs against their
    own labels, decoded. The references come with each prediction rather than from the dev
    file's order because the Trainer reorders evaluation batches by length when training
    batches are length-grouped (transformers 5); matching by position scored every output
    against another item's reference, and picked checkpoints on noise."""

    def decode(ids):
        return tokenizer.batch_decode(np.where(ids < 0, tokenizer.pad_token_id, ids), skip_special_tokens=True)

    def compute_metrics(prediction):
        outputs, references = decode(prediction.predictions), decode(prediction.label_ids)
        return {"rouge2": float(np.mean(rouge2(outputs, references)))}

    return compute_metrics


# ----------------------------------------------------------------------------------- training

def progress_callback(log: Callable[[str], None]):
    """A ``TrainerCallback`` writing one line per logging step through ``log``: loss and tokens/s.

    Tokens are real (non-padding) input and target tokens, counted by the Trainer
    (``include_num_input_tokens_seen``); padding is work, not progress.
    """
    from transformers import TrainerCallback  # optional heavy dependency

    class ProgressLines(TrainerCallback):
        def __init__(self):
            self.last_time = None
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time, self.last_tokens = time.perf_counter(), state.num_input_tokens_seen
            self.progress = Progress(state.max_steps, state.global_step)
            log(f"training: {state.max_steps} steps, resuming at step {state.global_step}"
                if state.global_step else f"training: {state.max_steps} steps")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                now = time.perf_counter()
                rate = (state.num_input_tokens_seen - self.last_tokens) / max(now - self.last_time, 1e-9)
                self.last_time, self.last_tokens = now, state.num_input_tokens_seen
                log(f"step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f}): "
                    f"loss {logs['loss']:.4f}, {rate:,.0f} input tok/s, "
                    f"{self.progress.rate_and_eta(state.global_step, 'steps')}")
            if "eval_loss" in logs:
                log(f"step {state.global_step} (epoch {state.epoch:.2f}): dev loss "
                    f"{logs['eval_loss']:.4f}, dev ROUGE-2 {100 * logs.get('eval_rouge2', float('nan')):.2f}")

    return ProgressLines()


@dataclasses.dataclass
class TrainResult:
    model_dir: Path       # the kept (best dev ROUGE-2) model and its tokenizer
    history: list[dict]   # the Trainer's log_history (also history.json)
    summary: dict         # counts, best checkpoint, losses, precision, threads, device
    samples: list[dict]   # dev items decoded greedily: id, prompt, reference, prediction


def select_items(train_items: Sequence[dict], dev_items: Sequence[dict], config: TrainConfig,
                 held_out_texts: Iterable[str] = ()) -> tuple[list[dict], list[dict], dict]:
    """The items :func:`train` trains and selects on: the first ``max_train_items`` followed by
    their sub-derivations (none that repeats a text of ``held_out_texts``, the dev and test
    prompts and derivations), and the first ``max_dev_items``. Returns them and the
    augmentation's counts."""
    train_items = list(train_items[: config.max_train_items] if config.max_train_items else train_items)
    augmented: dict = {}
    if config.sub_derivations:
        try:
            train_items, augmented = augment.with_sub_derivations(train_items, held_out_texts)
        except ValueError as err:
            raise ParameterError(f"parameter 'sub_derivations': {err}") from None
    dev_items = list(dev_items[: config.max_dev_items] if config.max_dev_items else dev_items)
    return train_items, dev_items, augmented


def train(train_items: Sequence[dict], dev_items: Sequence[dict], out_dir: Path | str, config: TrainConfig,
          *, held_out_texts: Iterable[str] = (), log: Callable[[str], None] = print,
          callbacks: list | None = None, n_samples: int = 5) -> TrainResult:
    """Train a model on ``train_items`` (``id``, ``prompt``, ``derivation``), keeping the
    checkpoint with the best ROUGE-2 on ``dev_items``, in ``out_dir``: ``model/`` (weights and
    tokenizer), ``history.json``, ``added_tokens.json``; ``checkpoints/`` while it runs, removed
    at the end. When ``out_dir`` holds checkpoints of an interrupted training, it resumes from
    the last one.

    ``held_out_texts``: texts no sub-derivation may repeat (see :func:`select_items`). Every
    input check (model source, lengths, sub-derivations) happens before the first step.
    ``callbacks`` are extra ``TrainerCallback`` objects (tests use one to interrupt training).
    """
    config.check()
    check_model_source(config.model)
    train_items, dev_items, augmented = select_items(train_items, dev_items, config, held_out_texts)

    from datasets import Dataset  # optional heavy dependency
    from transformers import (AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,  # optional heavy dependency
                              Seq2SeqTrainingArguments, T5ForConditionalGeneration)
    from transformers.trainer_callback import PrinterCallback  # optional heavy dependency
    import torch  # optional heavy dependency

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = out_dir / "checkpoints"
    last = last_complete_checkpoint(checkpoints)
    texts = [t for it in train_items for t in (it["prompt"], it["derivation"])]
    if last is not None:  # the tokenizer and vocabulary were fixed when the training started
        tokenizer = AutoTokenizer.from_pretrained(last, local_files_only=True)
        model = T5ForConditionalGeneration.from_pretrained(last, local_files_only=True)
        added = json.loads((out_dir / "added_tokens.json").read_text())
    else:
        model, tokenizer, added = build_model_and_tokenizer(config, texts)

    train_rows, train_too_long = encode(tokenizer, train_items, config.max_length)
    dev_rows, dev_too_long = encode(tokenizer, dev_items, config.max_length)
    if not train_rows:
        raise ParameterError(f"parameter 'max_length' ({config.max_length}) is shorter than every "
                             f"training example (prompt or target, in tokens)")
    if not dev_rows:
        raise ParameterError(f"parameter 'max_length' ({config.max_length}) is shorter than every dev example")
    log(f"{len(train_rows)} training and {len(dev_rows)} dev items "
        f"({train_too_long + dev_too_long} longer than {config.max_length} tokens dropped); "
        f"vocabulary {len(tokenizer)}" + (f", added characters {''.join(added)}" if added else "")
        + f"; {sum(p.numel() for p in model.parameters()):,} parameters"
        + (f"; {augmented['sub_derivations']} of the training items are sub-derivations" if augmented else ""))

    longest_dev_target = max(len(r["labels"]) for r in dev_rows)
    # Decoding dev with an early, babbling model up to max_length would dominate a CPU epoch:
    # cap it a little above the longest reference, which no correct output exceeds.
    dev_generation = _generation_config(tokenizer, config.eval_num_beams, config.eval_repetition_penalty,
                                        min(config.max_length, longest_dev_target + 16))
    strategy = "steps" if config.checkpoint_every else "epoch"
    bf16 = use_bf16(config.precision)
    args = _training_arguments(Seq2SeqTrainingArguments, checkpoints, config, strategy, dev_generation, bf16)

    kept = {r["id"] for r in dev_rows}
    dev_by_id = [it for it in dev_items if it["id"] in kept]
    columns = ["input_ids", "labels", "length"]
    bias_rate = position_bias_rate(config)
    if config.position_bias_learning_rate and not bias_rate:
        log("position_bias_learning_rate applies to from-scratch models: this pretrained "
            "model's position-bias tables train at learning_rate")
    trainer = trainer_class(Seq2SeqTrainer, bias_rate)(
        model=model, args=args,
        train_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in train_rows]),
        eval_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in dev_rows]),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer, compute_metrics=dev_rouge2_metric(tokenizer),
        callbacks=[progress_callback(log), *(callbacks or [])])
    # Without tqdm the Trainer prints every log dict; ProgressLines already writes a readable line
    trainer.remove_callback(PrinterCallback)
    # Under ``accelerate launch``/``torchrun`` every rank runs this function in the same directory;
    # the Trainer writes checkpoints from rank 0 (each rank its own RNG state), and so does this.
    main = trainer.is_world_process_zero()
    if main and last is None:
        atomic_write_json(out_dir / "added_tokens.json", added)
    if last is not None:
        log(f"resuming from {Path(last).name}")
        trainer.resume_rng = torch.load(Path(last) / RESUME_STATE, weights_only=True)["epoch_rng"]
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started

    model_dir = out_dir / "model"
    trainer.save_model(str(model_dir))  # on every rank: the Trainer writes from rank 0 only
    history = trainer.state.log_history
    if main:
        tokenizer.save_pretrained(str(model_dir))
        atomic_write_json(out_dir / "history.json", history)
    model.eval()
    sample_items = dev_by_id[:n_samples]
    sample_outputs = generate(trainer.model, tokenizer, [it["prompt"] for it in sample_items],
                              num_beams=1, max_new_tokens=longest_dev_target + 16)
    samples = [{"id": it["id"], "prompt": it["prompt"], "reference": it["derivation"], "prediction": out}
               for it, out in zip(sample_items, sample_outputs)]
    evals = [h for h in history if "eval_loss" in h]
    best = trainer.state.best_model_checkpoint
    summary = {
        "model": model_label(config.model), "train_items": len(train_rows), "dev_items": len(dev_rows),
        "sub_derivations": augmented.get("sub_derivations", 0),
        "dropped_too_long": train_too_long + dev_too_long, "vocabulary": len(tokenizer),
        "added_characters": added, "parameters": sum(p.numel() for p in model.parameters()),
        "steps": trainer.state.global_step, "resumed_from": Path(last).name if last else None,
        "best_checkpoint": Path(best).name if best else None,
        "best_dev_rouge2": trainer.state.best_metric,
        "first_dev_loss": evals[0]["eval_loss"] if evals else None,
        "last_dev_loss": evals[-1]["eval_loss"] if evals else None,
        "train_loss": output.training_loss, "train_seconds_this_session": round(seconds, 1),
        "tokens_seen": trainer.state.num_input_tokens_seen, "device": str(trainer.args.device),
        "bf16": bf16, "precision": "bf16" if bf16 else "fp32", "torch_threads": torch.get_num_threads()}
    # model/ holds the best checkpoint's weights; the checkpoints (optimizer state included) only
    # served resumption and would double the directory's size. Every rank has loaded the best
    # checkpoint by now (load_best_model_at_end) once all have got here.
    trainer.accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(checkpoints, ignore_errors=True)
    log(f"done: best dev ROUGE-2 {100 * (trainer.state.best_metric or 0):.2f} at {summary['best_checkpoint']}")
    return TrainResult(model_dir=model_dir, history=history, summary=summary, samples=samples)


def position_bias_rate(config: TrainConfig) -> float:
    """The position-bias tables' own learning rate, 0 for none. From-scratch models only: a
    pretrained model's tables are trained, and a large rate would undo them."""
    return config.position_bias_learning_rate if config.model == SCRATCH else 0.0


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint of ``checkpoints`` written to its end (it holds :data:`RESUME_STATE`);
    newer ones, half written when the training was killed while saving, are removed.

    In a distributed run every rank calls this: the main process looks first and removes, and the
    others look once it is done (so no rank reads a directory another is deleting, and all resume
    from the same checkpoint)."""
    state = distributed_state()
    with state.main_process_first():
        found = sorted((int(p.name.split("-")[1]), p) for p in Path(checkpoints).glob("checkpoint-*")
                       if p.name.split("-")[1].isdigit()) if Path(checkpoints).is_dir() else []
        whole = [(step, path) for step, path in found if (path / RESUME_STATE).is_file()]
        newest = whole[-1][0] if whole else -1
        if state.is_main_process:
            for step, path in found:
                if step > newest:
                    shutil.rmtree(path)
    return str(whole[-1][1]) if whole else None


def distributed_state():
    """accelerate's state of this process: one process, or its rank in ``accelerate launch`` /
    ``torchrun``; on the device the Trainer will use, so that a CPU launch goes over gloo."""
    from accelerate import PartialState  # optional heavy dependency

    return PartialState(cpu=not _cuda())


def trainer_class(base, position_bias_learning_rate: float):
    """``base`` (``Seq2SeqTrainer``) that resumes exactly, and whose optimizer gives T5's
    position-bias tables their own learning rate (same schedule, no weight decay; 0 keeps the
    Trainer's single rate).

    Exact resumption: transformers' length-grouped sampler draws each epoch's batch order from
    torch's global generator when the epoch starts, and a resumed Trainer restores its
    ``rng_state.pth`` only after the resumed epoch's order is drawn, from a generator the Trainer
    had just reseeded: a run resumed in its second epoch or later trained the rest of that epoch
    in another order (a tiny run resumed at step 8 of 12: step-10 loss 4.7247 against 4.7392, dev
    loss 4.6037 against 4.6026). So each checkpoint also keeps the generator state its epoch's
    order came from (:data:`RESUME_STATE`), and the resumed epoch draws its order from it. An
    uninterrupted run is unchanged.

    Position bias: the tables start near 0 (std d_model^-0.5) and Adam moves each entry by about
    the learning rate per step, so at 1e-3 a table needs thousands of steps to reach the few units
    a sharp previous-token head needs, and without such heads a from-scratch T5 cannot find its
    place in the prompt to copy from. Measured on a probe (prompt -> first premise, held-out
    teacher-forced token accuracy after 600 steps): 0.77 at 1e-3, 0.94 at 3e-2, 0.96 at 1e-1.
    A pretrained T5's tables are already trained: use 0 there.
    """
    import torch  # optional heavy dependency
    from transformers.trainer_pt_utils import LengthGroupedSampler  # optional heavy dependency

    class EpochOrderSampler(LengthGroupedSampler):
        """The Trainer's length-grouped order, remembering the generator state it was drawn from."""

        epoch_rng = None  # torch's generator state this epoch's order was drawn from
        resume_rng = None  # the state to draw the next order from, once (a resumed epoch)

        def __iter__(self):
            if self.resume_rng is not None:
                torch.random.set_rng_state(self.resume_rng)
                self.resume_rng = None
            self.epoch_rng = torch.random.get_rng_state()
            return super().__iter__()

    class DerivlibTrainer(base):
        resume_rng = None  # set by train() from the checkpoint it resumes
        order_sampler = None

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                sampler = EpochOrderSampler(sampler.batch_size, lengths=sampler.lengths)
                sampler.resume_rng, self.order_sampler = self.resume_rng, sampler
            return sampler

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            sampler = self.order_sampler
            # At an epoch's end the next epoch draws from the restored rng_state.pth, as it did.
            mid_epoch = sampler is not None and self.state.global_step % -(-len(sampler) // sampler.batch_size)
            if not self.args.should_save:  # another rank of a distributed run: rank 0 writes it
                return
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            partial = folder / f".{RESUME_STATE}.partial"
            torch.save({"epoch_rng": sampler.epoch_rng if mid_epoch else None}, partial)
            os.replace(partial, folder / RESUME_STATE)

        def create_optimizer(self, model=None):
            fresh = self.optimizer is None
            optimizer = super().create_optimizer(model)
            if not fresh or not position_bias_learning_rate:
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

    return DerivlibTrainer


def _training_arguments(cls, checkpoints: Path, config: TrainConfig, strategy: str, generation, bf16: bool):
    return cls(
        output_dir=str(checkpoints), seed=config.seed, data_seed=config.seed,
        num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, learning_rate=config.learning_rate,
        optim=config.optimizer, lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio,
        train_sampling_strategy="group_by_length" if config.length_grouping else "random",
        eval_strategy=strategy, save_strategy=strategy,
        eval_steps=config.checkpoint_every or None, save_steps=config.checkpoint_every or None,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="rouge2",
        greater_is_better=True, predict_with_generate=True, generation_config=generation,
        logging_strategy="steps", logging_steps=config.log_every, logging_first_step=True,
        include_num_input_tokens_seen="non_padding", bf16=bf16, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=_cuda(), use_cpu=not _cuda(),
        # T5 averages its loss itself (it ignores num_items_in_batch): with the default True, the
        # Trainer multiplied each rank's loss by the number of processes (logged loss and
        # gradients 2x on 2 processes). One process is unaffected either way.
        average_tokens_across_devices=False)


# ----------------------------------------------------------------------------------- decoding

#: Seconds between two progress lines of :func:`generate` (when it is given a ``log``).
PROGRESS_EVERY_S = 30.0


def generate(model, tokenizer, prompts: list[str], num_beams: int = 1, repetition_penalty: float = 1.0,
             max_new_tokens: int = 512, batch_size: int = 32, balanced: bool = False,
             log: Callable[[str], None] | None = None) -> list[str]:
    """Batched greedy (``num_beams=1``) or beam-search decoding, outputs in the prompts' order.

    Prompts are decoded in order of length so that each batch pads little; deterministic.
    ``balanced``: only outputs with balanced brackets and one top-level ``=`` per equation
    (:mod:`derivlib.models.syntax`). ``log`` gets a line with the count, rate and time left at
    most every :data:`PROGRESS_EVERY_S` seconds (between batches).
    """
    import torch  # optional heavy dependency

    generation = _generation_config(tokenizer, num_beams, repetition_penalty, max_new_tokens)
    constraint = {"prefix_allowed_tokens_fn": BalancedBrackets(tokenizer)} if balanced else {}
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    model.eval()
    progress, last_line = Progress(len(prompts)), time.monotonic()
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            generated = model.generate(**batch, generation_config=generation, **constraint)
        for i, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True,
                                                         clean_up_tokenization_spaces=False)):
            outputs[i] = text.strip()
        done = start + len(chunk)
        if log is not None and done < len(order) and time.monotonic() - last_line >= PROGRESS_EVERY_S:
            last_line = time.monotonic()
            log(f"{done}/{len(order)} items decoded ({progress.rate_and_eta(done, 'items')})")
    return outputs


def predictions(model, tokenizer, items: Sequence[dict], set_name: str, trained_label: str,
                config: DecodeConfig, log: Callable[[str], None] | None = None) -> list[dict]:
    """Prediction records (``derivlib.base.vocabulary.PREDICTION_FIELDS``) of ``items``
    (``id``, ``prompt``, ``derivation``) of one test set, decoded as ``config`` says; the
    ``model`` field is :func:`prediction_label` of ``trained_label``. ``log``: progress lines
    (:func:`generate`), each prefixed by the set's name."""
    label = prediction_label(trained_label, config.balanced_decoding)
    outputs = generate(model, tokenizer, [it["prompt"] for it in items], config.num_beams,
                       config.repetition_penalty, config.max_new_tokens, config.batch_size,
                       config.balanced_decoding, log=None if log is None else (lambda m: log(f"{set_name}: {m}")))
    return [{"id": it["id"], "model": label, "set": set_name, "prompt": it["prompt"],
             "reference": it["derivation"], "prediction": out,
             "srepr_derivation": it.get("srepr_derivation")} for it, out in zip(items, outputs)]


# ----------------------------------------------------------------------------------- inspection

def top_level_equals(equation: str) -> int | None:
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
    equations = text.split(JOIN)
    if not text.strip() or not all(eq.strip() == eq and eq and top_level_equals(eq) == 1 for eq in equations):
        return False
    return all(latex.parse_equation(eq).ok for eq in equations)


def summary_table(records) -> pd.DataFrame:
    """Mean paper ROUGE-2 (x100) and the share of well-formed outputs (%), per model and set, of
    prediction records (a list or a DataFrame)."""
    frame = pd.DataFrame(records).copy()
    frame["rouge2"] = [100 * s for s in rouge2(list(frame["prediction"]), list(frame["reference"]))]
    frame["well_formed"] = [100.0 * is_well_formed(p) for p in frame["prediction"]]
    table = frame.groupby(["model", "set"], sort=False)[["rouge2", "well_formed"]].mean().round(2)
    table["items"] = frame.groupby(["model", "set"], sort=False).size()
    return table.reset_index()
