"""Stage ``prompt_llm`` (notebook ``05_prompt_llm``, command ``prompt``): every test item of a sets
directory put to a chat LLM with the authors' few-shot template (:mod:`derivlib.fewshot`), through
any OpenAI-compatible endpoint (``backend="openai"``, :mod:`derivlib.models.llm`) or a causal LM
decoded in this process (``backend="transformers"``, :mod:`derivlib.models.decoder`: the embedded
SmolLM2, a GGUF file, a model directory, a cached hub id, or a ``train_lora`` run's adapter).

The run directory holds ``predictions.jsonl`` (the answered items, in set order, in the shared
predictions format), ``usage.json`` (calls, retries, tokens of the last complete invocation) and
``usage_log.jsonl`` (one line per invocation, failed and interrupted ones included).

Answers live in a response cache outside the run directory (default :func:`default_cache_dir`),
one file per prompt written the moment it arrives: a killed run keeps every answer it received,
a rerun (of this run, or of another run with the same prompts, in this process or another one
at the same time) asks nothing twice, and ``make clean`` never deletes paid calls. Items the
model answered empty on every attempt are left out of the predictions and listed in
``usage.json`` (``failed_items``); a rerun asks them again. A base URL given with credentials
(``--base-url 'https://host/v1?api-key=K'``) reaches :func:`run` as ``base_url``; the parameter,
and so ``params.json`` and the run key, hold its redacted form.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from .. import fewshot
from ..base.files import atomic_write_json, file_digest, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..base.vocabulary import SET_FILES, SETS, split_equations
from ..models import decoder, llm, local, t5
from ..readers import runs
from . import rundir

STAGE = "prompt_llm"
BACKENDS = ("openai", "transformers")


@dataclasses.dataclass(frozen=True)
class Params:
    sets: str = "testsets/smoke"  # run directory of 02_testsets (train.jsonl + static/VR/EE/AG/SR.jsonl)
    model: str = "gpt-4"  # openai: the name the endpoint knows (the paper: gpt-4, gpt-3.5-turbo); transformers: embedded, a .gguf file, a model directory, a cached hub id or a train_lora run
    backend: str = "openai"  # openai: an OpenAI-compatible endpoint; transformers: decode in this process (batched, greedy)
    base_url: str = ""  # OpenAI-compatible endpoint; empty: $OPENAI_BASE_URL, else OpenAI when $OPENAI_API_KEY is set, else none
    mode: str = "auto"  # live: ask for what the cache lacks; replay: cache only (a miss is an error); auto: live if an endpoint is set, else replay
    n_shots: int = 5  # exemplars per prompt, as in the paper; 0 for zero-shot
    temperature: float = 0.0  # decoding temperature
    max_tokens: int = 512  # longest answer, in tokens
    seed: int = 42  # exemplar draw, and the API's seed where the endpoint honours it
    max_items: int = 0  # first N static items and their perturbed versions; 0 for all
    concurrency: int = 4  # requests in flight
    timeout: float = 120.0  # seconds for a whole request, first byte sent to last received, before it is retried
    batch_size: int = 8  # transformers backend: prompts decoded together (left-padded)
    chat_template: str = "auto"  # transformers backend: auto (the model's chat template if it has one), always, never
    workers: int = 2  # transformers backend: torch CPU threads (not part of the run key)
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        if self.mode not in llm.MODES:
            raise ParameterError(f"parameter 'mode' must be one of {', '.join(llm.MODES)}, got {self.mode!r}")
        for name in ("n_shots", "max_items", "max_tokens"):
            if getattr(self, name) < 0:
                raise ParameterError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise ParameterError(f"parameter 'concurrency' must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ParameterError(f"parameter 'timeout' must be > 0, got {self.timeout}")
        if not self.model.strip():
            raise ParameterError("parameter 'model' must name a model")
        if self.backend not in BACKENDS:
            raise ParameterError(f"parameter 'backend' must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "transformers":
            if self.base_url:
                raise ParameterError("parameter 'base_url' is for backend 'openai'; backend 'transformers' "
                                     "decodes in this process (serve a local model with `python -m derivlib "
                                     "serve` to reach it through an endpoint)")
            if self.temperature != 0.0:
                raise ParameterError("backend 'transformers' decodes greedily: parameter 'temperature' must be 0")
            if self.chat_template not in decoder.CHAT_TEMPLATES:
                raise ParameterError(f"parameter 'chat_template' must be one of "
                                     f"{', '.join(decoder.CHAT_TEMPLATES)}, got {self.chat_template!r}")
        for name in ("batch_size", "workers"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        if llm.url_secrets(self.base_url):
            # papermill writes parameters into the executed notebook, and params.json holds them.
            raise ParameterError("parameter 'base_url' must not hold credentials (user:password@, or a query "
                                 "secret such as api-key=); set OPENAI_BASE_URL instead (redacted wherever "
                                 "derivlib writes it), or pass --base-url to the prompt command")


def default_cache_dir() -> Path:
    """``<data root>/llm/cache``, shared by every run: ``make clean`` keeps ``data/llm``, which may
    hold paid calls."""
    return rundir.data_root() / "llm" / "cache"


def sets_source(value: str) -> tuple[dict, dict, Path]:
    """(upstream, inputs, directory) of the ``sets`` parameter: a run directory of 02_testsets /
    ``build-sets`` enters the run key by its key; another directory of set files (train.jsonl,
    static.jsonl...) by their digests. Relative to the data root unless it exists as given."""
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = rundir.data_root() / path
    if not (path / rundir.COMPLETE).exists() and (path / "static.jsonl").is_file():
        files = {name: path / f"{name}.jsonl" for name in SET_FILES if (path / f"{name}.jsonl").is_file()}
        return {}, {f"sets/{name}": file_digest(file) for name, file in files.items()}, path
    return {"sets": rundir.resolve_run_dir(value, "sets")}, {}, path


def open_run(namespace: Mapping[str, Any], out: Path | str | None = None) -> rundir.Run:
    """Validate the parameters and open the run directory (``out``: a command's ``--out``)."""
    params = from_namespace(Params, namespace)
    upstream, inputs, directory = sets_source(params.sets)
    if out is not None:
        rundir.refuse_out_over_input(out, directory, "sets")
    if params.backend == "transformers":
        # the weights, not only their name, determine the answers; a bad model fails here, before any work
        source = local_source(params.model)
        inputs = {**inputs, "model": local.identity_digest(source)}
    return rundir.start_run(STAGE, params, upstream=upstream, inputs=inputs, out=out)


def local_source(model: str) -> "decoder.ModelSource":
    """The model of the transformers backend; a complete ``train_lora`` run means its adapter."""
    path = Path(model)
    if not path.is_absolute() and not path.exists() and (rundir.data_root() / path).is_dir():
        path = rundir.data_root() / path
    if (path / rundir.COMPLETE).exists() and (path / "adapter").is_dir():
        return decoder.resolve(str(path / "adapter"))
    return decoder.resolve(model)


@dataclasses.dataclass
class Result:
    predictions: list[dict]  # the answered items, in set order (the shared predictions format)
    skipped: list[str]  # items not asked: no endpoint configured and no cached answer
    usage: dict  # prompts, predictions, cached and new answers, calls, retries, tokens
    mode: str  # the mode that ran: live or replay
    failed: list = dataclasses.field(default_factory=list)  # {"item", "reason"}: answered empty every time

    @property
    def counts(self) -> dict:
        """What ``meta.json`` records of the run."""
        return {"predictions": len(self.predictions), "skipped": len(self.skipped), "failed": len(self.failed),
                "calls": self.usage["calls"], "new_answers": self.usage["new_answers"],
                "cached_answers": self.usage["cached_answers"], "mode": self.mode}

    def summary_table(self) -> pd.DataFrame:
        """Per set: prompts answered, and the mean length of predictions and references in equations."""
        rows = []
        for set_name in SETS:
            records = [r for r in self.predictions if r["set"] == set_name]
            rows.append({"set": set_name, "predictions": len(records),
                         "equations per prediction": _mean(len(split_equations(r["prediction"])) for r in records),
                         "equations per reference": _mean(len(split_equations(r["reference"])) for r in records)})
        table = pd.DataFrame(rows).set_index("set")
        table.attrs["skipped"] = len(self.skipped)
        return table

    def usage_table(self) -> pd.DataFrame:
        """What the run cost: prompts, answers from the cache and new, HTTP calls, retries, tokens."""
        u = self.usage
        rows = [("mode", u.get("mode")), ("prompts", u.get("prompts")), ("predictions", u.get("predictions")),
                ("skipped (no endpoint, not cached)", u.get("skipped")),
                ("failed (empty answer on every attempt)", u.get("failed")),
                ("answers from the cache", u.get("cached_answers")), ("new answers", u.get("new_answers")),
                ("HTTP calls", u.get("calls")), ("retries", u.get("retries")),
                ("tokens of new answers", u.get("total_tokens")),
                ("tokens of all answers", (u.get("tokens_of_all_answers") or {}).get("total_tokens"))]
        return pd.DataFrame(rows, columns=["", "count"]).set_index("")

    def examples_table(self, n: int = 5) -> pd.DataFrame:
        """The first ``n`` static predictions beside their references."""
        records = [r for r in self.predictions if r["set"] == "static"][:n]
        return pd.DataFrame([{"id": r["id"], "prompt": r["prompt"], "prediction": r["prediction"],
                              "reference": r["reference"]} for r in records],
                            columns=["id", "prompt", "prediction", "reference"])


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else float("nan")


def run(run: rundir.Run, policy: llm.RetryPolicy | None = None, *, cache_dir: Path | str | None = None,
        on_answer: Callable[[llm.ChatRequest, llm.Answer], None] | None = None, base_url: str | None = None,
        max_response_bytes: int = llm.MAX_RESPONSE_BYTES) -> Result:
    """Prompt the model on every item (answers from the cache first) and write the run; a complete
    run loads. A complete run that skipped prompts for want of an endpoint, or whose model answered
    some empty, is redone, from the cache, so that answers fetched since are picked up and the
    failed ones asked again. ``cache_dir`` defaults to :func:`default_cache_dir`; ``on_answer`` is
    called with every new answer; ``base_url`` is the endpoint with its credentials when the
    ``base_url`` parameter holds its redacted form; ``max_response_bytes`` caps each response."""
    usage_path = run.path("usage.json")
    if run.complete and usage_path.exists():
        usage = json.loads(usage_path.read_text())
        if not usage.get("skipped") and not usage.get("failed"):
            run.log(f"run {run.key} is complete: loading {usage['predictions']} predictions")
            return load_result(run.dir)
    if base_url is not None and llm.redact_url(base_url) != run.params.base_url:
        raise ParameterError(f"base_url {llm.redact_url(base_url)} is not the run's base_url parameter "
                             f"{run.params.base_url!r}")
    sets_dir = Path(run.upstream["sets"]) if "sets" in run.upstream else sets_source(run.params.sets)[2]
    cache = llm.ResponseCache(cache_dir or default_cache_dir())
    try:
        result = _prompt(run.params, sets_dir, run.dir, cache, policy, run.log, on_answer,
                         base_url if base_url is not None else run.params.base_url, max_response_bytes)
    except BaseException:
        # What was answered is cached; the partial directory stays for a rerun, unlocked.
        if run.lock is not None:
            run.lock.release()
            run.lock = None
        raise
    run.finish(**result.counts)
    return result


def load_result(directory: Path) -> Result:
    """The result written in ``directory`` (predictions.jsonl and usage.json)."""
    usage = json.loads((Path(directory) / "usage.json").read_text())
    return Result(runs.load_predictions(directory), [], usage, usage.get("mode", ""),
                  usage.get("failed_items", []))


def prompt_sets(params: Params, sets_dir: Path, out_dir: Path, cache: llm.ResponseCache,
                log: Callable[[str], None]) -> Result:
    """Decode the sets in ``sets_dir`` in process (backend ``transformers``) into ``out_dir``:
    what :func:`run` does, for a stage that decodes as one of its steps."""
    if params.backend != "transformers":
        raise ValueError("prompt_sets decodes in process: backend must be 'transformers'")
    train, tests = runs.load_prompting_sets(sets_dir, params.max_items)
    queries = fewshot.build_queries(train, tests, params.n_shots, params.seed)
    return _prompt_locally(params, queries, tests, out_dir, cache, log, None)


def _prompt(params: Params, sets_dir: Path, out_dir: Path, cache: llm.ResponseCache,
            policy: llm.RetryPolicy | None, log: Callable[[str], None],
            on_answer: Callable[[llm.ChatRequest, llm.Answer], None] | None, base_url: str,
            max_response_bytes: int) -> Result:
    train, tests = runs.load_prompting_sets(sets_dir, params.max_items)
    queries = fewshot.build_queries(train, tests, params.n_shots, params.seed)
    if params.backend == "transformers":
        return _prompt_locally(params, queries, tests, out_dir, cache, log, on_answer)
    decoding = llm.Decoding(model=params.model, temperature=params.temperature,
                            max_tokens=params.max_tokens, seed=params.seed)
    endpoint = llm.resolve_endpoint(base_url)
    mode = params.mode if params.mode != "auto" else ("live" if endpoint else "replay")
    if mode == "live" and endpoint is None:
        raise llm.LLMError("live mode needs an endpoint: pass base_url (--base-url) or set "
                           "OPENAI_BASE_URL, and OPENAI_API_KEY for hosted APIs")
    log(f"{len(queries)} prompts ({', '.join(f'{s} {len(v)}' for s, v in tests.items())}), "
        f"model {params.model!r}, {params.n_shots}-shot, mode {mode}"
        + (f" at {llm.redact_url(endpoint)}" if mode == "live" else f" (cache {cache.directory})"))

    answered = 0

    def progress(request, answer):
        nonlocal answered
        answered += 1
        if answered % 20 == 0:
            log(f"{answered} new answers")
        if on_answer is not None:
            on_answer(request, answer)

    counters = llm.Counters()
    status = "interrupted"
    try:
        outcome = llm.answer_all([q.request for q in queries], decoding, cache, mode=mode,
                                 base_url=base_url, concurrency=params.concurrency,
                                 timeout=params.timeout, policy=policy, counters=counters,
                                 allow_missing=params.mode == "auto", on_answer=progress,
                                 max_response_bytes=max_response_bytes, notify=log)
        status = "finished"
    except llm.LLMError as err:
        status = f"failed: {err}"
        raise
    finally:
        # usage.json describes the last complete invocation; this log keeps every one, failed
        # and interrupted ones included, so no call or token goes unrecorded.
        with open(out_dir / "usage_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                 "status": status, "mode": mode, **counters.as_dict()}, sort_keys=True) + "\n")
    return _write(queries, outcome, decoding, params.model, mode, out_dir, log)


def _write(queries, outcome: llm.Outcome, decoding: llm.Decoding, label: str, mode: str, out_dir: Path,
           log: Callable[[str], None]) -> Result:
    counters = outcome.counters
    predictions = fewshot.to_predictions(queries, outcome.answers, decoding, label=label)
    usage = counters.as_dict()
    usage.update(prompts=len(queries), predictions=len(predictions), mode=mode, failed_items=outcome.failed,
                 tokens_of_all_answers=_sum_usage(outcome.answers.values()))
    write_jsonl(out_dir / "predictions.jsonl", predictions)
    atomic_write_json(out_dir / "usage.json", usage)
    if outcome.skipped:
        log(f"SKIPPED {len(outcome.skipped)} of {len(queries)} prompts: no endpoint configured and "
            f"no cached answer (first: {', '.join(outcome.skipped[:3])}). Set OPENAI_BASE_URL / "
            "base_url (and OPENAI_API_KEY) to ask a model.")
    if outcome.failed:
        log(f"FAILED {len(outcome.failed)} of {len(queries)} prompts: the model answered empty on every attempt "
            f"(first: {', '.join(f['item'] for f in outcome.failed[:3])}); they are not in predictions.jsonl, "
            "nothing was cached for them, and a rerun asks them again")
    log(f"{len(predictions)} predictions: {usage['cached_answers']} from the cache, "
        f"{usage['new_answers']} new ({usage['calls']} HTTP calls, {usage['retries']} retries, "
        f"{usage['total_tokens']} tokens)")
    return Result(predictions, outcome.skipped, usage, mode, outcome.failed)


def prediction_label(source: "decoder.ModelSource", n_shots: int) -> str:
    """The ``model`` field of a local model's predictions: one label per configuration (a
    fine-tuned adapter answers the zero-shot template; a base model's shots are in its label)."""
    if source.kind == "adapter":
        return source.label if n_shots == 0 else f"{source.label} {n_shots}-shot"
    return f"{source.label} {n_shots}-shot"


def _prompt_locally(params: Params, queries: list, tests: dict, out_dir: Path, cache: llm.ResponseCache,
                    log: Callable[[str], None],
                    on_answer: Callable[[llm.ChatRequest, llm.Answer], None] | None) -> Result:
    source = local_source(params.model)
    decoding = local.decoding_for(source, params.max_tokens, params.chat_template)
    mode = "replay" if params.mode == "replay" else "live"
    label = prediction_label(source, params.n_shots)
    log(f"{len(queries)} prompts ({', '.join(f'{s} {len(v)}' for s, v in tests.items())}), model "
        f"{label!r} in process ({source.kind} {source.location}), {params.n_shots}-shot, mode {mode}")
    loaded: dict = {}

    def model_and_tokenizer():
        if not loaded:  # nothing to decode, nothing to load: a complete cache costs no model load
            t5.set_cpu_threads(params.workers)
            loaded["model"], loaded["tokenizer"] = decoder.load(source)
        return loaded["model"], loaded["tokenizer"]

    def render(messages) -> str:
        _, tokenizer = model_and_tokenizer()
        return decoder.chat_text(tokenizer, messages[-1]["content"], params.chat_template)

    def generate(texts: list[str]) -> list[str]:
        model, tokenizer = model_and_tokenizer()
        return decoder.generate(model, tokenizer, texts, batch_size=params.batch_size,
                                max_new_tokens=params.max_tokens)

    def count_tokens(text: str) -> int:
        _, tokenizer = model_and_tokenizer()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    counters = llm.Counters()
    outcome = local.answer_locally([q.request for q in queries], decoding, cache, generate=generate,
                                   render=render, count_tokens=count_tokens, batch_size=params.batch_size,
                                   mode=mode, counters=counters, on_answer=on_answer, log=log)
    return _write(queries, outcome, decoding, label, mode, out_dir, log)


def _sum_usage(answers) -> dict:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for answer in answers:
        for name in total:
            total[name] += int(answer.usage.get(name, 0) or 0)
    return total
