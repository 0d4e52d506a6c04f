"""Chat requests answered by a causal LM in this process (:mod:`derivlib.models.decoder`), through
the same response cache as endpoints (:class:`derivlib.models.llm.ResponseCache`).

Why the cache, when nothing is paid for: a local answer costs CPU minutes, and a run killed half
way should keep them. Answers are stored a batch at a time, the moment each batch is decoded, so
a rerun decodes only what is missing, and the predictions of a run read exactly what was cached.

Unlike an endpoint, a greedy local model answers the same prompt the same way every time, so an
empty answer is an answer (cached, and scored as one) rather than a failure to retry.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from typing import Callable, Iterable

from . import decoder, llm

#: Requests decoded between two writes to the cache: what a kill can cost, in batches.
BATCHES_PER_WRITE = 1


def decoding_for(source: "decoder.ModelSource", max_tokens: int, chat_template: str) -> llm.Decoding:
    """The cache key's decoding parameters of a local model: its weights' identity (not only its
    name: a retrained adapter or another GGUF under the same name must not reuse old answers),
    the chat-template mode, the stop strings (another list cuts answers elsewhere), and the answer
    length. Greedy decoding has no temperature or seed."""
    stops = hashlib.sha256(json.dumps(list(decoder.STOP_STRINGS)).encode("utf-8")).hexdigest()[:8]
    return llm.Decoding(model=f"local:{source.label}:{identity_digest(source)}:{chat_template}:stops-{stops}",
                        temperature=0.0, max_tokens=max_tokens, seed=None)


def identity_digest(source: "decoder.ModelSource") -> str:
    """16 hex digits naming a model's weights (its :meth:`~derivlib.models.decoder.ModelSource.identity`).
    Where the weights have a digest, their path is left out: an adapter decoded from its run's
    ``.partial`` directory during training and from the finished run afterwards, or a model in
    another clone, is the same model and reuses the same answers."""
    identity = dict(source.identity())
    if "sha256" in identity:
        identity.pop("location", None)
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def answer_locally(requests: Iterable[llm.ChatRequest], decoding: llm.Decoding, cache: llm.ResponseCache, *,
                   generate: Callable[[list[str]], list[str]], render: Callable[[tuple], str],
                   count_tokens: Callable[[str], int], batch_size: int, mode: str = "live",
                   counters: llm.Counters | None = None,
                   on_answer: Callable[[llm.ChatRequest, llm.Answer], None] | None = None,
                   log: Callable[[str], None] | None = None) -> llm.Outcome:
    """Answer every request from the cache where it can and by ``generate`` (texts in, answers
    out, same order) for the rest; ``render`` turns a request's messages into the model's input
    text. ``mode`` ``replay`` decodes nothing: a miss is an error naming the item."""
    counters = counters if counters is not None else llm.Counters()
    answers, missing = llm.split_cached(requests, decoding, cache, counters)
    if not missing:
        return llm.Outcome(answers, [], counters)
    if mode == "replay":
        items = [r.item for r in missing.values()]
        more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
        raise llm.LLMError(f"replay mode: no cached answer for item {items[0]}{more} in {cache.directory}")
    cache.check_writable()
    pending = list(missing.items())
    step = max(1, batch_size * BATCHES_PER_WRITE)
    for start in range(0, len(pending), step):
        chunk = pending[start:start + step]
        texts = [render(request.messages) for _, request in chunk]
        outputs = generate(texts)
        for (key, request), text, content in zip(chunk, texts, outputs):
            usage = {"prompt_tokens": count_tokens(text), "completion_tokens": count_tokens(content)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            answer = llm.Answer(content=content, finish_reason="stop", usage=usage)
            cache.put(key, {
                "key": key, "item": request.item, "decoding": dataclasses.asdict(decoding),
                "messages": list(request.messages), "answer": content, "finish_reason": "stop",
                "usage": usage, "endpoint": "in-process",
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
            counters.add(new_answers=1, **usage)
            answers[key] = answer
            if on_answer is not None:
                on_answer(request, answer)
        if log is not None:
            log(f"{min(start + step, len(pending))} of {len(pending)} prompts decoded")
    return llm.Outcome(answers, [], counters)
