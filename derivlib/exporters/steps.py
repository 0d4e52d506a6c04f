"""Step labels for process-reward work: every checked derivation as one JSON line in the shape of
PRM800K (OpenAI's process-supervision data), labelled by derivlib's symbolic check instead of
people (``python -m derivlib export steps``).

A record holds the item (``id``, ``model``, ``set``), the ``question`` (``problem``: the prompt;
``ground_truth_solution``: the reference derivation; ``ground_truth_answer``: its goal equation;
``pre_generated_steps``: the generated equations), and the ``label``, as PRM800K has it: one entry
per generated equation, ``{"completions": [{"text", "rating", "flagged"}], "human_completion":
null, "chosen_completion": 0}``, and a ``finish_reason`` (``found_error`` when some step is rated
-1, else ``solution`` when the goal is reached, else ``give_up``). Beside it, flat: ``ratings``,
``labels`` (the check's), ``first_wrong_step`` (0-based index of the first step rated -1, or
null) and ``goal_reached``.

Ratings (:data:`RATINGS`): +1 a step that holds (``reference``, ``valid``); 0 a true step that does
not advance (``redundant``, ``irrelevant``); -1 a step that is wrong or cannot be read
(``incorrect``, ``unparseable``). A step too large to check (``too_large``) is rated -1 and
``flagged``, as PRM800K flags ratings to be looked at again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from .. import __version__, check
from ..base.files import write_jsonl
from ..base.vocabulary import split_equations

#: Check label -> (rating, flagged).
RATINGS = {"reference": (1, False), "valid": (1, False), "redundant": (0, False), "irrelevant": (0, False),
           "incorrect": (-1, False), "unparseable": (-1, False), "too_large": (-1, True)}
LABELER = f"derivlib.check {__version__}"


def rating(label: str) -> tuple[int, bool]:
    """(rating, flagged) of one check label; a label this table does not know is an error."""
    if label not in RATINGS:
        raise ValueError(f"check label {label!r} has no step rating (known: {', '.join(RATINGS)})")
    return RATINGS[label]


def first_wrong_step(ratings: Sequence[int]) -> int | None:
    """0-based index of the first step rated -1, or None."""
    return next((i for i, r in enumerate(ratings) if r == -1), None)


def step_record(record: dict, checked) -> dict:
    """The PRM800K-shaped record of one prediction record and its check (module docstring)."""
    rated = [rating(e.label) for e in checked.equations]
    ratings = [r for r, _ in rated]
    wrong = first_wrong_step(ratings)
    reference = split_equations(record.get("reference", ""))
    finish = "found_error" if wrong is not None else "solution" if checked.goal_reached else "give_up"
    steps = [{"completions": [{"text": e.text, "rating": r, "flagged": flagged}],
              "human_completion": None, "chosen_completion": 0}
             for e, (r, flagged) in zip(checked.equations, rated)]
    return {"id": checked.id, "model": checked.model, "set": checked.set, "labeler": LABELER,
            "question": {"problem": record.get("prompt", ""), "ground_truth_solution": record.get("reference", ""),
                         "ground_truth_answer": reference[-1] if reference else "",
                         "pre_generated_steps": [e.text for e in checked.equations]},
            "label": {"steps": steps, "finish_reason": finish},
            "ratings": ratings, "labels": checked.labels, "first_wrong_step": wrong,
            "goal_reached": checked.goal_reached}


def step_records(records: Iterable[dict], seed: int = 0) -> list[dict]:
    """Check every prediction record and label its steps."""
    records = list(records)
    return [step_record(r, c) for r, c in zip(records, check.check_records(records, seed=seed))]


def export(records: Iterable[dict], out: Path | str, seed: int = 0) -> int:
    """Write the step records of ``records`` to ``out`` (JSONL, atomically); how many."""
    records = list(records)
    if not records:
        raise ValueError("no prediction records to label")
    return write_jsonl(out, step_records(records, seed))
