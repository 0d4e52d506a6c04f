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

The symbolic check uses seed :data:`CHECK_SEED`, ``check``'s default.
"""
from __future__ import annotations

import json
from typing import Sequence

from .. import check, fewshot, metrics

#: Seed of the check's numeric points: the ``check`` command's default.
CHECK_SEED = 0
#: The per-document metrics, in the order the harness's table lists them.
METRICS = ("rouge2", "bleu", "gleu", "incorrect_share", "goal_reached")
#: The harness's metric name -> derivlib's (``score``'s) metric name.
PAPER_NAMES = {"rouge2": "rouge", "bleu": "bleu", "gleu": "gleu"}
#: Metrics whose aggregation is a plain mean (the others name their function here).
MEAN_METRICS = ("rouge2", "bleu", "gleu", "goal_reached")
HIGHER_IS_BETTER = {"rouge2": True, "bleu": True, "gleu": True, "incorrect_share": False, "goal_reached": True}


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
            "goal_reached": float(checked.goal_reached)}


def pooled_share(items: Sequence[Sequence[int]]) -> float:
    """All counted over all: ``sum(k) / sum(n)`` of ``[k, n]`` pairs (0 when nothing was counted)."""
    numerator = sum(int(k) for k, _ in items)
    denominator = sum(int(n) for _, n in items)
    return numerator / denominator if denominator else 0.0
