"""Prompts: what a model is asked to derive (PAPER.md §1).

``Given <premise>[ and <premise>], then derive <intermediate>[, then derive ...], then obtain <goal>``

Premises are the premise-annotated steps in order, the goal is the last equation, intermediates
are interior equations (neither first nor last, nor premises).

Which interior equations become intermediates. Measured on the released data (the 100 test
prompts and the 486 distinct training prompts shown to GPT-4 as exemplars): every released
intermediate is an interior equation made by ``evaluate_derivatives`` or ``evaluate_integrals``,
and every such interior equation is an intermediate, in derivation order. That rule (policy
``"evaluate"``, the default) reproduces all 100 released test prompts and yields the released
distributions by itself: training prompts 53% with none, 43% with one, 4% with two or three;
test prompts (which need at least one, for SR) 91% / 8% / 1% with one / two / three.

Policy ``"random"`` is the alternative the paper's text suggests: the number of intermediates is
drawn from ``TRAIN_COUNTS`` / ``TEST_COUNTS`` (the released distributions) with an explicit
generator, and that many interior equations are drawn uniformly, kept in derivation order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from .base.vocabulary import JOIN, split_equations
from .derivation import is_premise, normalise_annotation, operator_name

GIVEN = "Given "
DERIVE = ", then derive "
OBTAIN = ", then obtain "
#: Steps whose equations the authors' prompts give as intermediates (see the module docstring).
EVALUATION_OPERATORS = ("evaluate_derivatives", "evaluate_integrals")
POLICIES = ("evaluate", "random")
#: Number of intermediates -> weight, as in the released training prompts (policy "random").
TRAIN_COUNTS: dict[int, float] = {0: 0.53, 1: 0.43, 2: 0.037, 3: 0.004}
#: Number of intermediates -> weight, as in the released test prompts (policy "random").
TEST_COUNTS: dict[int, float] = {1: 0.91, 2: 0.08, 3: 0.01}


@dataclass(frozen=True)
class PromptParts:
    premises: list[str]
    intermediates: list[str]
    goal: str


def premise_positions(steps: Sequence[Sequence]) -> list[int]:
    """Indices of premise-annotated steps (the goal excluded: it is asked for, not given)."""
    last = len(steps) - 1
    return [i for i, (annotation, _) in enumerate(steps) if is_premise(annotation) and i != last]


def interior_positions(steps: Sequence[Sequence]) -> list[int]:
    """Indices that may be intermediates: neither first nor last, not premises."""
    return [i for i in range(1, len(steps) - 1) if not is_premise(steps[i][0])]


def choose_intermediates(steps: Sequence[Sequence], policy: str = "evaluate",
                         rng: random.Random | None = None,
                         counts: Mapping[int, float] | None = None) -> list[int]:
    """Indices of the intermediates of a prompt for ``steps``, in derivation order.

    ``policy="evaluate"`` is deterministic (the authors' rule); ``policy="random"`` draws the
    number from ``counts`` (default ``TRAIN_COUNTS``) and the equations with ``rng``.
    """
    candidates = interior_positions(steps)
    if policy == "evaluate":
        return [i for i in candidates
                if operator_name(normalise_annotation(steps[i][0])) in EVALUATION_OPERATORS]
    if policy == "random":
        if rng is None:
            raise ValueError("policy 'random' needs an explicit random generator (rng)")
        counts = dict(TRAIN_COUNTS if counts is None else counts)
        feasible = {k: w for k, w in counts.items() if k <= len(candidates) and w > 0}
        if not feasible:
            return []
        numbers = sorted(feasible)
        k = rng.choices(numbers, weights=[feasible[n] for n in numbers])[0]
        return sorted(rng.sample(candidates, k))
    raise ValueError(f"unknown intermediate policy {policy!r} (known: {', '.join(POLICIES)})")


def format_prompt(premises: Sequence[str], intermediates: Sequence[str], goal: str) -> str:
    if not premises:
        raise ValueError("a prompt needs at least one premise")
    text = GIVEN + JOIN.join(premises)
    for equation in intermediates:
        text += DERIVE + equation
    return text + OBTAIN + goal


def build_prompt(equations: Sequence[str], steps: Sequence[Sequence],
                 intermediates: Sequence[int]) -> str:
    """The prompt for a derivation whose equations print as ``equations``."""
    if len(equations) != len(steps):
        raise ValueError(f"{len(equations)} equation texts for {len(steps)} steps")
    premises = [equations[i] for i in premise_positions(steps)]
    return format_prompt(premises, [equations[i] for i in intermediates], equations[-1])


def bare_prompt(text: str) -> str:
    """The test prompt inside a few-shot prompt (the GPT results hold the whole 5-shot text)."""
    marker = "Prompt: "
    return text[text.rindex(marker) + len(marker):].strip() if marker in text else text


def parse_prompt(text: str) -> PromptParts:
    """Split a (bare or few-shot) prompt into premises, intermediates and goal."""
    text = bare_prompt(text)
    if not text.startswith(GIVEN) or OBTAIN not in text:
        raise ValueError(f"not a derivation prompt (expected 'Given ..., then obtain ...'): {text[:80]!r}")
    head, _, goal = text[len(GIVEN):].rpartition(OBTAIN)
    given, *intermediates = head.split(DERIVE)
    return PromptParts(premises=given.split(JOIN), intermediates=intermediates, goal=goal)


def equations_of(record: Mapping) -> list[str]:
    """Equation texts of a record (ours carry ``equations``; the authors' only ``derivation``)."""
    if record.get("equations"):
        return list(record["equations"])
    return split_equations(record["derivation"])


def locate_intermediates(record: Mapping) -> list[int]:
    """Indices of the intermediates of ``record``'s prompt.

    Ours store them (``intermediates``); for the authors' items they are found by matching the
    prompt's ``then derive`` equations against the derivation's equations, in order.
    """
    if record.get("intermediates") is not None:
        return [int(i) for i in record["intermediates"]]
    equations = equations_of(record)
    positions, start = [], 1
    for text in parse_prompt(record["prompt"]).intermediates:
        try:
            index = equations.index(text, start)
        except ValueError:
            raise ValueError(f"record {record.get('id', '?')!r}: intermediate {text[:60]!r} of its "
                             "prompt is not an equation of its derivation") from None
        positions.append(index)
        start = index + 1
    return positions
