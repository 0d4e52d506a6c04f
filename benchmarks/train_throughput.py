"""Training throughput: derivlib's batching (dynamic padding + length-grouped batches) against the
authors' set-up (every sequence padded to 512 tokens, random batches of 4).

Same model (the smoke profile's from-scratch T5), same examples, same batch size (4), same
optimizer, one epoch over the same items each; the figure is real (non-padding) prompt + target
tokens per second. The last line prints the ratio (goal: >= 2).

    .venv/bin/python benchmarks/train_throughput.py [--sets DIR] [--items 160] [--workers 2]

Data: ``DIR/train.jsonl`` of a 02_testsets run, else the released items' prompts and
derivations (all five variants) from $DERIVLIB_PAPER_RESULTS.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from derivlib.base.vocabulary import SETS, field
from derivlib.models import t5, tokenization
from derivlib.readers import released
from derivlib.readers.runs import load_set
from derivlib.stages.rundir import resolve_run_dir


def load_pairs(sets: str | None) -> list[dict]:
    if sets:
        return load_set(resolve_run_dir(sets, "sets"), "train")
    directory = released.results_dir()
    if directory is None:
        sys.exit(f"no data: pass --sets or {released.DOWNLOAD_HINT}")
    pairs = []
    for item in released.load_items(directory / "flan-t5-large_results.json"):
        for name in SETS:
            pairs.append({"prompt": item[field(name, "prompt")], "derivation": item[field(name, "derivation")]})
    return pairs


def measure(rows: list[dict], tokenizer, params: t5.TrainConfig, padded: bool, out: Path) -> float:
    """Real tokens per second of one epoch over ``rows``."""
    from datasets import Dataset  # optional heavy dependency, loaded after the thread policy
    from transformers import (DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments,  # as above
                              T5Config, T5ForConditionalGeneration, set_seed)

    set_seed(params.seed)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=params.d_model, d_ff=params.d_ff,
        d_kv=params.d_model // params.num_heads, num_layers=params.num_layers,
        num_heads=params.num_heads, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    if padded:  # the authors' collation: every prompt and target padded to 512 tokens
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, padding="max_length", max_length=512,
                                          pad_to_multiple_of=512, label_pad_token_id=-100)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    args = Seq2SeqTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=4, num_train_epochs=1,
        learning_rate=params.learning_rate, seed=params.seed, data_seed=params.seed,
        train_sampling_strategy="random" if padded else "group_by_length",
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_pin_memory=False)
    batch = collator([rows[0], rows[1]])
    if padded:
        assert batch["input_ids"].shape[1] == 512 and batch["labels"].shape[1] == 512
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             data_collator=collator, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    real_tokens = sum(r["length"] for r in rows)
    return real_tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", help="a 02_testsets run directory (default: released items)")
    parser.add_argument("--items", type=int, default=160, help="examples trained on, per set-up")
    parser.add_argument("--workers", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    t5.prefer_passive_threads()  # before torch loads
    params = t5.TrainConfig()  # the smoke profile's model sizes
    t5.set_cpu_threads(args.workers)
    pairs = load_pairs(args.sets)
    random.Random(0).shuffle(pairs)
    pairs = pairs[: args.items]
    texts = [t for p in pairs for t in (p["prompt"], p["derivation"])]
    tokenizer = tokenization.train_latex_tokenizer(texts, params.vocab_size)
    items = [{"id": str(i), **p} for i, p in enumerate(pairs)]
    rows, too_long = t5.encode(tokenizer, items, 512)
    rows = [{k: r[k] for k in ("input_ids", "labels", "length")} for r in rows]
    lengths = [r["length"] for r in rows]
    print(f"{len(rows)} examples ({too_long} over 512 tokens dropped), prompt+target tokens: "
          f"mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}; model d_model {params.d_model}, "
          f"{params.num_layers} layers; batch 4, one epoch each")
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(rows, tokenizer, params, padded=False, out=Path(tmp) / "ours")
        print(f"derivlib (dynamic padding, length-grouped): {ours:,.0f} real tokens/s")
        authors = measure(rows, tokenizer, params, padded=True, out=Path(tmp) / "padded")
        print(f"authors (padded to 512, random batches):    {authors:,.0f} real tokens/s")
    print(json.dumps({"ours_tokens_per_s": round(ours), "padded_tokens_per_s": round(authors)}))
    print(f"throughput ratio (derivlib / padded-to-512): {ours / authors:.2f}x")


if __name__ == "__main__":
    main()
