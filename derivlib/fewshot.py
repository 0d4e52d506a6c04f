"""In-context prompting (PAPER.md §4): the authors' 5-shot template, exemplars, answer parsing, and
the ``prompt_llm`` stage that turns a sets directory into prediction records.

* :func:`render_prompt` writes the authors' template byte for byte (checked against every prompt
  of the released GPT-4 results, static and perturbed); :func:`parse_prompt` reads one back.
* :func:`select_exemplars` draws the exemplars of one test item from the training set, seeded by
  (seed, item id) alone, so an item's static and perturbed prompts share them and the draw does
  not depend on which other items run, in which order, or with how many workers.
* :func:`extract_derivation` pulls the derivation out of a chat answer (prose, code fences,
  ``Derivation:``, ``$``/``$$``/``\\[ \\]``), so scoring treats every model alike.
* :func:`prompt_sets` runs the stage: build every request, answer it through
  :mod:`derivlib.models.llm` (cache first), write ``predictions.jsonl`` and ``usage.json``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import config
from .derivation import split_equations
from .models import llm

SETS = ("static", "VR", "EE", "AG", "SR")
STAGE = "prompt_llm"

# ----------------------------------------------------------------------------------- template

INTRO = ('The following examples consist of a prompt (denoted by Prompt:) and a mathematical '
         'derivation (denoted by Derivation:). Each derivation contains LaTeX equations separated '
         'by "and". ')
EXEMPLAR = "\n\nPrompt: {prompt}\n\nDerivation: {derivation}\n"
QUERY = ("\n\nNow given the following prompt, generate the derivation. Ensure equations are split "
         "by the word 'and': \n\nPrompt: {prompt}")
#: Not the paper's (it used 5 shots only): the same instruction without the examples.
ZERO_SHOT = ("Generate the mathematical derivation for the following prompt. A derivation "
             "contains LaTeX equations separated by \"and\". Ensure equations are split by the "
             "word 'and': \n\nPrompt: {prompt}")


def render_prompt(exemplars: Sequence[Mapping[str, str]], query: str) -> str:
    """The authors' few-shot prompt: exemplars (``prompt``, ``derivation``) then the query."""
    if not exemplars:
        return ZERO_SHOT.format(prompt=query)
    shots = "".join(EXEMPLAR.format(prompt=e["prompt"], derivation=e["derivation"]) for e in exemplars)
    return INTRO + shots + QUERY.format(prompt=query)


_SHOT = re.compile(r"Prompt:\s*(?P<prompt>.*?)\s*Derivation:\s*(?P<derivation>.*?)\s*(?=Prompt:|Now given)",
                   re.DOTALL)


def parse_prompt(text: str) -> tuple[list[dict], str]:
    """(exemplars, query) of a few-shot prompt such as the released GPT prompts.

    Whitespace around the fields is not trusted (it is what :func:`render_prompt` must get
    right), so that re-rendering a parsed prompt is a real test of the template.
    """
    head, sep, query = text.rpartition("Now given the following prompt")
    if not sep:
        raise ValueError(f"not a few-shot prompt (no 'Now given the following prompt'): {text[:80]!r}")
    if not text.startswith(INTRO.strip()):
        raise ValueError(f"few-shot prompt does not start with the paper's introduction: {text[:80]!r}")
    query = query.rpartition("Prompt:")[2].strip()
    exemplars = [{"prompt": m["prompt"], "derivation": m["derivation"]}
                 for m in _SHOT.finditer(head[len(INTRO.strip()):] + "Now given")]
    return exemplars, query


# ----------------------------------------------------------------------------------- exemplars

def select_exemplars(train: Sequence[Mapping[str, Any]], n_shots: int, seed: int,
                     item_id: str) -> list[dict]:
    """``n_shots`` distinct training items for test item ``item_id``, drawn from a generator
    seeded by (seed, item id) only (PAPER.md §4: different per item, identical across the
    item's static and perturbed prompts)."""
    if n_shots < 0:
        raise ValueError(f"n_shots must be >= 0, got {n_shots}")
    if n_shots > len(train):
        raise ValueError(f"n_shots={n_shots} but the training set has only {len(train)} items")
    rng = config.item_rng(seed, 0, stream=f"fewshot:{item_id}")
    return [{"prompt": train[i]["prompt"], "derivation": train[i]["derivation"]}
            for i in rng.sample(range(len(train)), n_shots)]


# ----------------------------------------------------------------------------------- answers

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_LABEL = re.compile(r"\bderivation\s*:", re.IGNORECASE)
_DELIMITERS = re.compile(r"\$\$|\$|\\\[|\\\]|\\\(|\\\)")
_ENVIRONMENTS = re.compile(r"\\(?:begin|end)\{(?:align|equation|gather|aligned|displaymath)\*?\}")
_LEADING_AND = re.compile(r"^(?:and\s+)+|(?:\s+and)+$")


def extract_derivation(answer: str) -> str:
    """The derivation text of a chat answer: equations joined by ``" and "``, one line.

    Takes the first code block if there is one, else the text after the first ``Derivation:``
    (cut where a further ``Prompt:`` starts: models sometimes invent the next example; a second
    label, as in "Here is the derivation: Derivation: ...", is dropped too), removes
    math delimiters, keeps the lines that hold an equation and joins them with ``and``.
    """
    text = answer or ""
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    label = _LABEL.search(text)
    if label:
        text = text[label.end():]
    text = re.split(r"\bPrompt\s*:", text, maxsplit=1)[0]
    text = _LABEL.sub(" ", text)  # "Here is the derivation:\n\nDerivation: ..." has two labels
    text = _ENVIRONMENTS.sub(" ", text)
    text = _DELIMITERS.sub(" ", text)
    text = text.replace("&=", "=").replace("\\\\", "\n")
    lines = [line.strip() for line in text.splitlines()]
    equations = [line for line in lines if "=" in line]
    if len(equations) > 1:
        lines = [_LEADING_AND.sub("", line).strip().rstrip(".,;") for line in equations]
        text = " and ".join(line for line in lines if line)
    elif equations:
        text = equations[0]
    else:
        text = " ".join(lines)
    text = " ".join(text.split())
    return text.rstrip(".").strip()


# ----------------------------------------------------------------------------------- stage

@dataclasses.dataclass(frozen=True)
class PromptParams:
    sets: str = "testsets/smoke"
    model: str = "gpt-4"
    base_url: str = ""
    mode: str = "auto"
    n_shots: int = 5
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 42
    max_items: int = 0
    concurrency: int = 4
    timeout: float = 120.0
    profile: str = "smoke"

    def check(self) -> None:
        if self.mode not in llm.MODES:
            raise config.ParameterError(f"parameter 'mode' must be one of {', '.join(llm.MODES)}, got {self.mode!r}")
        for name in ("n_shots", "max_items", "max_tokens"):
            if getattr(self, name) < 0:
                raise config.ParameterError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise config.ParameterError(f"parameter 'concurrency' must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise config.ParameterError(f"parameter 'timeout' must be > 0, got {self.timeout}")
        if not self.model.strip():
            raise config.ParameterError("parameter 'model' must name a model")
        if self.base_url and ("@" in self.base_url.split("//", 1)[-1].split("/", 1)[0]):
            # papermill writes parameters into the executed notebook: no credentials here.
            raise config.ParameterError("parameter 'base_url' must not hold credentials; "
                                        "put the key in OPENAI_API_KEY")


def default_cache_dir() -> Path:
    """``<data root>/llm/cache``: ``make clean`` keeps ``data/llm``, which may hold paid calls."""
    return config.data_root() / "llm" / "cache"


@dataclasses.dataclass
class Query:
    id: str
    set: str
    prompt: str  # the bare task prompt
    reference: str
    srepr_derivation: Any
    request: llm.ChatRequest


def load_sets(sets_dir: Path | str, max_items: int = 0) -> tuple[list[dict], dict[str, list[dict]]]:
    """(train, {set: items}) of a sets directory; ``max_items`` > 0 keeps the first static items
    and their matched perturbed items. Missing perturbed files are allowed (none of that set)."""
    sets_dir = Path(sets_dir)
    for required in ("train.jsonl", "static.jsonl"):
        if not (sets_dir / required).exists():
            raise FileNotFoundError(f"sets directory {sets_dir} lacks {required}")
    train = config.read_jsonl(sets_dir / "train.jsonl")
    tests = {name: config.read_jsonl(sets_dir / f"{name}.jsonl")
             for name in SETS if (sets_dir / f"{name}.jsonl").exists()}
    for name, items in tests.items():
        for number, item in enumerate(items, 1):
            missing = [k for k in ("id", "prompt", "derivation") if k not in item]
            if missing:
                raise ValueError(f"{sets_dir / (name + '.jsonl')}: line {number} lacks {', '.join(missing)}")
    if max_items:
        keep = {item["id"] for item in tests["static"][:max_items]}
        tests = {name: [i for i in items if i["id"] in keep] for name, items in tests.items()}
    return train, tests


def build_queries(train: Sequence[Mapping], tests: Mapping[str, Sequence[Mapping]],
                  n_shots: int, seed: int) -> list[Query]:
    queries = []
    for set_name in SETS:
        for item in tests.get(set_name, ()):
            exemplars = select_exemplars(train, n_shots, seed, str(item["id"]))
            text = render_prompt(exemplars, item["prompt"])
            queries.append(Query(
                id=item["id"], set=set_name, prompt=item["prompt"], reference=item["derivation"],
                srepr_derivation=item.get("srepr_derivation"),
                request=llm.ChatRequest(item=f"{item['id']} ({set_name})", messages=llm.user_message(text))))
    return queries


@dataclasses.dataclass
class PromptResult:
    predictions: list[dict]
    skipped: list[str]
    usage: dict
    mode: str  # the mode that ran: live or replay


def prompt_sets(params: PromptParams, sets_dir: Path | str, out_dir: Path | str,
                cache_dir: Path | str | None = None, *, policy: llm.RetryPolicy | None = None,
                log: Callable[[str], None] = print,
                on_answer: Callable[[llm.ChatRequest, llm.Answer], None] | None = None) -> PromptResult:
    """Prompt the model on every item of ``sets_dir``; write ``predictions.jsonl`` (answered
    items, in set order) and ``usage.json`` to ``out_dir``. Rerunning finishes what is missing:
    answered prompts come from the cache and are never asked again."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = llm.ResponseCache(cache_dir or default_cache_dir())
    train, tests = load_sets(sets_dir, params.max_items)
    queries = build_queries(train, tests, params.n_shots, params.seed)
    decoding = llm.Decoding(model=params.model, temperature=params.temperature,
                            max_tokens=params.max_tokens, seed=params.seed)
    endpoint = llm.resolve_endpoint(params.base_url)
    mode = params.mode if params.mode != "auto" else ("live" if endpoint else "replay")
    if mode == "live" and endpoint is None:
        raise llm.LLMError("live mode needs an endpoint: pass base_url (--base-url) or set "
                           "OPENAI_BASE_URL, and OPENAI_API_KEY for hosted APIs")
    log(f"{len(queries)} prompts ({', '.join(f'{s} {len(v)}' for s, v in tests.items())}), "
        f"model {params.model!r}, {params.n_shots}-shot, mode {mode}"
        + (f" at {llm.redact_url(endpoint)}" if mode == "live" else f" (cache {cache.directory})"))

    answered = [0]

    def progress(request, answer):
        answered[0] += 1
        if answered[0] % 20 == 0:
            log(f"{answered[0]} new answers")
        if on_answer is not None:
            on_answer(request, answer)

    counters = llm.Counters()
    status = "interrupted"
    try:
        outcome = llm.answer_all([q.request for q in queries], decoding, cache, mode=mode,
                                 base_url=params.base_url, concurrency=params.concurrency,
                                 timeout=params.timeout, policy=policy, counters=counters,
                                 allow_missing=params.mode == "auto", on_answer=progress)
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
    predictions = []
    for q in queries:
        answer = outcome.answers.get(q.request.key(decoding))
        if answer is None:
            continue
        predictions.append({"id": q.id, "model": params.model, "set": q.set, "prompt": q.prompt,
                            "reference": q.reference, "prediction": extract_derivation(answer.content),
                            "srepr_derivation": q.srepr_derivation})
    usage = counters.as_dict()
    usage.update(prompts=len(queries), predictions=len(predictions), mode=mode,
                 tokens_of_all_answers=_sum_usage(outcome.answers.values()))
    config.write_jsonl(out_dir / "predictions.jsonl", predictions)
    config.atomic_write_json(out_dir / "usage.json", usage)
    if outcome.skipped:
        log(f"SKIPPED {len(outcome.skipped)} of {len(queries)} prompts: no endpoint configured and "
            f"no cached answer (first: {', '.join(outcome.skipped[:3])}). Set OPENAI_BASE_URL / "
            "base_url (and OPENAI_API_KEY) to ask a model.")
    log(f"{len(predictions)} predictions: {usage['cached_answers']} from the cache, "
        f"{usage['new_answers']} new ({usage['calls']} HTTP calls, {usage['retries']} retries, "
        f"{usage['total_tokens']} tokens)")
    return PromptResult(predictions, outcome.skipped, usage, mode)


def _sum_usage(answers) -> dict:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for answer in answers:
        for name in total:
            total[name] += int(answer.usage.get(name, 0) or 0)
    return total


# ----------------------------------------------------------------------------------- notebook

def open_run(namespace: Mapping[str, Any]) -> config.Run:
    """Validate the notebook's parameters and open the ``prompt_llm`` run directory."""
    params = config.from_namespace(PromptParams, namespace)
    sets_dir = config.resolve_run_dir(params.sets, "sets")
    return config.start_run(STAGE, params, upstream={"sets": sets_dir})


def run_stage(run: config.Run, *, policy: llm.RetryPolicy | None = None) -> PromptResult:
    """Prompt (or load) the run's predictions. A complete run loads, unless it skipped prompts
    for want of an endpoint: then it is redone, cheaply from the cache, so answers fetched since
    are picked up."""
    usage_path = run.path("usage.json")
    if run.complete and usage_path.exists():
        usage = json.loads(usage_path.read_text())
        if not usage.get("skipped"):
            run.log(f"run {run.key} is complete: loading {usage['predictions']} predictions")
            return PromptResult(config.read_jsonl(run.path("predictions.jsonl")), [], usage, usage.get("mode", ""))
    sets_dir = Path(run.upstream["sets"])
    result = prompt_sets(run.params, sets_dir, run.dir, policy=policy, log=run.log)
    run.finish(predictions=len(result.predictions), skipped=len(result.skipped),
               calls=result.usage["calls"], new_answers=result.usage["new_answers"],
               cached_answers=result.usage["cached_answers"], mode=result.mode)
    return result


def summary_table(result: PromptResult):
    """Per set: prompts answered, and the mean length of predictions and references in equations."""
    import pandas as pd

    rows = []
    for set_name in SETS:
        records = [r for r in result.predictions if r["set"] == set_name]
        rows.append({"set": set_name, "predictions": len(records),
                     "equations per prediction": _mean(len(split_equations(r["prediction"])) for r in records),
                     "equations per reference": _mean(len(split_equations(r["reference"])) for r in records)})
    table = pd.DataFrame(rows).set_index("set")
    table.attrs["skipped"] = len(result.skipped)
    return table


def usage_table(result: PromptResult):
    """What the run cost: prompts, answers from the cache and new, HTTP calls, retries, tokens."""
    import pandas as pd

    u = result.usage
    rows = [("mode", u.get("mode")), ("prompts", u.get("prompts")), ("predictions", u.get("predictions")),
            ("skipped (no endpoint, not cached)", u.get("skipped")),
            ("answers from the cache", u.get("cached_answers")), ("new answers", u.get("new_answers")),
            ("HTTP calls", u.get("calls")), ("retries", u.get("retries")),
            ("tokens of new answers", u.get("total_tokens")),
            ("tokens of all answers", (u.get("tokens_of_all_answers") or {}).get("total_tokens"))]
    return pd.DataFrame(rows, columns=["", "count"]).set_index("")


def examples_table(result: PromptResult, n: int = 5):
    """The first ``n`` static predictions beside their references."""
    import pandas as pd

    records = [r for r in result.predictions if r["set"] == "static"][:n]
    return pd.DataFrame([{"id": r["id"], "prompt": r["prompt"], "prediction": r["prediction"],
                          "reference": r["reference"]} for r in records],
                        columns=["id", "prompt", "prediction", "reference"])


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else float("nan")
