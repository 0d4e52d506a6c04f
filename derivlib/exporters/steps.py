"""Step labels for process-reward work: every checked derivation as one JSON line in the shape of
PRM800K (OpenAI's process-supervision data), labelled by derivlib's symbolic check instead of
people (``python -m derivlib export steps``).

The ratings and the first wrong step are the check's own (``check --details`` writes them too,
flat): :attr:`derivlib.check.EquationCheck.rating` is +1 for ``reference`` and ``valid``, 0 for
``redundant`` and ``irrelevant``, -1 for ``incorrect``, and None for the equations the check
could not rate (``unparseable``, ``cut_off``, ``too_large``, ``timeout``); the first wrong step is the 0-based
index of the first equation rated -1. This module only puts them in PRM800K's record shape.

A record holds the item (``id``, ``model``, ``set``), the ``question`` (``problem``: the prompt;
``ground_truth_solution``: the reference derivation; ``ground_truth_answer``: its goal equation;
``pre_generated_steps``: the generated equations), and the ``label``, as PRM800K has it: one entry
per generated equation, ``{"completions": [{"text", "rating", "flagged"}], "human_completion":
null, "chosen_completion": 0}`` (``flagged`` marks an equation the check could not rate, as
PRM800K flags ratings to be looked at again), and a ``finish_reason`` (``found_error`` when some
step is rated -1, else ``solution`` when the goal is reached, else ``give_up``). Beside it, flat:
``ratings``, ``labels`` and ``reasons`` (the check's), ``first_wrong_step``,
``first_wrong_step_determined`` (no unrated equation before it, :func:`derivlib.check.symbolic_first_wrong_step`)
and ``goal_reached``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .. import __version__, check
from ..base.files import write_jsonl
from ..base.vocabulary import split_equations

LABELER = f"derivlib.check {__version__}"


def step_record(record: dict, checked: check.DerivationCheck) -> dict:
    """The PRM800K-shaped record of one prediction record and its check (module docstring)."""
    wrong = checked.first_wrong_step
    determined, _ = check.symbolic_first_wrong_step(checked)
    reference = split_equations(record.get("reference", ""))
    finish = "found_error" if wrong is not None else "solution" if checked.goal_reached else "give_up"
    steps = [{"completions": [{"text": e.text, "rating": e.rating, "flagged": e.rating is None}],
              "human_completion": None, "chosen_completion": 0}
             for e in checked.equations]
    return {"id": checked.id, "model": checked.model, "set": checked.set, "labeler": LABELER,
            "question": {"problem": record.get("prompt", ""), "ground_truth_solution": record.get("reference", ""),
                         "ground_truth_answer": reference[-1] if reference else "",
                         "pre_generated_steps": [e.text for e in checked.equations]},
            "label": {"steps": steps, "finish_reason": finish},
            "ratings": checked.ratings, "labels": checked.labels, "reasons": [e.reason for e in checked.equations],
            "first_wrong_step": wrong, "first_wrong_step_determined": determined,
            "goal_reached": checked.goal_reached}


def step_records(records: Iterable[dict], seed: int = 0, workers: int = 0, **limits) -> list[dict]:
    """Check every prediction record (:func:`derivlib.check.check_records`, its ``workers`` and
    limits) and shape its steps."""
    records = list(records)
    checks = check.check_records(records, seed=seed, workers=workers, **limits)
    return [step_record(r, c) for r, c in zip(records, checks)]


def export(records: Iterable[dict], out: Path | str, seed: int = 0, workers: int = 0, **limits) -> int:
    """Write the step records of ``records`` to ``out`` (JSONL, atomically); how many."""
    records = list(records)
    if not records:
        raise ValueError("no prediction records to label")
    return write_jsonl(out, step_records(records, seed, workers, **limits))
