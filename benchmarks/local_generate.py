"""Local decoding throughput: batched greedy decoding (``decoder.generate``, one batch of 16)
against one prompt at a time, on the embedded SmolLM2-135M-Instruct (dequantised once from the
installed GGUF into $DERIVLIB_DATA/models/, see ``decoder.materialize``).

Same model, same N prompts (smoke-style derivation prompts in the zero-shot template, with the
model's chat template), same stop strings, greedy, at most 64 new tokens. The figure is output
tokens per second: the tokens of the answers as returned (cut at the stop strings), re-encoded,
over wall time; the two runs must give the same answers. The last line prints the ratio (goal: >= 4).

    .venv/bin/python benchmarks/local_generate.py [--prompts 16] [--max-new-tokens 64] [--threads 2]
"""
from __future__ import annotations

import argparse
import random
import time

from derivlib import fewshot
from derivlib.models import decoder, t5

FUNCTIONS = ["f", r"\psi", r"\phi", "g"]
SYMBOLS = ["x", "t", r"\theta", "r"]


def smoke_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` prompts shaped like the smoke sets' (premise, intermediate, goal), seeded."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        fn, x, k = rng.choice(FUNCTIONS), rng.choice(SYMBOLS), rng.randint(2, 5)
        premise = rf"{fn}{{({x})}} = {x}^{{{k}}} \sin{{({x})}}"
        derived = (rf"\frac{{d}}{{d {x}}} {fn}{{({x})}} = {k} {x}^{{{k - 1}}} \sin{{({x})}} "
                   rf"+ {x}^{{{k}}} \cos{{({x})}}")
        goal = rf"\int {fn}{{({x})}}\, d{x} = \int {x}^{{{k}}} \sin{{({x})}}\, d{x}"
        prompts.append(f"Given {premise}, then derive {derived}, then obtain {goal}")
    return prompts


def measure(name: str, model, tokenizer, texts: list[str], batch_size: int, max_new_tokens: int):
    started = time.perf_counter()
    answers = decoder.generate(model, tokenizer, texts, batch_size=batch_size, max_new_tokens=max_new_tokens)
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    rate = tokens / seconds
    print(f"{name}: {len(texts)} prompts, batch {batch_size}: {tokens} output tokens in {seconds:.1f} s "
          f"= {rate:.1f} output tok/s", flush=True)
    return rate, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16, help="prompts decoded (default 16)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per answer at most (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    t5.prefer_passive_threads()
    t5.set_cpu_threads(args.threads)
    started = time.perf_counter()
    source = decoder.resolve(decoder.EMBEDDED)
    model, tokenizer = decoder.load(source, device="cpu")
    print(f"{source.label}: loaded in {time.perf_counter() - started:.1f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {args.threads} threads)")
    texts = [decoder.chat_text(tokenizer, fewshot.render_prompt([], p)) for p in smoke_prompts(args.prompts)]
    decoder.generate(model, tokenizer, texts[:1], max_new_tokens=4)  # warm-up: first-call allocations
    batched, batched_answers = measure("batched", model, tokenizer, texts, args.prompts, args.max_new_tokens)
    single, single_answers = measure("one at a time", model, tokenizer, texts, 1, args.max_new_tokens)
    same = sum(a == b for a, b in zip(batched_answers, single_answers))
    print(f"identical answers: {same}/{len(texts)}; first: {batched_answers[0][:120]!r}")
    print(f"{batched / single:.2f}x output tokens/s, batched ({args.prompts}) over one at a time")


if __name__ == "__main__":
    main()
