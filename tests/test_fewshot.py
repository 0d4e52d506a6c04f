"""The 5-shot template, exemplar selection and answer parsing (PAPER.md §4)."""
from __future__ import annotations

import json

import pytest

from derivlib import fewshot
from derivlib.base.vocabulary import SETS, field
from derivlib.models import llm


def _released(gpt4_results):
    return json.loads(gpt4_results.read_text())


def test_template_reproduces_every_released_gpt_prompt_byte_for_byte(gpt4_results):
    items = _released(gpt4_results)
    assert len(items) == 100
    checked = 0
    for number, item in enumerate(items):
        static_exemplars, _ = fewshot.parse_prompt(item["prompt"])
        for set_name in SETS:
            released = item[field(set_name, "prompt")]
            exemplars, query = fewshot.parse_prompt(released)
            assert len(exemplars) == 5, (number, set_name)
            # The paper's claim, checked on its own data: the same exemplars for an item's
            # static and perturbed prompts.
            assert exemplars == static_exemplars, (number, set_name)
            assert fewshot.render_prompt(exemplars, query) == released, (number, set_name)
            checked += 1
    assert checked == 500


def test_parsed_query_is_the_bare_prompt_of_the_flan_file(gpt4_results, flan_results):
    gpt = _released(gpt4_results)
    flan = json.loads(flan_results.read_text())
    for g, f in zip(gpt, flan):
        for set_name in SETS:
            _, query = fewshot.parse_prompt(g[field(set_name, "prompt")])
            assert query == f[field(set_name, "prompt")]


def test_released_gpt_answers_parse_to_themselves(gpt4_results):
    # The released answers are already bare derivations: parsing must not alter them.
    for item in _released(gpt4_results):
        for set_name in SETS:
            answer = item[f"{set_name}_gpt-4"]
            assert fewshot.extract_derivation(answer) == " ".join(answer.split())


def test_parse_prompt_rejects_text_that_is_not_a_few_shot_prompt():
    with pytest.raises(ValueError, match="not a few-shot prompt"):
        fewshot.parse_prompt("Given a = b, then obtain b = a")
    with pytest.raises(ValueError, match="introduction"):
        fewshot.parse_prompt("Hello. Now given the following prompt: Prompt: x")


def _train(n=30):
    return [{"id": f"t{i}", "prompt": f"Given p_{i} = {i}, then obtain q_{i} = {i}",
             "derivation": f"p_{i} = {i} and q_{i} = {i}"} for i in range(n)]


def test_exemplars_depend_on_seed_and_item_id_only():
    train = _train()
    a = fewshot.select_exemplars(train, 5, seed=7, item_id="g1-3")
    assert a == fewshot.select_exemplars(train, 5, seed=7, item_id="g1-3")
    assert len({e["prompt"] for e in a}) == 5  # distinct training items
    others = [fewshot.select_exemplars(train, 5, seed=7, item_id=f"g1-{i}") for i in range(10)]
    assert len({json.dumps(o) for o in others}) == 10  # different per item
    assert fewshot.select_exemplars(train, 5, seed=8, item_id="g1-3") != a


def test_static_and_perturbed_prompts_of_an_item_share_their_exemplars():
    train = _train()
    tests = {s: [{"id": f"x{i}", "prompt": f"Given {s} {i}, then obtain z = {i}", "derivation": "z = 1"}
                 for i in range(4)] for s in SETS}
    queries = fewshot.build_queries(train, tests, n_shots=5, seed=3)
    by_id = {}
    for q in queries:
        exemplars, query = fewshot.parse_prompt(q.request.messages[0]["content"])
        assert query == q.prompt  # the record keeps the bare prompt
        by_id.setdefault(q.id, set()).add(json.dumps(exemplars))
    assert len(by_id) == 4 and all(len(v) == 1 for v in by_id.values())


def test_answers_become_prediction_records_in_query_order():
    train = _train()
    tests = {s: [{"id": f"x{i}", "prompt": f"Given {s} {i}, then obtain z = {i}", "derivation": f"z = {i}",
                  "srepr_derivation": [["premise", f"Integer({i})"]]} for i in range(3)] for s in ("static", "SR")}
    queries = fewshot.build_queries(train, tests, n_shots=2, seed=0)
    decoding = llm.Decoding(model="m")
    answers = {q.request.key(decoding): llm.Answer(content=f"Derivation: $w = {q.id}$.")
               for q in queries if q.id != "x1"}
    records = fewshot.to_predictions(queries, answers, decoding)
    assert [(r["set"], r["id"]) for r in records] == [("static", "x0"), ("static", "x2"), ("SR", "x0"), ("SR", "x2")]
    assert records[0] == {"id": "x0", "model": "m", "set": "static", "prompt": "Given static 0, then obtain z = 0",
                          "reference": "z = 0", "prediction": "w = x0", "srepr_derivation": [["premise", "Integer(0)"]]}


def test_number_of_shots_is_a_parameter():
    train = _train()
    three = fewshot.render_prompt(fewshot.select_exemplars(train, 3, 0, "a"), "Given x = 1, then obtain y = 1")
    assert three.count("\n\nDerivation: ") == 3
    zero = fewshot.render_prompt(fewshot.select_exemplars(train, 0, 0, "a"), "Given x = 1, then obtain y = 1")
    assert "Derivation: " not in zero and zero.endswith("Prompt: Given x = 1, then obtain y = 1")
    with pytest.raises(ValueError, match="only 30 items"):
        fewshot.select_exemplars(train, 31, 0, "a")


@pytest.mark.parametrize("answer, expected", [
    ("Derivation: a = b and b = c", "a = b and b = c"),
    ("Sure! Here is the derivation.\n\nDerivation: $a = b$ and $b = c$.", "a = b and b = c"),
    ("```latex\n\\eta{(a)} = e^{a} and \\frac{d}{d a} \\eta{(a)} = e^{a}\n```",
     "\\eta{(a)} = e^{a} and \\frac{d}{d a} \\eta{(a)} = e^{a}"),
    ("$$ x = 1 $$\n$$ y = 2 $$", "x = 1 and y = 2"),
    ("\\[ x = 1 \\]\nand\n\\[ y = 2 \\]", "x = 1 and y = 2"),
    ("We start from the premise.\nx = 1 and\ny = 2\nThis completes the derivation.", "x = 1 and y = 2"),
    ("Derivation: x = 1 and y = 2\n\n\nPrompt: Given z = 3, then obtain w = 3\n\nDerivation: z = 3",
     "x = 1 and y = 2"),
    ("\\begin{align} x &= 1 \\\\ y &= 2 \\end{align}", "x = 1 and y = 2"),
    ("DERIVATION:   x^{2} = 4", "x^{2} = 4"),
    ("Here is the derivation:\n\nDerivation: a = b and b = c", "a = b and b = c"),
])
def test_extract_derivation_from_chat_answers(answer, expected):
    assert fewshot.extract_derivation(answer) == expected
