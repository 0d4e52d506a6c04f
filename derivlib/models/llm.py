"""Chat LLMs behind any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama).

Four pieces, each usable alone:

* :class:`ResponseCache`: one JSON file per request, named by the sha256 of the canonical JSON of
  (model, messages, decoding parameters). Written through a temporary file and ``os.replace``, so a
  run killed at any moment leaves every answer it received either whole or absent, never torn or
  twice; an answer already in the cache is never asked again and never overwritten. It is proved
  writable before the first request, and a per-prompt file lock lets processes that share it
  share the work: each prompt is asked once, by whichever process takes its lock first.
* :class:`RetryPolicy`: exponential backoff with jitter on 429, 5xx, timeouts, dropped
  connections, malformed bodies and empty answers, honouring ``Retry-After`` up to a ceiling
  (``max_wait``): a server asking for longer fails the request with a message naming its wait.
  The ``openai`` client's own retries are switched off (``max_retries=0``) so that this policy is
  the only one, and testable.
* :class:`ChatClient`: the ``openai`` client over :mod:`derivlib.models.transport`, which gives
  every request a deadline for the whole request (``timeout``; httpx2 alone times each read, so
  a server that drips its body never times out) and caps the response (``max_response_bytes``).
* :func:`answer_all`: looks every request up in the cache, asks the endpoint for the missing ones
  through a bounded thread pool (``live``), or only reads the cache (``replay``). An item the model
  keeps answering empty is recorded as failed and the others go on; Ctrl-C stops the threads,
  abandons what is still in flight after a short grace, and says what was kept.

The API key is read from ``OPENAI_API_KEY`` only. It is never a parameter, never logged, and
never written. Credentials in the endpoint URL (``user:password@``, ``?api-key=K``, ``token=``...)
are sent but redacted (:func:`redact_url`) everywhere derivlib writes or prints the URL.

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
import re
import sys
import threading
import time
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from filelock import FileLock
from filelock import Timeout as LockTimeout

from ..base.interrupts import deferred_signals
from .transport import BodyTooLarge, GuardedTransport, env_proxy

MODES = ("live", "replay", "auto")
#: Placeholder key for local servers (vLLM, llama.cpp, Ollama) that need none: the ``openai``
#: client refuses to start without one.
NO_KEY = "EMPTY"
#: Largest response body accepted, in bytes. An answer of 512 tokens is a few kilobytes.
MAX_RESPONSE_BYTES = 1_000_000
#: Bytes written (and removed) in the cache directory before the first request, to prove that
#: it can take answers: a read-only or full cache fails before anything is asked.
PROBE_BYTES = 64 * 1024
#: Seconds that requests in flight get to land in the cache after Ctrl-C before they are abandoned.
INTERRUPT_GRACE = 2.0
#: Seconds between looks for a Ctrl-C while waiting for answers.
SIGNAL_POLL = 0.1
REDACTED = "REDACTED"
#: Query parameter names whose values are credentials (api-key, key, token, access_token, sig...).
SECRET_QUERY_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.IGNORECASE)


class LLMError(RuntimeError):
    """A request failed for good (after the last retry, or at once for errors that retrying
    cannot fix). The message names the item."""


class EmptyAnswer(LLMError):
    """The model answered nothing on every attempt: the item is recorded as failed, the others go on."""


class ResponseTooLarge(LLMError):
    """The response body exceeded ``max_response_bytes``; it was dropped unread, nothing cached."""


class CacheError(LLMError):
    """The response cache cannot be written (read-only, full, not a directory)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while answering: the threads have stopped; the message says what was kept."""


class _Cancelled(Exception):
    """A worker saw the stop event: not a failure of the item."""


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

    One file per key rather than an append-only JSONL: worker threads (and processes sharing a
    cache) write without a shared file, a kill leaves at most a stray ``.tmp`` file that readers
    ignore, and a key can never appear twice, so nothing needs deduplicating on read. The lock of
    a key (:meth:`lock`, ``.<key>.lock`` beside its file) is held while the key is asked.
    """

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise CacheError(f"cache file {path} cannot be read ({err.strerror or err})") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            # Writes are atomic, so this is damage from outside; say where, do not guess.
            raise LLMError(f"cache file {path} is not valid JSON ({err.msg}); delete it to ask again") from None

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def check_writable(self, probe_bytes: int = PROBE_BYTES) -> None:
        """Raise :class:`CacheError` unless ``probe_bytes`` can be written, synced and removed here."""
        probe = self.directory / f".write-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as fh:
                fh.write(b"\0" * probe_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise CacheError(f"the response cache {self.directory} cannot be written ({err.strerror or err}); "
                             "nothing was asked. Free some space, make it writable or pass --cache DIR") from None
        finally:
            try:
                probe.unlink()
            except OSError:
                pass

    def put(self, key: str, entry: dict) -> bool:
        """Store ``entry`` unless ``key`` is already answered. Returns whether it was written."""
        path = self.path(key)
        if path.exists():
            return False
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False, sort_keys=True, indent=1)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as err:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise CacheError(f"could not store the answer for item {entry.get('item', key)} in {path} "
                             f"({err.strerror or err}); the answers stored before it are intact") from None
        return True

    def lock(self, key: str) -> FileLock:
        """The inter-process lock of ``key``, held while it is asked."""
        shard = self.path(key).parent
        try:
            shard.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(f"the response cache {self.directory} cannot be written ({err.strerror or err})") from None
        return FileLock(str(shard / f".{key}.lock"))

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
    ``max_delay``. A ``Retry-After`` from the server replaces the backoff when it is longer; one
    over ``max_wait`` fails the request instead. Waits over ``announce_wait`` seconds are
    announced. An empty answer is asked again up to ``empty_retries`` times. ``sleep`` (default:
    a wait that Ctrl-C and a failure elsewhere cut short) and ``rng`` are injectable so tests run
    in milliseconds and deterministically."""
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_wait: float = 60.0
    announce_wait: float = 5.0
    empty_retries: int = 2
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(0))
    sleep: Callable[[float], None] | None = None

    def __post_init__(self):
        self._lock = threading.Lock()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2 ** attempt)
        with self._lock:  # random.Random is shared between worker threads
            backoff = backoff / 2 + self.rng.uniform(0, backoff / 2)
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return min(backoff, self.max_wait)


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

def _is_secret(name: str) -> bool:
    return bool(SECRET_QUERY_NAME.search(name))


def redact_url(url: str | None) -> str | None:
    """The URL without its credentials, for logs, files and run keys: the user:password part is
    removed and the value of every query parameter named like a secret (``api-key``, ``key``,
    ``token``, ``sig``...) becomes ``REDACTED``."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if any(_is_secret(name) for name, _ in pairs):
        query = urllib.parse.urlencode([(n, REDACTED if _is_secret(n) else v) for n, v in pairs])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL holds (user, password, secret query values), to scrub from messages."""
    if not url:
        return []
    parts = urllib.parse.urlsplit(url)
    found = [parts.username, parts.password]
    found += [v for n, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if _is_secret(n)]
    return [s for s in found if s and s != REDACTED]


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
    """What a run cost: HTTP calls, retries by reason, new, cached and failed answers, tokens."""
    calls: int = 0
    retries: int = 0
    new_answers: int = 0
    cached_answers: int = 0
    skipped: int = 0
    failed: int = 0
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


# ----------------------------------------------------------------------------------- client

def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ChatClient:
    """The ``openai`` client with our retry policy and :class:`GuardedTransport`, for one endpoint
    and one :class:`Decoding`. ``timeout`` bounds each whole request; ``notify`` receives the
    announcements of long waits; ``stop`` (set by :func:`answer_all` on Ctrl-C or a failure) ends
    retries and waits."""

    def __init__(self, decoding: Decoding, base_url: str | None = None, *, timeout: float = 120.0,
                 policy: RetryPolicy | None = None, counters: Counters | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, notify: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None):
        import openai  # optional heavy dependency (0.7 s to import): replaying a cache needs no client

        self.endpoint = resolve_endpoint(base_url)
        if self.endpoint is None:
            raise LLMError("no endpoint: pass a base URL (--base-url / base_url) or set "
                           "OPENAI_BASE_URL, and OPENAI_API_KEY for hosted APIs")
        self.decoding = decoding
        self.policy = policy or RetryPolicy()
        self.counters = counters or Counters()
        self.notify = notify or _stderr
        self.stop = stop or threading.Event()
        self._openai = openai
        self._secrets = url_secrets(self.endpoint)
        # openai appends paths to the base URL's query; its query travels as default_query instead.
        parts = urllib.parse.urlsplit(self.endpoint)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)) or None
        self.timeout = timeout
        self.transport = GuardedTransport(timeout, max_response_bytes, proxy=env_proxy(base))
        http_client = openai.DefaultHttpxClient(transport=self.transport, timeout=timeout)
        self._client = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY, base_url=base,
                                     default_query=query, timeout=timeout, max_retries=0, http_client=http_client)

    def abort(self) -> None:
        """Stop: no retry, no wait, and every request in flight ended now."""
        self.stop.set()
        self.transport.abort()

    def close(self) -> None:
        self._client.close()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
                text = text.replace(form, REDACTED)
        return text

    def _create(self, messages: Sequence[dict]):
        kwargs: dict[str, Any] = dict(model=self.decoding.model, messages=list(messages),
                                      temperature=self.decoding.temperature,
                                      max_tokens=self.decoding.max_tokens)
        if self.decoding.seed is not None:
            kwargs["seed"] = self.decoding.seed
        return self._client.chat.completions.create(**kwargs)

    def _classify(self, err: Exception) -> tuple[str, float | None, str | None] | None:
        """(reason, Retry-After in seconds, the header as sent) if ``err`` is worth retrying, None
        if retrying cannot help."""
        oa = self._openai
        if isinstance(err, oa.APITimeoutError):
            return "timeout", None, None
        if isinstance(err, oa.APIConnectionError):
            return "connection", None, None
        if isinstance(err, oa.APIStatusError):
            status = err.status_code
            if status in RETRIABLE_STATUS or status >= 500:
                raw = err.response.headers.get("retry-after")
                return str(status), parse_retry_after(raw), raw
            return None
        if isinstance(err, (oa.APIResponseValidationError, MalformedResponse, ValueError)):
            return "malformed", None, None  # a proxy's HTML error page, a truncated body (JSONDecodeError)
        return None

    def _wait(self, item: str, attempt: int, retry_after: float | None, reason: str) -> None:
        delay = self.policy.delay(attempt, retry_after)
        if delay > self.policy.announce_wait:
            told = ", as the server's Retry-After asks" if retry_after is not None and retry_after >= delay else ""
            self.notify(f"item {item}: {reason}; waiting {delay:.0f} s before retrying{told}")
        if self.policy.sleep is not None:
            self.policy.sleep(delay)
        elif self.stop.wait(delay):
            raise _Cancelled(item)

    def complete(self, request: ChatRequest) -> Answer:
        where = f"item {request.item}: model {self.decoding.model!r} at {redact_url(self.endpoint)}"
        attempt = empties = 0
        while True:
            if self.stop.is_set():
                raise _Cancelled(request.item)
            self.counters.add(calls=1)
            try:
                response = self._create(request.messages)
                content, finish_reason = _first_choice(response)
            except Exception as err:  # noqa: BLE001 -- sorted by _classify, the rest re-raised as LLMError
                if self.stop.is_set():
                    raise _Cancelled(request.item) from None
                if isinstance(err, BodyTooLarge):
                    raise ResponseTooLarge(f"{where}: {err}") from None
                verdict = self._classify(err)
                if verdict is None:
                    if getattr(err, "status_code", None) == 404:
                        raise LLMError(f"{where}: the endpoint answered 404 (unknown model or wrong "
                                       f"base URL): {self._scrub(_short(err))}") from None
                    raise LLMError(f"{where}: {type(err).__name__}: {self._scrub(_short(err))}") from None
                reason, retry_after, raw = verdict
                if retry_after is not None and retry_after > self.policy.max_wait:
                    raise LLMError(f"{where}: {reason}, and the server asks to wait {retry_after:.0f} s "
                                   f"(Retry-After: {raw}), over the ceiling of {self.policy.max_wait:g} s "
                                   "(max_wait, --max-wait); nothing more was sent for this item") from None
                if attempt >= self.policy.max_retries:
                    last = (f"no complete response within {self.timeout:g} s (timeout, --timeout)"
                            if reason == "timeout" else self._scrub(_short(err)))
                    raise LLMError(f"{where}: gave up after {attempt + 1} attempts (last: {reason}: {last})") from None
                self.counters.retried(reason)
                self._wait(request.item, attempt, retry_after, reason)
                attempt += 1
                continue
            if not content or not content.strip():
                if empties >= self.policy.empty_retries:
                    raise EmptyAnswer(f"{where}: empty answer {empties + 1} times (finish_reason="
                                      f"{finish_reason!r}); recorded as failed, nothing cached")
                self.counters.retried("empty")
                self._wait(request.item, empties, None, "empty answer")
                empties += 1
                continue
            usage = _usage(response)
            self.counters.add(**usage)
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
    failed: list = dataclasses.field(default_factory=list)  # {"item", "reason"}: empty on every attempt


def _cached_answer(entry: dict) -> Answer:
    return Answer(content=entry["answer"], finish_reason=entry.get("finish_reason"),
                  usage=entry.get("usage", {}), cached=True)


def split_cached(requests: Iterable[ChatRequest], decoding: Decoding, cache: ResponseCache,
                 counters: Counters) -> tuple[dict[str, Answer], dict[str, ChatRequest]]:
    """(answers found in the cache, requests still to answer), both by request key; a request
    whose key is already seen is dropped, so duplicates are asked once."""
    answers: dict[str, Answer] = {}
    missing: dict[str, ChatRequest] = {}
    for request in requests:
        key = request.key(decoding)
        if key in answers or key in missing:
            continue
        entry = cache.get(key)
        if entry is not None:
            answers[key] = _cached_answer(entry)
            counters.add(cached_answers=1)
        else:
            missing[key] = request
    return answers, missing


def answer_all(requests: Iterable[ChatRequest], decoding: Decoding, cache: ResponseCache, *,
               mode: str = "auto", base_url: str | None = None, concurrency: int = 4,
               timeout: float = 120.0, policy: RetryPolicy | None = None,
               allow_missing: bool = False, on_answer: Callable[[ChatRequest, Answer], None] | None = None,
               client: ChatClient | None = None, counters: Counters | None = None,
               max_response_bytes: int = MAX_RESPONSE_BYTES,
               notify: Callable[[str], None] | None = None) -> Outcome:
    """Answer every request: from the cache where it can, from the endpoint for the rest.

    ``mode``: ``live`` asks the endpoint for what the cache lacks (no endpoint is an error);
    ``replay`` never touches the network and a cache miss is an error naming the item, unless
    ``allow_missing`` (then misses are returned in ``skipped``); ``auto`` is ``live`` when an
    endpoint is configured and ``replay`` with ``allow_missing`` otherwise. Every answer is
    cached the moment it arrives, so a run killed half-way loses nothing it was given.

    Before the first request the cache is proved writable. Each prompt is asked under its lock in
    the cache: a prompt another process is asking is put back and, once its lock is free, read
    from the cache. An item answered empty on every attempt is returned in ``failed``. When a
    request fails for good, no further request is sent, those in flight finish and are cached,
    and the first failure is raised. On Ctrl-C the threads stop, requests in flight get
    :data:`INTERRUPT_GRACE` seconds to land and are then abandoned, and :class:`Interrupted` says
    what was kept.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if client is not None:
        counters = client.counters
    counters = counters if counters is not None else Counters()
    if mode == "auto":
        live = client is not None or resolve_endpoint(base_url) is not None
        mode, allow_missing = ("live", allow_missing) if live else ("replay", True)

    answers, missing = split_cached(requests, decoding, cache, counters)

    if not missing:
        return Outcome(answers, [], counters)
    if mode == "replay":
        items = [r.item for r in missing.values()]
        if not allow_missing:
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            raise LLMError(f"replay mode: no cached answer for item {items[0]}{more} in {cache.directory}")
        counters.add(skipped=len(items))
        return Outcome(answers, items, counters)

    cache.check_writable()
    own_client = client is None
    if client is None:
        client = ChatClient(decoding, base_url, timeout=timeout, policy=policy, counters=counters,
                            max_response_bytes=max_response_bytes, notify=notify)
    stop = client.stop

    def ask(key: str, request: ChatRequest, blocking: bool) -> tuple[str, str, ChatRequest, Any]:
        if stop.is_set():
            return "cancelled", key, request, None
        lock = cache.lock(key)
        try:
            if blocking:
                lock.acquire(timeout=-1, poll_interval=0.05, cancel_check=stop.is_set)
            else:
                lock.acquire(blocking=False)
        except LockTimeout:  # another process is asking it (or we were stopped while waiting)
            return ("cancelled" if blocking else "deferred"), key, request, None
        try:
            entry = cache.get(key)
            if entry is not None:  # answered by another process since we looked
                return "shared", key, request, _cached_answer(entry)
            try:
                answer = client.complete(request)
            except _Cancelled:
                return "cancelled", key, request, None
            except EmptyAnswer as err:
                return "failed", key, request, str(err)
            cache.put(key, {
                "key": key, "item": request.item, "decoding": dataclasses.asdict(decoding),
                "messages": list(request.messages), "answer": answer.content,
                "finish_reason": answer.finish_reason, "usage": answer.usage,
                "endpoint": redact_url(client.endpoint),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
            counters.add(new_answers=1)
            return "answered", key, request, answer
        finally:
            if key in cache:  # whoever takes the lock from now on finds the answer: its file can go
                try:
                    os.unlink(lock.lock_file)
                except OSError:
                    pass
            lock.release()

    n_cached = len(answers)
    failed: list[dict] = []
    first_error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="llm")
    pending = {pool.submit(ask, key, request, False) for key, request in missing.items()}
    with deferred_signals() as signals:
        try:
            while pending:
                done, pending = wait(pending, timeout=SIGNAL_POLL, return_when=FIRST_COMPLETED)
                for future in done:
                    error = future.exception()
                    if error is not None:
                        if first_error is None:
                            first_error = error
                            stop.set()
                        continue
                    status, key, request, value = future.result()
                    if status == "deferred" and not stop.is_set():
                        pending.add(pool.submit(ask, key, request, True))
                    elif status == "failed":
                        failed.append({"item": request.item, "reason": value})
                        counters.add(failed=1)
                    elif status == "shared":
                        answers[key] = value
                        counters.add(cached_answers=1)
                    elif status == "answered":
                        answers[key] = value
                        if on_answer is not None:
                            on_answer(request, value)
                signals.check()  # Ctrl-C acts here, never inside wait(): see derivlib.base.interrupts
        except BaseException as err:
            # Interrupted (Ctrl-C, a callback): send nothing more, give what is in flight a moment to
            # land in the cache, then end it.
            stop.set()
            try:
                wait(pending, timeout=INTERRUPT_GRACE)
            finally:
                client.abort()
                pool.shutdown(wait=True, cancel_futures=True)
            if isinstance(err, KeyboardInterrupt) and not isinstance(err, Interrupted):
                have = n_cached + sum(1 for key in missing if key in cache)
                raise Interrupted(
                    f"{counters.new_answers} new answers received this run are cached in {cache.directory} "
                    f"({have} of {n_cached + len(missing)} prompts answered); requests still in flight were "
                    "abandoned; rerun the same command to ask only for the rest") from None
            raise
    pool.shutdown(wait=True)
    if own_client:
        client.close()
    if first_error is not None:
        raise first_error
    return Outcome(answers, [], counters, failed)
