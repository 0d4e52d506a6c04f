"""Tables over many checks: counts per model x set (:func:`summarize`), the equations that do
not parse by kind (:func:`failures_table`) and ProcessBench-style numbers of a step-level
verifier against the symbolic first wrong step (:func:`processbench_table`)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Sequence

import pandas as pd

from .. import dialect
from ..base.vocabulary import SETS
from .derivations import LABELS, DerivationCheck, EquationCheck, cut_off_reason

#: Columns of :func:`summarize` after ``model, set``: counts, then the share of equations parsed.
COUNT_COLUMNS = ("equations",) + LABELS + ("derivations", "goal_reached", "with_wrong_step", "parsed_share")

#: Kinds of parse failure (:func:`failure_kind`), in the order tables list them.
FAILURE_KINDS = ("start missing", "cut off at the end", "unbalanced brackets", "not an equation",
                 "unknown command", "outside the dialect")


def _order(model_set: tuple) -> tuple:
    order = {name: i for i, name in enumerate(SETS)}
    return model_set[0], order.get(model_set[1], 99), model_set[1]


def summarize(checks: Iterable[DerivationCheck]):
    """Counts per (model, set): a DataFrame with the columns ``model, set`` + COUNT_COLUMNS.
    ``parsed_share`` is the share of equations not labelled ``unparseable`` (a ``cut_off`` answer end
    is not a whole equation; ``too_large`` and ``timeout`` ones were read); ``with_wrong_step``
    counts derivations with an equation labelled ``incorrect``."""
    rows: dict[tuple, Counter] = {}
    for check in checks:
        counts = rows.setdefault((check.model, check.set), Counter())
        counts["derivations"] += 1
        counts["goal_reached"] += int(check.goal_reached)
        counts["with_wrong_step"] += int(check.first_wrong_step is not None)
        counts["equations"] += len(check.equations)
        counts.update(check.labels)
    table = []
    for (model, set_name), counts in sorted(rows.items(), key=lambda kv: _order(kv[0])):
        row = {"model": model, "set": set_name, **{c: counts.get(c, 0) for c in COUNT_COLUMNS[:-1]}}
        row["parsed_share"] = 1 - counts["unparseable"] / counts["equations"] if counts["equations"] else float("nan")
        table.append(row)
    return pd.DataFrame(table, columns=["model", "set", *COUNT_COLUMNS])


def format_table(table) -> str:
    """The summary as a readable table: counts, each label's share of equations in %, the share
    of equations parsed and of derivations reaching the goal."""
    shown = table.copy()
    for label in LABELS:
        shown[f"{label} %"] = (100 * shown[label] / shown["equations"].clip(lower=1)).round(1)
    shown["goal %"] = (100 * shown["goal_reached"] / shown["derivations"].clip(lower=1)).round(1)
    shown["parsed %"] = (100 * shown["parsed_share"]).round(2)
    columns = ["model", "set", "derivations", "equations", *(f"{label} %" for label in LABELS), "goal %", "parsed %"]
    return shown[columns].to_string(index=False)


def examples(checks: Sequence[DerivationCheck]) -> dict[str, EquationCheck]:
    """The first equation of each label (for display), in LABELS order."""
    found: dict[str, EquationCheck] = {}
    for derivation_check in checks:
        for equation in derivation_check.equations:
            found.setdefault(equation.label, equation)
    return {label: found[label] for label in LABELS if label in found}


# ----------------------------------------------------------------------------------- parse failures

def failure_kind(text: str, reason: str, first: bool, last: bool) -> str:
    """Why an equation did not parse, as one of FAILURE_KINDS. ``first``/``last``: whether it is
    the first / last equation of its prediction (a cut-off output loses its end, and FLAN-T5's
    released outputs sometimes lack their first tokens)."""
    unmatched, unclosed = dialect.unmatched_brackets(text)
    if reason.startswith("not an equation"):
        return "not an equation"
    if first and (unmatched or text.lstrip().startswith("{")):  # "{ (a, b) } = ...": a function lost its name
        return "start missing"
    if last and cut_off_reason(text, reason):
        return "cut off at the end"
    if unmatched or unclosed:
        return "unbalanced brackets"
    if "unknown command" in reason:
        return "unknown command"
    return "outside the dialect"


def failures_table(checks: Iterable[DerivationCheck]) -> pd.DataFrame:
    """Every equation that was not read: labelled ``unparseable`` or ``cut_off`` (kind "cut off
    at the end"); model, set, id, index, kind, reason, text; sorted by kind (FAILURE_KINDS
    order), model, set."""
    rows = []
    rank = {kind: i for i, kind in enumerate(FAILURE_KINDS)}
    for check in checks:
        for index, equation in enumerate(check.equations):
            if equation.label == "cut_off":
                kind = "cut off at the end"
            elif equation.label == "unparseable":
                last = all(e.label == "too_large" for e in check.equations[index + 1:])  # budget entries end a list
                kind = failure_kind(equation.text, equation.reason, index == 0, last)
            else:
                continue
            rows.append({"model": check.model, "set": check.set, "id": check.id, "index": index, "kind": kind,
                         "reason": equation.reason, "text": equation.text,
                         "_order": (rank[kind], *_order((check.model, check.set)), check.id, index)})
    rows.sort(key=lambda row: row.pop("_order"))
    return pd.DataFrame(rows, columns=["model", "set", "id", "index", "kind", "reason", "text"])


# ----------------------------------------------------------------------------------- ProcessBench

def symbolic_first_wrong_step(check: DerivationCheck) -> tuple[bool, int | None]:
    """(determined, index): the reference answer of ProcessBench-style evaluation, from the
    symbolic labels. The first wrong step is the first equation rated -1; it is determined when
    no equation before it (or, with none rated -1, no equation at all) lacks a rating
    (unparseable, too_large, timeout: it might have been the first error) and the derivation has
    an equation."""
    ratings = check.ratings
    first = check.first_wrong_step
    before = ratings if first is None else ratings[:first]
    return (bool(ratings) and all(r is not None for r in before)), first


def reference_match_first_deviation(check: DerivationCheck) -> int | None:
    """The baseline step verifier: the first equation that is not one of the reference
    derivation's equations (either side order; unparseable ones included), or None. It is what
    comparing a derivation with its reference can tell at the level of steps."""
    return next((i for i, e in enumerate(check.equations) if e.reference_step is None), None)


def processbench(pairs: Iterable[tuple[int | None, int | None]]) -> dict:
    """ProcessBench's numbers over (reference first wrong step, verifier's first wrong step)
    pairs, None meaning no error: accuracy on the erroneous derivations (the step found
    exactly), accuracy on the correct ones (none flagged), and F1, their harmonic mean."""
    erroneous = correct = hit_error = hit_correct = 0
    for reference, predicted in pairs:
        if reference is None:
            correct += 1
            hit_correct += predicted is None
        else:
            erroneous += 1
            hit_error += predicted == reference
    error_accuracy = hit_error / erroneous if erroneous else float("nan")
    correct_accuracy = hit_correct / correct if correct else float("nan")
    total = error_accuracy + correct_accuracy
    f1 = 2 * error_accuracy * correct_accuracy / total if total and not math.isnan(total) else float("nan")
    return {"erroneous": erroneous, "correct": correct, "error_accuracy": error_accuracy,
            "correct_accuracy": correct_accuracy, "f1": f1}


def processbench_table(checks: Iterable[DerivationCheck],
                       verifier: Callable[[DerivationCheck], int | None] = reference_match_first_deviation
                       ) -> pd.DataFrame:
    """ProcessBench-style numbers per (model, set) of ``verifier`` (a derivation's check -> the
    index it flags as the first wrong step, or None) against :func:`symbolic_first_wrong_step`;
    derivations whose reference is not determined are counted (``undetermined``) and left out."""
    groups: dict[tuple, list] = {}
    undetermined: Counter = Counter()
    for check in checks:
        key = (check.model, check.set)
        groups.setdefault(key, [])
        determined, first = symbolic_first_wrong_step(check)
        if determined:
            groups[key].append((first, verifier(check)))
        else:
            undetermined[key] += 1
    rows = [{"model": key[0], "set": key[1], "derivations": len(pairs) + undetermined[key],
             "undetermined": undetermined[key], **processbench(pairs)}
            for key, pairs in sorted(groups.items(), key=lambda kv: _order(kv[0]))]
    return pd.DataFrame(rows, columns=["model", "set", "derivations", "undetermined", "erroneous", "correct",
                                       "error_accuracy", "correct_accuracy", "f1"])
