"""Score prediction records: per-item metrics, means with bootstrap intervals, and the
perturbation sensitivity measures of PAPER.md §5, for our outputs and the released ones alike.

Input everywhere is a list of prediction records (``derivlib.base.vocabulary.PREDICTION_FIELDS``;
the readers make them from files). Stage ``score`` (:mod:`derivlib.stages.score`) writes the tables. With s = static output, r = static reference and
sP / rP = output / reference of perturbation P on the matched item (same ``id``):

- ``P_m``          = M(s, r) - M(sP, rP)       the drop;
- ``P_m_abs``      = M(rP, r) - M(sP, s);
- ``ratio_P_m``    = M(sP, s) / M(rP, r)       NaN where M(rP, r) = 0 (the authors' Python
  division would raise there; no released item has a zero denominator);
- ``norm_P_m_abs`` = ``P_m_abs`` / mean over the model's matched items of M(rP, r).

M(a, b) always scores a as the prediction against b as the reference, as the released values were.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import pandas as pd

from . import metrics
from .base.vocabulary import PERTURBATIONS, SETS


def in_paper_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``set`` column ordered as the paper orders the sets (static, VR, EE,
    AG, SR), not alphabetically; a table read back from CSV needs it again."""
    if "set" in frame:
        frame = frame.assign(set=pd.Categorical(frame["set"], categories=list(SETS), ordered=True))
    return frame


def score_records(records: Sequence[dict], metric_names: Sequence[str] = metrics.PAPER_METRICS,
                  bleurt_checkpoint: str | None = None) -> pd.DataFrame:
    """One row per record: model, set, id and one column per metric (fractions)."""
    if not records:
        raise ValueError("no prediction records to score")
    scores = metrics.score_pairs([r["prediction"] for r in records], [r["reference"] for r in records],
                                 metric_names, bleurt_checkpoint=bleurt_checkpoint)
    frame = pd.DataFrame({"model": [r["model"] for r in records], "set": [r["set"] for r in records],
                          "id": [r["id"] for r in records], **scores})
    duplicated = frame.duplicated(["model", "set", "id"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise ValueError(f"duplicate prediction record: model {first['model']!r}, set {first['set']!r}, "
                         f"id {first['id']!r}")
    return frame


def sensitivity_items(records: Sequence[dict], metric_names: Sequence[str] = metrics.PAPER_METRICS,
                      ) -> pd.DataFrame:
    """Per model and matched item (same id in static and P): the authors' columns ``static_m``,
    ``P_m``, ``P_m_abs``, ``ratio_P_m`` and ours ``norm_P_m_abs``, for every perturbation present.

    Index (model, id). Items without a static record, or sets without the item, are left out.
    """
    by_key = {(r["model"], r["set"], r["id"]): r for r in records}
    statics = {(r["model"], r["id"]): r for r in records if r["set"] == "static"}
    # Every pair of every item first, then one batch call (shared strings are tokenized once).
    pair_keys, predictions, references = [], [], []
    for (model, item_id), static in statics.items():
        pair_keys.append((model, item_id, "static"))
        predictions.append(static["prediction"])
        references.append(static["reference"])
        for p in PERTURBATIONS:
            perturbed = by_key.get((model, p, item_id))
            if perturbed is None:
                continue
            for kind, prediction, reference in (
                    ("sP_rP", perturbed["prediction"], perturbed["reference"]),
                    ("rP_r", perturbed["reference"], static["reference"]),
                    ("sP_s", perturbed["prediction"], static["prediction"])):
                pair_keys.append((model, item_id, f"{p}:{kind}"))
                predictions.append(prediction)
                references.append(reference)
    scores = metrics.score_pairs(predictions, references, metric_names)
    value = {(*key, m): scores[m][i] for i, key in enumerate(pair_keys) for m in metric_names}
    rows = []
    for model, item_id in statics:
        row = {"model": model, "id": item_id}
        for m in metric_names:
            row[f"static_{m}"] = value[(model, item_id, "static", m)]
        for p in PERTURBATIONS:
            if (model, item_id, f"{p}:sP_rP", metric_names[0]) not in value:
                continue
            for m in metric_names:
                drop_pair = value[(model, item_id, f"{p}:sP_rP", m)]
                reference_shift = value[(model, item_id, f"{p}:rP_r", m)]
                output_shift = value[(model, item_id, f"{p}:sP_s", m)]
                row[f"{p}_{m}"] = row[f"static_{m}"] - drop_pair
                row[f"{p}_{m}_abs"] = reference_shift - output_shift
                row[f"ratio_{p}_{m}"] = (output_shift / reference_shift
                                         if reference_shift != 0 else float("nan"))
                row[f"_{p}_{m}_rP_r"] = reference_shift
        rows.append(row)
    if not rows:
        raise ValueError("no static records: sensitivity needs each perturbed item's static item")
    frame = pd.DataFrame(rows).set_index(["model", "id"])
    norm: dict[str, list[pd.Series]] = {}
    for model, group in frame.groupby(level="model", sort=False):
        for p in PERTURBATIONS:
            for m in metric_names:
                if f"_{p}_{m}_rP_r" in group:
                    mean_shift = group[f"_{p}_{m}_rP_r"].mean()
                    norm.setdefault(f"norm_{p}_{m}_abs", []).append(
                        group[f"{p}_{m}_abs"] / mean_shift if mean_shift else group[f"{p}_{m}_abs"] * np.nan)
    if norm:
        frame = pd.concat([frame, pd.DataFrame({k: pd.concat(v) for k, v in norm.items()})], axis=1)
    return frame.drop(columns=[c for c in frame if c.startswith("_")])


def sensitivity_long(items: pd.DataFrame) -> pd.DataFrame:
    """:func:`sensitivity_items` as rows (model, id, perturbation, metric, measure, value)."""
    long = items.reset_index().melt(id_vars=["model", "id"], var_name="column", value_name="value")
    parsed = long["column"].str.extract(
        r"^(?:(?P<pre>ratio|norm)_)?(?P<perturbation>VR|EE|AG|SR)_(?P<metric>.+?)(?P<abs>_abs)?$")
    long = long.join(parsed).dropna(subset=["perturbation"])
    long["measure"] = np.select(
        [long["pre"] == "ratio", long["pre"] == "norm", long["abs"].notna()],
        ["ratio_P_m", "norm_P_m_abs", "P_m_abs"], "P_m")
    return long[["model", "id", "perturbation", "metric", "measure", "value"]].reset_index(drop=True)


def sensitivity_table(items: pd.DataFrame) -> pd.DataFrame:
    """Means over items per model x perturbation x metric of the four measures.

    ``P_m`` and ``P_m_abs`` are shown x100 (points, like the score tables); the ratios unscaled."""
    long = sensitivity_long(items)
    table = long.pivot_table(index=["model", "perturbation", "metric"], columns="measure",
                             values="value", aggfunc="mean", observed=True)
    for column in ("P_m", "P_m_abs"):
        if column in table:
            table[column] *= 100
    table = table.reindex(columns=[c for c in ("P_m", "P_m_abs", "ratio_P_m", "norm_P_m_abs") if c in table])
    order = {p: i for i, p in enumerate(PERTURBATIONS)}
    return table.sort_index(key=lambda level: level.map(order) if level.name == "perturbation" else level)


def _group_rng(seed: int, *labels: str) -> np.random.Generator:
    # Each (model, set) gets its own stream from (seed, labels): the intervals of one group do
    # not depend on which other groups were scored, or in which order.
    return np.random.default_rng([seed, zlib.crc32("|".join(labels).encode())])


def means_table(scores: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0,
                confidence: float = 0.95) -> pd.DataFrame:
    """Per model x set x metric: n items, mean x100 and a percentile bootstrap interval x100
    over items (seeded). The same resampled items serve every metric of a (model, set)."""
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    metric_names = [c for c in scores.columns if c not in ("model", "set", "id")]
    rows = []
    for (model, set_name), group in in_paper_order(scores).groupby(["model", "set"], observed=True, sort=True):
        values = group[metric_names].to_numpy(dtype=float)
        n = len(values)
        if n_bootstrap:
            resampled = _group_rng(seed, model, str(set_name)).integers(0, n, size=(n_bootstrap, n))
            boot = values[resampled].mean(axis=1)  # (n_bootstrap, metrics)
            alpha = (1 - confidence) / 2
            low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        else:
            low = high = np.full(len(metric_names), np.nan)
        for j, m in enumerate(metric_names):
            rows.append({"model": model, "set": set_name, "metric": m, "n": n,
                         "mean": 100 * values[:, j].mean(), "ci_low": 100 * low[j], "ci_high": 100 * high[j]})
    return in_paper_order(pd.DataFrame(rows))


def wide_means(table: pd.DataFrame) -> pd.DataFrame:
    """The means table as model x metric rows and one column per set, formatted
    ``mean [low, high]`` (what a reader compares with the paper's tables)."""
    text = table.assign(cell=[f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{m:.2f}"
                              for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"])])
    return text.pivot_table(index=["model", "metric"], columns="set", values="cell", aggfunc="first",
                            observed=True, sort=False)


def csv_rows(scores: pd.DataFrame, metric_names: Sequence[str] = metrics.PAPER_METRICS) -> pd.DataFrame:
    """Columns exactly ``model,set,metric,mean``: mean over items x100 per model x set x metric."""
    long = in_paper_order(scores).melt(id_vars=["model", "set", "id"], value_vars=list(metric_names),
                                 var_name="metric", value_name="score")
    long["metric"] = pd.Categorical(long["metric"], categories=list(metric_names), ordered=True)
    out = long.groupby(["model", "set", "metric"], observed=True, sort=True)["score"].mean() * 100
    return out.rename("mean").reset_index()
