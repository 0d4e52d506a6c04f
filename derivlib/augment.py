"""More training pairs from the same derivations: every sub-derivation a derivation contains.

A derivation is a dependency chain: every step names the earlier equations it was made from.
Any non-premise step ``k`` together with everything it depends on (its ancestors) is itself a
complete derivation, ending in ``k``: renumbered, it is exactly what the generator would have
written had it stopped at ``k``. Its prompt is built by the same rule as the training set's
(:func:`derivlib.prompts.choose_intermediates`), so a sub-derivation teaches the task itself on a
shorter example, with no new text. A 7-equation derivation holds about four of them.

This matters when training from scratch on little data (the smoke profile has about 1,700
training derivations): the model sees several times as many distinct (prompt, derivation) pairs
for the cost of the tokens, which are mostly shorter than the full derivations. The paper trained
on full derivations only; this is off (``sub_derivations: false``) in the paper profile.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from . import prompts
from .base.vocabulary import JOIN
from .derivation import is_premise, normalise_annotation


def references(annotation) -> list[int]:
    """1-based equation numbers a step was made from (none for a premise)."""
    annotation = normalise_annotation(annotation)
    if is_premise(annotation):
        return []
    if annotation[0].startswith("substitute"):
        return [annotation[1], annotation[2]]
    return [annotation[1]]


def ancestors(steps: Sequence[Sequence], k: int) -> list[int]:
    """0-based indices of step ``k`` and every step it depends on, in derivation order."""
    keep, frontier = {k}, [k]
    while frontier:
        for number in references(steps[frontier.pop()][0]):
            if number - 1 not in keep:
                keep.add(number - 1)
                frontier.append(number - 1)
    return sorted(keep)


def _renumbered(annotation, mapping: dict[int, int]):
    annotation = normalise_annotation(annotation)
    if is_premise(annotation):
        return annotation
    if annotation[0].startswith("substitute"):
        return [annotation[0], mapping[annotation[1]], mapping[annotation[2]]]
    return [annotation[0], mapping[annotation[1]], *annotation[2:]]


def sub_derivation(steps: Sequence[Sequence], equations: Sequence[str], k: int) -> tuple[list, list[str]]:
    """The derivation ending at step ``k`` (0-based): renumbered steps and their equation texts."""
    keep = ancestors(steps, k)
    mapping = {old + 1: new + 1 for new, old in enumerate(keep)}
    return ([[_renumbered(steps[i][0], mapping), steps[i][1]] for i in keep],
            [equations[i] for i in keep])


def sub_derivation_items(item: Mapping, policy: str = "evaluate") -> list[dict]:
    """Training items for every proper sub-derivation of ``item`` (not ``item`` itself).

    Each ends in a non-premise step other than the last; ids are ``<id>/<k>`` with ``k`` the
    1-based number of the step it ends at. ``policy`` must be deterministic ("evaluate").
    """
    missing = [name for name in ("srepr_derivation", "equations") if not item.get(name)]
    if missing:
        raise ValueError(f"item {item.get('id')!r} lacks {' and '.join(missing)}: sub-derivations are "
                         "made from a derivation's steps (the sets 02_testsets writes carry them)")
    steps, equations = item["srepr_derivation"], list(item["equations"])
    if len(steps) != len(equations):
        raise ValueError(f"item {item.get('id')!r}: {len(equations)} equations for {len(steps)} steps")
    out = []
    for k in range(1, len(steps) - 1):
        if is_premise(normalise_annotation(steps[k][0])):
            continue
        sub_steps, sub_equations = sub_derivation(steps, equations, k)
        intermediates = prompts.choose_intermediates(sub_steps, policy)
        out.append({"id": f"{item['id']}/{k + 1}", "set": item.get("set", "train"),
                    "prompt": prompts.build_prompt(sub_equations, sub_steps, intermediates),
                    "derivation": JOIN.join(sub_equations), "srepr_derivation": sub_steps,
                    "equations": sub_equations, "intermediates": intermediates})
    return out


def with_sub_derivations(items: Sequence[Mapping], exclude_texts: Iterable[str] = (),
                         policy: str = "evaluate") -> tuple[list[dict], dict[str, int]]:
    """``items`` followed by their sub-derivations, without repeats or excluded texts.

    A sub-derivation is dropped when its (prompt, derivation) pair was seen already (two
    derivations often share a beginning) or when its prompt or derivation is one of
    ``exclude_texts`` (the test and dev sets' prompts and derivations: no leak through
    augmentation). Returns the items and counts of what was added and dropped.
    """
    excluded = set(exclude_texts)
    seen = {(it["prompt"], it["derivation"]) for it in items}
    added: list[dict] = []
    counts = {"sub_derivations": 0, "repeats_dropped": 0, "test_overlaps_dropped": 0}
    for item in items:
        for sub in sub_derivation_items(item, policy):
            pair = (sub["prompt"], sub["derivation"])
            if pair in seen:
                counts["repeats_dropped"] += 1
            elif sub["prompt"] in excluded or sub["derivation"] in excluded:
                counts["test_overlaps_dropped"] += 1
            else:
                seen.add(pair)
                added.append(sub)
                counts["sub_derivations"] += 1
    return [dict(it) for it in items] + added, counts
