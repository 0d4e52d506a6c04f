"""Sub-derivations as extra training pairs: each is a complete, verifiable derivation of its own,
renumbered, with a prompt built by the training set's rule, and none leaks a held-out text."""
from __future__ import annotations

import pytest

from derivlib import augment, generate, prompts, verify
from derivlib.derivation import JOIN, from_srepr, is_premise, to_latex


def item_of(record: dict) -> dict:
    steps, equations = record["srepr_derivation"], record["equations"]
    intermediates = prompts.choose_intermediates(steps, "evaluate")
    return {"id": record["id"], "prompt": prompts.build_prompt(equations, steps, intermediates),
            "derivation": JOIN.join(equations), "srepr_derivation": steps, "equations": equations}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    records, _ = generate.generate(12, seed=3, workers=1)
    return [item_of(r) for r in records]


def test_ancestors_and_renumbering_by_hand():
    steps = [["premise", "a"], ["premise", "b"], [["add", 1, "x"], "c"],
             [["substitute_LHS_for_RHS", 3, 2], "d"], [["cos", 1], "e"]]
    assert augment.ancestors(steps, 2) == [0, 2]
    assert augment.ancestors(steps, 3) == [0, 1, 2, 3]
    sub_steps, sub_equations = augment.sub_derivation(steps, list("ABCDE"), 2)
    assert sub_steps == [["premise", "a"], [["add", 1, "x"], "c"]]
    assert sub_equations == ["A", "C"]
    sub_steps, _ = augment.sub_derivation(steps, list("ABCDE"), 3)
    assert sub_steps[-1][0] == ["substitute_LHS_for_RHS", 3, 2]
    subs = augment.sub_derivation_items({"id": "h", "srepr_derivation": steps, "equations": list("ABCDE")})
    # steps 3 and 4 end sub-derivations; premises (1, 2) and the last step (5) do not
    assert [s["id"] for s in subs] == ["h/3", "h/4"]
    assert subs[0]["prompt"] == "Given A, then obtain C" and subs[0]["derivation"] == "A and C"


def test_every_sub_derivation_is_a_verified_derivation(items):
    n_subs = 0
    for item in items:
        subs = augment.sub_derivation_items(item)
        interior = [k for k in range(1, len(item["srepr_derivation"]) - 1)
                    if not is_premise(item["srepr_derivation"][k][0])]
        assert len(subs) == len(interior)
        for sub, k in zip(subs, interior):
            n_subs += 1
            steps = sub["srepr_derivation"]
            assert steps[-1][1] == item["srepr_derivation"][k][1]  # ends at the step it is named for
            assert all(r.ok for r in verify.verify_steps(steps)), sub["id"]
            assert sub["equations"] == [to_latex(from_srepr(s)) for _, s in steps]
            assert set(sub["equations"]) <= set(item["equations"])
            assert sub["prompt"] == prompts.build_prompt(
                sub["equations"], steps, prompts.choose_intermediates(steps, "evaluate"))
    assert n_subs >= 2 * len(items)


def test_repeats_and_held_out_texts_are_dropped(items):
    base, counts = augment.with_sub_derivations(items)
    assert base[:len(items)] == items
    assert counts["sub_derivations"] == len(base) - len(items) > 0
    pairs = [(it["prompt"], it["derivation"]) for it in base]
    assert len(pairs) == len(set(pairs))

    held_out = base[len(items)]["derivation"]
    again, counts_again = augment.with_sub_derivations(items + items[:2], exclude_texts=[held_out])
    assert all(held_out not in (it["prompt"], it["derivation"]) for it in again[len(items) + 2:])
    assert counts_again["test_overlaps_dropped"] >= 1
    repeated = sum(len(augment.sub_derivation_items(it)) for it in items[:2])
    # the held-out one is counted as an overlap each time it comes up, not as a repeat
    assert counts_again["repeats_dropped"] == repeated - 1 and counts_again["test_overlaps_dropped"] == 2


def test_mismatched_item_is_an_error():
    with pytest.raises(ValueError, match="equations for"):
        augment.sub_derivation_items({"id": "x", "srepr_derivation": [["premise", "a"]] * 3, "equations": ["A"]})
