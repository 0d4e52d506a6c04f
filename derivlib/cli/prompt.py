"""``python -m derivlib prompt``: prompt a chat LLM on a sets directory through an OpenAI-compatible
endpoint. ``--out`` receives ``predictions.jsonl``, ``usage.json``, ``params.json`` and, unless
``--cache`` names another directory, the response cache (``<out>/cache``). Rerunning the same
command finishes what is missing and asks nothing twice. The API key is read from
``OPENAI_API_KEY`` only."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import config, fewshot
from ..models import llm


def add_arguments(p):
    d = fewshot.PromptParams()
    p.add_argument("--model", required=True, help="model name as the endpoint knows it (e.g. gpt-4)")
    p.add_argument("--base-url", default="", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                   "(default: $OPENAI_BASE_URL, else OpenAI's API when $OPENAI_API_KEY is set)")
    p.add_argument("--sets", type=Path, required=True, help="sets directory (output of build-sets / 02_testsets)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--cache", type=Path, help="response cache directory (default: <out>/cache)")
    p.add_argument("--mode", choices=llm.MODES, default=d.mode,
                   help="live: ask for what the cache lacks; replay: cache only, a miss is an error; "
                        "auto: live if an endpoint is configured, else replay what is cached")
    p.add_argument("--n-shots", type=int, default=d.n_shots, help=f"exemplars per prompt (default {d.n_shots}; 0 = zero-shot)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--seed", type=int, default=d.seed, help="exemplar draw and the API's seed")
    p.add_argument("--max-items", type=int, default=d.max_items, help="first N static items and their perturbed ones (0 = all)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight")
    p.add_argument("--timeout", type=float, default=d.timeout, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=llm.RetryPolicy.max_retries)
    p.add_argument("--backoff", type=float, default=llm.RetryPolicy.base_delay,
                   help="first backoff in seconds, doubled per retry")


def run(args) -> int:
    params = config.validate(fewshot.PromptParams, {
        "sets": str(args.sets), "model": args.model, "base_url": args.base_url, "mode": args.mode,
        "n_shots": args.n_shots, "temperature": args.temperature, "max_tokens": args.max_tokens,
        "seed": args.seed, "max_items": args.max_items, "concurrency": args.concurrency,
        "timeout": args.timeout, "profile": ""})
    if args.max_retries < 0 or args.backoff < 0:
        raise ValueError("--max-retries and --backoff must be >= 0")
    config.check_writable(args.out / "predictions.jsonl", "out")
    policy = llm.RetryPolicy(max_retries=args.max_retries, base_delay=args.backoff)
    config.atomic_write_json(args.out / "params.json", dataclasses.asdict(params))
    try:
        result = fewshot.prompt_sets(params, args.sets, args.out, args.cache or args.out / "cache",
                                     policy=policy)
    except llm.LLMError as err:
        # Everything answered before the failure is in the cache; rerunning resumes from it.
        raise ValueError(f"{err} (answers received so far are cached; rerun to resume)") from None
    print(f"wrote {args.out / 'predictions.jsonl'} ({len(result.predictions)} predictions)")
    return 0
