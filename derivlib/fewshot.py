"""In-context prompting (PAPER.md §4): the authors' 5-shot template, exemplars, queries and answer
parsing; :mod:`derivlib.stages.prompt_llm` runs them against a model.

* :func:`render_prompt` writes the authors' template byte for byte (checked against every prompt
  of the released GPT-4 results, static and perturbed); :func:`parse_prompt` reads one back.
* :func:`select_exemplars` draws the exemplars of one test item from the training set, seeded by
  (seed, item id) alone, so an item's static and perturbed prompts share them and the draw does
  not depend on which other items run, in which order, or with how many workers.
* :func:`build_queries` turns test sets into chat requests (:mod:`derivlib.models.llm`), one per
  item and set; :func:`to_predictions` turns their answers into prediction records.
* :func:`extract_derivation` pulls the derivation out of a chat answer (prose, code fences,
  ``Derivation:``, ``$``/``$$``/``\\[ \\]``), so scoring treats every model alike.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping, Sequence

from .base.seeding import item_rng
from .base.vocabulary import SETS
from .models import llm

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
    rng = item_rng(seed, 0, stream=f"fewshot:{item_id}")
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
    # an answer that opens by echoing "Prompt: ..." (small models do) keeps the echo: it is what
    # the model wrote; a "Prompt:" after the start is an invented next example
    text = re.split(r"\bPrompt\s*:", re.sub(r"^\s*Prompt\s*:", "", text), maxsplit=1)[0]
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


# ----------------------------------------------------------------------------------- queries

@dataclasses.dataclass
class Query:
    id: str
    set: str
    prompt: str  # the bare task prompt
    reference: str
    srepr_derivation: Any
    request: llm.ChatRequest


def build_queries(train: Sequence[Mapping], tests: Mapping[str, Sequence[Mapping]],
                  n_shots: int, seed: int) -> list[Query]:
    """One chat request per test item and set, in set order (static, VR, EE, AG, SR). An item
    that carries its own ``exemplars`` (the released items' stored 5-shot prompts,
    :func:`derivlib.readers.released.to_sets`) is asked with its first ``n_shots`` of them;
    the others draw theirs from ``train``."""
    queries = []
    for set_name in SETS:
        for item in tests.get(set_name, ()):
            exemplars = stored_exemplars(item, n_shots, set_name)
            if exemplars is None:
                if n_shots > len(train):
                    raise ValueError(f"item {item['id']} ({set_name}): {n_shots} shots, but it carries no "
                                     f"exemplars and the training set has {len(train)} items to draw from")
                exemplars = select_exemplars(train, n_shots, seed, str(item["id"]))
            text = render_prompt(exemplars, item["prompt"])
            queries.append(Query(
                id=item["id"], set=set_name, prompt=item["prompt"], reference=item["derivation"],
                srepr_derivation=item.get("srepr_derivation"),
                request=llm.ChatRequest(item=f"{item['id']} ({set_name})", messages=llm.user_message(text))))
    return queries


def stored_exemplars(item: Mapping, n_shots: int, set_name: str = "") -> list[dict] | None:
    """The first ``n_shots`` exemplars an item carries, or None when it carries none."""
    stored = item.get("exemplars")
    if stored is None or n_shots == 0:
        return None if stored is None else []
    if not isinstance(stored, list) or len(stored) < n_shots or not all(
            isinstance(e, dict) and isinstance(e.get("prompt"), str) and isinstance(e.get("derivation"), str)
            for e in stored[:n_shots]):
        raise ValueError(f"item {item.get('id')} ({set_name}): field 'exemplars' must list at least {n_shots} "
                         "{prompt, derivation} objects")
    return [{"prompt": e["prompt"], "derivation": e["derivation"]} for e in stored[:n_shots]]


def to_predictions(queries: Iterable[Query], answers: Mapping[str, llm.Answer], decoding: llm.Decoding,
                   label: str | None = None) -> list[dict]:
    """Prediction records (the shared format) of the answered queries, in query order;
    ``answers`` maps request keys to answers, as :func:`derivlib.models.llm.answer_all` gives them;
    ``label`` is their ``model`` field (default: the decoding's model name)."""
    predictions = []
    for q in queries:
        answer = answers.get(q.request.key(decoding))
        if answer is None:
            continue
        predictions.append({"id": q.id, "model": label or decoding.model, "set": q.set, "prompt": q.prompt,
                            "reference": q.reference, "prediction": extract_derivation(answer.content),
                            "srepr_derivation": q.srepr_derivation})
    return predictions
