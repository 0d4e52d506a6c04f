"""Prompt builder: the authors' text format and intermediate rule, checked on hand-made
derivations and on the released test prompts and 5-shot exemplars."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from derivlib import derivation as D
from derivlib import prompts

import handmade


def _steps(record):
    return D.Derivation.from_record(record).steps


def test_prompt_text_has_the_authors_shape():
    text = prompts.format_prompt(["a = b", "c = d"], ["e = f", "g = h"], "i = j")
    assert text == "Given a = b and c = d, then derive e = f, then derive g = h, then obtain i = j"
    assert prompts.format_prompt(["a = b"], [], "c = d") == "Given a = b, then obtain c = d"
    parts = prompts.parse_prompt(text)
    assert parts.premises == ["a = b", "c = d"]
    assert parts.intermediates == ["e = f", "g = h"]
    assert parts.goal == "i = j"


def test_evaluate_rule_picks_interior_evaluation_steps_only():
    record = handmade.records(1)[0]
    steps = _steps(record)
    assert prompts.premise_positions(steps) == [0]
    assert prompts.interior_positions(steps) == [1, 2, 3, 4]
    assert prompts.choose_intermediates(steps) == [2]  # the evaluate_derivatives step
    prompt = prompts.build_prompt(record["equations"], steps, [2])
    eqs = record["equations"]
    assert prompt == f"Given {eqs[0]}, then derive {eqs[2]}, then obtain {eqs[-1]}"
    no_eval = _steps(handmade.records(1, handmade.no_evaluation_chain)[0])
    assert prompts.choose_intermediates(no_eval) == []


def test_last_step_is_the_goal_never_a_premise_or_intermediate():
    record = handmade.records(1)[0]
    steps = _steps(record)
    steps[-1] = ["renaming_premise", steps[-1][1]]
    assert len(steps) - 1 not in prompts.premise_positions(steps)
    assert len(steps) - 1 not in prompts.interior_positions(steps)


def test_random_policy_is_seeded_ordered_and_follows_the_counts():
    steps = _steps(handmade.records(1)[0])
    a = [prompts.choose_intermediates(steps, "random", random.Random(7)) for _ in range(3)]
    b = [prompts.choose_intermediates(steps, "random", random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(0)
    draws = [prompts.choose_intermediates(steps, "random", rng, prompts.TEST_COUNTS) for _ in range(4000)]
    assert all(d == sorted(d) and set(d) <= {1, 2, 3, 4} and len(d) >= 1 for d in draws)
    share = Counter(len(d) for d in draws)
    assert abs(share[1] / 4000 - 0.91) < 0.03 and abs(share[2] / 4000 - 0.08) < 0.03
    train = Counter(len(prompts.choose_intermediates(steps, "random", rng)) for _ in range(4000))
    assert abs(train[0] / 4000 - 0.53) < 0.03


def test_random_policy_needs_a_generator_and_unknown_policy_is_an_error():
    steps = _steps(handmade.records(1)[0])
    with pytest.raises(ValueError, match="rng"):
        prompts.choose_intermediates(steps, "random")
    with pytest.raises(ValueError, match="unknown intermediate policy 'sometimes'"):
        prompts.choose_intermediates(steps, "sometimes")


def test_parse_rejects_text_that_is_not_a_prompt():
    with pytest.raises(ValueError, match="not a derivation prompt"):
        prompts.parse_prompt("Derive something")


def test_locate_intermediates_reports_a_prompt_that_does_not_match_its_derivation():
    record = handmade.records(1)[0]
    record = {"id": "x", "prompt": "Given a = b, then derive zz = 1, then obtain c = d",
              "derivation": record["derivation"]}
    with pytest.raises(ValueError, match="'x'.*zz = 1"):
        prompts.locate_intermediates(record)


@pytest.mark.paper_results
@pytest.mark.parametrize("which", ["flan", "gpt4"])
def test_rule_reproduces_every_released_test_prompt(which, flan_results, gpt4_results):
    items = json.loads((flan_results if which == "flan" else gpt4_results).read_text())
    printer_equal = printer_total = 0
    for item in items:
        steps = _steps(item)
        chosen = prompts.choose_intermediates(steps)
        assert 1 <= len(chosen) <= 3
        released = prompts.bare_prompt(item["prompt"])
        assert prompts.build_prompt(prompts.equations_of(item), steps, chosen) == released
        assert prompts.locate_intermediates(item) == chosen
        ours = D.Derivation(steps).latex()
        if ours == prompts.equations_of(item):
            printer_total += 1
            printer_equal += prompts.build_prompt(ours, steps, chosen) == released
    # wherever our printer gives the released equations, the whole prompt text is equal
    assert printer_equal == printer_total
    print(f"prompt text equal with our printer on {printer_total}/{len(items)} items")


@pytest.mark.paper_results
def test_released_exemplar_prompts_follow_the_rule(gpt4_results):
    """The 5-shot exemplars are training pairs: intermediates are interior equations in order,
    and about half of the prompts have none (the evaluate rule's training distribution)."""
    seen, counts = set(), Counter()
    for item in json.loads(gpt4_results.read_text()):
        shots = item["prompt"].split("\n\n\nNow given")[0].split("\n\nPrompt: ")[1:]
        for shot in shots:
            prompt, _, derivation = shot.partition("\n\nDerivation: ")
            if (prompt, derivation) in seen:
                continue
            seen.add((prompt, derivation))
            record = {"prompt": prompt, "derivation": derivation.strip()}
            positions = prompts.locate_intermediates(record)
            equations = prompts.equations_of(record)
            assert all(0 < p < len(equations) - 1 for p in positions)
            assert prompts.parse_prompt(prompt).goal == equations[-1]
            counts[len(positions)] += 1
    total = sum(counts.values())
    assert total > 400
    assert 0.45 < counts[0] / total < 0.6
    assert max(counts) <= 3
