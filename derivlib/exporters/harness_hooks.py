"""The functions an exported lm-evaluation-harness task calls (its ``utils.py`` re-exports them):
derivlib's own metrics and symbolic check of one generated derivation, and their aggregations.

Per document, :func:`process_results` takes the model's answer, pulls the derivation out of it
as derivlib does with every chat answer (:func:`derivlib.fewshot.extract_derivation`), and
returns

``rouge2``, ``bleu``, ``gleu``
    the paper's metrics exactly as ``score`` computes them (:func:`derivlib.metrics.score_pair`),
    as fractions; aggregated by their mean over documents, as the paper's tables are.
``incorrect_share``
    ``[incorrect equations, equations]`` of :func:`derivlib.check.check_derivation`; aggregated
    by :func:`pooled_share` (all incorrect over all equations), the ``incorrect %`` of
    ``check``'s table, as a fraction.
``goal_reached``
    1 when some generated equation is the reference's goal (``check``), else 0; mean.
``with_wrong_step``
    1 when the check labels some equation ``incorrect`` (its step rating -1), else 0; mean:
    ``with_wrong_step / derivations`` of ``check``'s table.
``first_wrong_step``
    the check's first wrong step (:attr:`derivlib.check.DerivationCheck.first_wrong_step`: the
    0-based index of the first equation rated -1), or None; aggregated by :func:`mean_present`,
    the mean index over the derivations that have one (NaN when none has).

The symbolic check uses seed :data:`CHECK_SEED`, ``check``'s default, in the harness's process,
bounded by the check's structural budgets (``check --workers`` adds a time limit per equation).
"""
from __future__ import annotations

import json
import math
from typing import Sequence

from .. import check, fewshot, metrics

#: Seed of the check's numeric points: the ``check`` command's default.
CHECK_SEED = 0
#: The per-document metrics, in the order the harness's table lists them.
METRICS = ("rouge2", "bleu", "gleu", "incorrect_share", "goal_reached", "with_wrong_step", "first_wrong_step")
#: The harness's metric name -> derivlib's (``score``'s) metric name.
PAPER_NAMES = {"rouge2": "rouge", "bleu": "bleu", "gleu": "gleu"}
#: Metrics whose aggregation is a plain mean; the others' aggregation function, by its name here.
MEAN_METRICS = ("rouge2", "bleu", "gleu", "goal_reached", "with_wrong_step")
AGGREGATIONS = {"incorrect_share": "pooled_share", "first_wrong_step": "mean_present"}
#: A later first wrong step is better: more of the derivation holds before it.
HIGHER_IS_BETTER = {"rouge2": True, "bleu": True, "gleu": True, "incorrect_share": False, "goal_reached": True,
                    "with_wrong_step": False, "first_wrong_step": True}


def reference_steps(doc: dict) -> list:
    """The reference's srepr steps of an exported row (JSON text, so every Arrow version reads it)."""
    steps = doc["srepr_derivation"]
    return json.loads(steps) if isinstance(steps, str) else steps


def process_results(doc: dict, results: Sequence[str]) -> dict:
    """The per-document metrics of one answer (module docstring)."""
    answer = results[0] if results else ""
    prediction = fewshot.extract_derivation(answer if isinstance(answer, str) else "")
    scores = metrics.score_pair(prediction, doc["derivation"], metrics.PAPER_METRICS)
    checked = check.check_derivation(prediction, reference_steps(doc), seed=CHECK_SEED,
                                     id=str(doc.get("id", "")), set_name=str(doc.get("set", "")))
    labels = checked.labels
    return {**{name: scores[paper] for name, paper in PAPER_NAMES.items()},
            "incorrect_share": [labels.count("incorrect"), len(labels)],
            "goal_reached": float(checked.goal_reached),
            "with_wrong_step": float(checked.first_wrong_step is not None),
            "first_wrong_step": checked.first_wrong_step}


def pooled_share(items: Sequence[Sequence[int]]) -> float:
    """All counted over all: ``sum(k) / sum(n)`` of ``[k, n]`` pairs (0 when nothing was counted)."""
    numerator = sum(int(k) for k, _ in items)
    denominator = sum(int(n) for _, n in items)
    return numerator / denominator if denominator else 0.0


def mean_present(items: Sequence[int | None]) -> float:
    """The mean of the values that are not None (NaN when all are None)."""
    present = [float(v) for v in items if v is not None]
    return sum(present) / len(present) if present else math.nan
