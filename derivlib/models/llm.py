"""Chat LLMs behind any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama).

Three pieces, each usable alone:

* :class:`ResponseCache`: one JSON file per request, named by the sha256 of the canonical JSON of
  (model, messages, decoding parameters). Written through a temporary file and ``os.replace``, so a
  run killed at any moment leaves every answer it received either whole or absent, never torn or
  twice; an answer already in the cache is never asked again and never overwritten.
* :class:`RetryPolicy`: exponential backoff with jitter on 429, 5xx, timeouts, dropped
  connections and malformed bodies, honouring ``Retry-After``. The ``openai`` client's own
  retries are switched off (``max_retries=0``) so that this policy is the only one, and testable.
* :func:`answer_all`: looks every request up in the cache, asks the endpoint for the missing ones
  through a bounded thread pool (``live``), or only reads the cache (``replay``).

The API key is read from ``OPENAI_API_KEY`` only. It is never a parameter, never logged, and
never written: cache entries and usage records hold the model, the messages, the decoding
parameters, the answer, and the endpoint with any user:password part removed.

This module knows nothing of derivations; :mod:`derivlib.fewshot` builds the prompts and parses
the answers.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import email.utils
import hashlib
import json
import os
import random
import threading
import time
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

MODES = ("live", "replay", "auto")
#: Placeholder key for local servers (vLLM, llama.cpp, Ollama) that need none: the ``openai``
#: client refuses to start without one.
NO_KEY = "EMPTY"


class LLMError(RuntimeError):
    """A request failed for good (after the last retry, or at once for errors that retrying
    cannot fix). The message names the item."""


# ----------------------------------------------------------------------------------- requests

@dataclasses.dataclass(frozen=True)
class Decoding:
    """Everything besides the messages that determines an answer; part of the cache key."""
    model: str
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    item: str  # names the item in errors and logs, e.g. "g1-17 (VR)"
    messages: tuple  # of {"role", "content"} dicts

    def key(self, decoding: Decoding) -> str:
        return request_key(self.messages, decoding)


def request_key(messages: Sequence[dict], decoding: Decoding) -> str:
    """sha256 of the canonical JSON of the model, the messages and the decoding parameters.

    The endpoint is deliberately not part of the key: answers fetched live replay offline, where
    there is no endpoint at all.
    """
    blob = json.dumps({"decoding": dataclasses.asdict(decoding), "messages": list(messages)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def user_message(text: str) -> tuple:
    return ({"role": "user", "content": text},)


@dataclasses.dataclass
class Answer:
    content: str
    finish_reason: str | None = None
    usage: dict = dataclasses.field(default_factory=dict)
    cached: bool = False


# ----------------------------------------------------------------------------------- cache

class ResponseCache:
    """Answers on disk, one file per request key: ``<dir>/<key[:2]>/<key>.json``.

    One file per key rather than an append-only JSONL: worker threads (and two processes sharing
    a cache) write without a lock, a kill leaves at most a stray ``.tmp`` file that readers
    ignore, and a key can never appear twice, so nothing needs deduplicating on read.
    """

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            # Writes are atomic, so this is damage from outside; say where, do not guess.
            raise LLMError(f"cache file {path} is not valid JSON ({err.msg}); delete it to ask again") from None

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, key: str, entry: dict) -> bool:
        """Store ``entry`` unless ``key`` is already answered. Returns whether it was written."""
        path = self.path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, ensure_ascii=False, sort_keys=True, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return True

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("??/*.json"))

    def __len__(self) -> int:
        return len(self.keys())


# ----------------------------------------------------------------------------------- retries

RETRIABLE_STATUS = {408, 409, 429}  # plus every 5xx


@dataclasses.dataclass
class RetryPolicy:
    """Exponential backoff with jitter: wait ``base_delay * 2**attempt``, halved and topped up
    by a uniform draw (equal jitter, so parallel clients do not retry in lockstep), at most
    ``max_delay``. A ``Retry-After`` from the server replaces the backoff when it is longer.
    ``sleep`` and ``rng`` are injectable so tests run in milliseconds and deterministically."""
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 600.0
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(0))
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        self._lock = threading.Lock()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2 ** attempt)
        with self._lock:  # random.Random is shared between worker threads
            backoff = backoff / 2 + self.rng.uniform(0, backoff / 2)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_retry_after))
        return backoff


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


# ----------------------------------------------------------------------------------- endpoint

def redact_url(url: str | None) -> str | None:
    """The URL without a user:password part, for logs and cache entries."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def resolve_endpoint(base_url: str | None = None) -> str | None:
    """The endpoint to ask: ``base_url``, else ``OPENAI_BASE_URL``, else OpenAI's own API when
    ``OPENAI_API_KEY`` is set, else None (no endpoint: only the cache can answer)."""
    url = (base_url or "").strip() or os.environ.get("OPENAI_BASE_URL", "").strip()
    if url:
        return url
    if os.environ.get("OPENAI_API_KEY"):
        return "https://api.openai.com/v1"
    return None


@dataclasses.dataclass
class Counters:
    """What a run cost: HTTP calls, retries by reason, new and cached answers, tokens."""
    calls: int = 0
    retries: int = 0
    new_answers: int = 0
    cached_answers: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    retry_reasons: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def retried(self, reason: str) -> None:
        with self._lock:
            self.retries += 1
            self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class ChatClient:
    """The ``openai`` client with our retry policy, for one endpoint and one :class:`Decoding`."""

    def __init__(self, decoding: Decoding, base_url: str | None = None, *, timeout: float = 120.0,
                 policy: RetryPolicy | None = None, counters: Counters | None = None):
        import openai  # imported here: replaying a cache needs no client library

        self.endpoint = resolve_endpoint(base_url)
        if self.endpoint is None:
            raise LLMError("no endpoint: pass a base URL (--base-url / base_url) or set "
                           "OPENAI_BASE_URL, and OPENAI_API_KEY for hosted APIs")
        self.decoding = decoding
        self.policy = policy or RetryPolicy()
        self.counters = counters or Counters()
        self._openai = openai
        self._client = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY,
                                     base_url=self.endpoint, timeout=timeout, max_retries=0)

    def _create(self, messages: Sequence[dict]):
        kwargs: dict[str, Any] = dict(model=self.decoding.model, messages=list(messages),
                                      temperature=self.decoding.temperature,
                                      max_tokens=self.decoding.max_tokens)
        if self.decoding.seed is not None:
            kwargs["seed"] = self.decoding.seed
        return self._client.chat.completions.create(**kwargs)

    def _classify(self, err: Exception) -> tuple[str, float | None] | None:
        """(reason, Retry-After) if ``err`` is worth retrying, None if retrying cannot help."""
        oa = self._openai
        if isinstance(err, oa.APITimeoutError):
            return "timeout", None
        if isinstance(err, oa.APIConnectionError):
            return "connection", None
        if isinstance(err, oa.APIStatusError):
            status = err.status_code
            if status in RETRIABLE_STATUS or status >= 500:
                return str(status), parse_retry_after(err.response.headers.get("retry-after"))
            return None
        if isinstance(err, (oa.APIResponseValidationError, MalformedResponse, ValueError)):
            return "malformed", None  # a proxy's HTML error page, a truncated body (JSONDecodeError)
        return None

    def complete(self, request: ChatRequest) -> Answer:
        where = f"item {request.item}: model {self.decoding.model!r} at {redact_url(self.endpoint)}"
        attempt = 0
        while True:
            self.counters.add(calls=1)
            try:
                response = self._create(request.messages)
                content, finish_reason = _first_choice(response)
            except Exception as err:  # noqa: BLE001 -- sorted by _classify, the rest re-raised as LLMError
                verdict = self._classify(err)
                if verdict is None:
                    if getattr(err, "status_code", None) == 404:
                        raise LLMError(f"{where}: the endpoint answered 404 (unknown model or wrong "
                                       f"base URL): {_short(err)}") from None
                    raise LLMError(f"{where}: {type(err).__name__}: {_short(err)}") from None
                reason, retry_after = verdict
                if attempt >= self.policy.max_retries:
                    raise LLMError(f"{where}: gave up after {attempt + 1} attempts "
                                   f"(last: {reason}: {_short(err)})") from None
                self.counters.retried(reason)
                self.policy.sleep(self.policy.delay(attempt, retry_after))
                attempt += 1
                continue
            if not content or not content.strip():
                raise LLMError(f"{where}: empty answer (finish_reason={finish_reason!r}); "
                               "nothing was cached for it")
            usage = _usage(response)
            self.counters.add(new_answers=1, **usage)
            return Answer(content=content, finish_reason=finish_reason, usage=usage)


class MalformedResponse(ValueError):
    """A 200 whose body parsed but lacks ``choices[0].message``."""


def _first_choice(response) -> tuple[str | None, str | None]:
    try:
        choice = response.choices[0]
        return choice.message.content, choice.finish_reason
    except (AttributeError, IndexError, TypeError, KeyError):
        raise MalformedResponse(f"response without choices[0].message: {str(response)[:200]}") from None


def _short(err: Exception, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _usage(response) -> dict:
    usage = getattr(response, "usage", None)
    out = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None) if usage is not None else None
        out[name] = int(value) if isinstance(value, int) else 0
    return out


# ----------------------------------------------------------------------------------- batches

@dataclasses.dataclass
class Outcome:
    answers: dict  # request key -> Answer
    skipped: list  # items with no cached answer (replay that allows misses)
    counters: Counters


def answer_all(requests: Iterable[ChatRequest], decoding: Decoding, cache: ResponseCache, *,
               mode: str = "auto", base_url: str | None = None, concurrency: int = 4,
               timeout: float = 120.0, policy: RetryPolicy | None = None,
               allow_missing: bool = False, on_answer: Callable[[ChatRequest, Answer], None] | None = None,
               client: ChatClient | None = None, counters: Counters | None = None) -> Outcome:
    """Answer every request: from the cache where it can, from the endpoint for the rest.

    ``mode``: ``live`` asks the endpoint for what the cache lacks (no endpoint is an error);
    ``replay`` never touches the network and a cache miss is an error naming the item, unless
    ``allow_missing`` (then misses are returned in ``skipped``); ``auto`` is ``live`` when an
    endpoint is configured and ``replay`` with ``allow_missing`` otherwise. Every answer is
    cached the moment it arrives, so a run killed half-way loses nothing it was given.

    When a request fails for good, no further request is sent, those in flight finish and are
    cached, and the first failure is raised.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if client is not None:
        counters = client.counters
    counters = counters if counters is not None else Counters()
    if mode == "auto":
        live = client is not None or resolve_endpoint(base_url) is not None
        mode, allow_missing = ("live", allow_missing) if live else ("replay", True)

    answers: dict[str, Answer] = {}
    missing: dict[str, ChatRequest] = {}  # key -> first request with it; duplicates asked once
    for request in requests:
        key = request.key(decoding)
        if key in answers or key in missing:
            continue
        entry = cache.get(key)
        if entry is not None:
            answers[key] = Answer(content=entry["answer"], finish_reason=entry.get("finish_reason"),
                                  usage=entry.get("usage", {}), cached=True)
            counters.add(cached_answers=1)
        else:
            missing[key] = request

    if not missing:
        return Outcome(answers, [], counters)
    if mode == "replay":
        items = [r.item for r in missing.values()]
        if not allow_missing:
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            raise LLMError(f"replay mode: no cached answer for item {items[0]}{more} in {cache.directory}")
        counters.add(skipped=len(items))
        return Outcome(answers, items, counters)

    if client is None:
        client = ChatClient(decoding, base_url, timeout=timeout, policy=policy, counters=counters)
    stop = threading.Event()

    def ask(key: str, request: ChatRequest) -> tuple[str, ChatRequest, Answer]:
        if stop.is_set():
            return key, request, None
        answer = client.complete(request)
        cache.put(key, {
            "key": key, "item": request.item, "decoding": dataclasses.asdict(decoding),
            "messages": list(request.messages), "answer": answer.content,
            "finish_reason": answer.finish_reason, "usage": answer.usage,
            "endpoint": redact_url(client.endpoint),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        return key, request, answer

    first_error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="llm") as pool:
        pending = {pool.submit(ask, key, request) for key, request in missing.items()}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        if first_error is None:
                            first_error = error
                            stop.set()
                        continue
                    key, request, answer = future.result()
                    if answer is not None:
                        answers[key] = answer
                        if on_answer is not None:
                            on_answer(request, answer)
        except BaseException:
            # Interrupted (Ctrl-C, a callback): send nothing more; what is in flight still lands
            # in the cache when the pool shuts down.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if first_error is not None:
        raise first_error
    return Outcome(answers, [], counters)
