"""One function per figure type. Each takes data (DataFrames, dicts) and returns a matplotlib
Figure; notebooks save it with ``run.save_figure``. Several engineers append here: edit with
targeted insertions only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")
__all__ = ["plt", "sns"]


def score_drops(sensitivity_long, measure: str = "P_m"):
    """Mean score drop (x100) per perturbation, one panel per metric, bars per model, with 95%
    intervals over items. ``sensitivity_long``: rows of ``scoring.sensitivity_long``."""
    data = sensitivity_long[sensitivity_long["measure"] == measure].copy()
    data["value"] = data["value"] * 100
    metric_order = list(dict.fromkeys(data["metric"]))
    grid = sns.catplot(data=data, x="perturbation", y="value", hue="model", col="metric",
                       col_order=metric_order, order=["VR", "EE", "AG", "SR"], kind="bar",
                       errorbar=("ci", 95), seed=0, col_wrap=min(3, len(metric_order)),
                       height=3.2, aspect=1.1, sharey=True)
    grid.set_axis_labels("perturbation", "score drop (x100)")
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.axhline(0, color="black", linewidth=0.8)
    grid.figure.suptitle("Score drop M(s, r) - M(sP, rP) per perturbation: mean over matched items "
                         "with 95% interval (higher = more sensitive)", y=1.03)
    return grid.figure
