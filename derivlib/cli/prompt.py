"""``python -m derivlib prompt --model M --sets DIR [--out DIR]``: notebook 05_prompt_llm as a
command. Prompts a chat LLM on every item of a sets directory through an OpenAI-compatible
endpoint; ``--out`` becomes a complete run directory (params.json, meta.json, predictions.jsonl,
usage.json, COMPLETE) that ``score`` and ``check`` take as it is. Answers are cached outside it
(``--cache``), so rerunning the same command finishes what is missing and asks nothing twice,
two commands sharing a cache ask each prompt once, and a killed or interrupted run keeps every
answer it received. The API key is read from ``OPENAI_API_KEY`` only; credentials in
``--base-url`` (``user:password@``, ``?api-key=K``) are sent, and redacted in everything written
or printed."""
from __future__ import annotations

import sys
from pathlib import Path

from . import options
from ..models import llm
from ..stages import prompt_llm as stage

HELPS = {
    "model": "model name as the endpoint knows it (e.g. gpt-4)",
    "sets": "sets directory: a run directory of build-sets / 02_testsets, or any directory of set files",
    "base_url": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                "(empty: $OPENAI_BASE_URL, else OpenAI's API when $OPENAI_API_KEY is set); "
                "credentials in it are redacted in params.json, the cache, logs and output",
    "mode": "live: ask for what the cache lacks; replay: cache only, a miss is an error; "
            "auto: live if an endpoint is configured, else replay what is cached",
    "n_shots": "exemplars per prompt (0 = zero-shot)",
    "seed": "exemplar draw and the API's seed",
    "max_items": "first N static items and their perturbed ones (0 = all)",
    "concurrency": "requests in flight",
    "timeout": "seconds for a whole request, connecting to the last byte (a server that drips its "
               "answer is cut off), before it is retried",
}


def add_arguments(p):
    policy = llm.RetryPolicy
    options.add_params_arguments(p, stage.Params, required=("model", "sets"), helps=HELPS)
    options.add_out_argument(p, "predictions.jsonl, usage.json")
    p.add_argument("--cache", type=Path, default=None,
                   help="response cache directory, one file per answered prompt (default: <data root>/llm/cache, "
                        "i.e. $DERIVLIB_DATA/llm/cache or data/llm/cache, shared with the notebook). It lies "
                        "outside the run directory, so it survives reruns, kills and other --out directories; "
                        "it is checked for writing before the first request")
    p.add_argument("--max-retries", type=int, default=policy.max_retries,
                   help=f"retries per request (default: {policy.max_retries})")
    p.add_argument("--backoff", type=float, default=policy.base_delay,
                   help=f"first backoff in seconds, doubled per retry (default: {policy.base_delay})")
    p.add_argument("--max-wait", type=float, default=policy.max_wait,
                   help="longest wait before a retry, in seconds; a server whose Retry-After asks for longer "
                        f"fails the request, naming its wait (default: {policy.max_wait:g}). Waits over "
                        f"{policy.announce_wait:g} s are printed")
    p.add_argument("--empty-retries", type=int, default=policy.empty_retries,
                   help="times an empty answer is asked again before the item is recorded as failed "
                        f"(default: {policy.empty_retries})")
    p.add_argument("--max-response-bytes", type=int, default=llm.MAX_RESPONSE_BYTES,
                   help=f"largest response body accepted (default: {llm.MAX_RESPONSE_BYTES}); a larger one is "
                        "dropped unread and the run stops with an error naming the item")


def run(args) -> int:
    for name in ("max_retries", "backoff", "max_wait", "empty_retries"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.max_response_bytes < 1:
        raise ValueError(f"--max-response-bytes must be >= 1, got {args.max_response_bytes}")
    policy = llm.RetryPolicy(max_retries=args.max_retries, base_delay=args.backoff, max_wait=args.max_wait,
                             empty_retries=args.empty_retries)
    values = options.values(args, stage.Params)
    # The endpoint with its credentials goes to the stage; params.json and the run key get it redacted.
    base_url = values.get("base_url")
    if base_url:
        values["base_url"] = llm.redact_url(base_url)
    # A command's run is never published under a profile name.
    run_ = stage.open_run({**values, "profile": ""}, out=args.out)
    try:
        result = stage.run(run_, policy, cache_dir=args.cache, base_url=base_url or None,
                           max_response_bytes=args.max_response_bytes)
    except llm.Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 130
    except llm.LLMError as err:
        # Everything answered before the failure is in the cache; rerunning resumes from it.
        raise ValueError(f"{err} (answers received so far are cached; rerun to resume)") from None
    print(f"wrote {run_.dir / 'predictions.jsonl'} ({len(result.predictions)} predictions)")
    return 0
