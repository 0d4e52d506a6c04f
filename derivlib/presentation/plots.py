"""One function per figure type. Each takes data (DataFrames, dicts) and returns a matplotlib
Figure; the stages save it (``Run.save_figure``).

Each figure is drawn in derivlib's style (seaborn's whitegrid, notebook context, deep palette)
applied for that figure only: importing this module or drawing a figure leaves matplotlib's
global settings as they were.
"""
from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler

from ..check import LABELS


def _style() -> dict:
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
            "axes.prop_cycle": cycler(color=sns.color_palette("deep")),
            "font.family": ["sans-serif"]}


def styled(draw):
    """Run a figure function inside derivlib's style, restoring matplotlib's settings after."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_style()):
            return draw(*args, **kwargs)
    return wrapper


@styled
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


@styled
def set_statistics(item_table):
    """Test and training sets side by side: equations per derivation (left) and the share of
    prompts with 0, 1, 2, 3+ intermediates (right). ``item_table``: rows of ``sets.item_table``."""
    data = item_table.copy()
    order = [s for s in ("train", "dev", "static", "VR", "EE", "AG", "SR") if s in set(data["set"])]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    lengths = (data.groupby("set")["equations"].value_counts(normalize=True).mul(100)
               .rename("share").reset_index())
    sns.barplot(data=lengths, x="equations", y="share", hue="set", hue_order=order, ax=left)
    left.set_xlabel("equations per derivation")
    left.set_ylabel("share of the set's items (%)")
    left.set_title("Derivation length")
    # headroom above the tallest bar for the legend, which would otherwise hide bars
    left.set_ylim(0, lengths["share"].max() * 1.45)
    left.set_yticks([tick for tick in left.get_yticks() if 0 <= tick <= 100])  # a share, not above 100%
    left.legend(title="set", fontsize=8, ncols=4, loc="upper center")
    data["intermediates"] = data["intermediates"].clip(upper=3).map({0: "0", 1: "1", 2: "2", 3: "3+"})
    shares = (data.groupby("set")["intermediates"].value_counts(normalize=True).mul(100)
              .unstack(fill_value=0).reindex(index=order, columns=["0", "1", "2", "3+"], fill_value=0))
    bottom = None
    for column, colour in zip(shares.columns, ("#d9d9d9", "#6baed6", "#2171b5", "#08306b")):
        right.bar(shares.index, shares[column], bottom=bottom, label=column, color=colour)
        bottom = shares[column] if bottom is None else bottom + shares[column]
    right.set_ylim(0, 100)
    right.set_xlabel("set (items)")
    right.set_ylabel("share of prompts (%)")
    right.set_title("Intermediate equations in the prompt")
    right.legend(title="intermediates", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    counts = data["set"].value_counts()
    right.set_xticks(range(len(order)), [f"{s}\n{counts[s]:,}" for s in order], fontsize=8)
    fig.tight_layout()
    return fig


@styled
def loss_curve(history):
    """Training loss per logging step and dev loss per evaluation (left), dev ROUGE-2 (right).
    ``history``: the Trainer's ``log_history`` (``derivlib.models.t5.TrainResult.history``, or
    ``derivlib.models.decoder``'s, whose evaluations decode and log ROUGE-2 without a dev loss)."""
    train = [(h["epoch"], h["loss"]) for h in history if "loss" in h]
    dev_loss = [(h["epoch"], h["eval_loss"]) for h in history if "eval_loss" in h]
    dev_rouge = [(h["epoch"], 100 * h["eval_rouge2"]) for h in history if "eval_rouge2" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([e for e, _ in train], [v for _, v in train], label="training (per logging step)", lw=1.2)
    if dev_loss:
        left.plot([e for e, _ in dev_loss], [v for _, v in dev_loss], "o-", label="dev (per evaluation)")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss (nats per target token)")
    left.set_title("Loss")
    left.legend(fontsize=8)
    right.plot([e for e, _ in dev_rouge], [r for _, r in dev_rouge], "o-", color="C2")
    right.set_xlabel("epoch")
    right.set_ylabel("dev ROUGE-2 (x100)")
    right.set_ylim(0, 100)
    right.set_title("Dev ROUGE-2 (selects the kept checkpoint)")
    fig.tight_layout()
    return fig


@styled
def model_vs_baseline(table):
    """Mean ROUGE-2 per test set of each model beside the copy-the-prompt baseline.
    ``table``: ``derivlib.models.t5.summary_table`` (columns model, set, rouge2, items)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    sns.barplot(data=table, x="set", y="rouge2", hue="model", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=7, padding=1)
    ax.set_ylim(0, 105)
    ax.set_xlabel("test set")
    ax.set_ylabel("mean ROUGE-2 (x100)")
    ax.set_title("Fine-tuned T5 against copying the prompt")
    ax.legend(title="model", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- 01_generate

@styled
def operator_frequencies(operator_table):
    """Share of steps per operator, one bar colour per source (ours vs released)."""
    order = (operator_table.groupby("operator")["share"].max().sort_values(ascending=False).index)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    sns.barplot(data=operator_table, x="operator", y="share", hue="source", order=order, ax=ax)
    ax.set_xlabel("operator (annotation)")
    ax.set_ylabel("share of all steps")
    ax.set_title("Realised operator frequencies")
    ax.tick_params(axis="x", rotation=60)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


@styled
def equations_per_derivation(dataset_table):
    """Distribution of equations per derivation, normalised per source."""
    fig, ax = plt.subplots(figsize=(6, 4))
    lo, hi = int(dataset_table["equations"].min()), int(dataset_table["equations"].max())
    sns.histplot(data=dataset_table, x="equations", hue="source", stat="probability",
                 common_norm=False, discrete=True, multiple="dodge", shrink=0.8, ax=ax)
    ax.set_xticks(range(lo, hi + 1))
    ax.set_xlabel("equations per derivation")
    ax.set_ylabel("share of derivations")
    ax.set_title("Derivation length")
    fig.tight_layout()
    return fig


@styled
def latex_length(dataset_table):
    """Distribution of the mean LaTeX length of an equation, per source."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.histplot(data=dataset_table, x="equation_latex_length", hue="source", stat="probability",
                 common_norm=False, element="step", bins=30, ax=ax)
    ax.set_xlabel("mean LaTeX length of an equation (characters)")
    ax.set_ylabel("share of derivations")
    ax.set_title("Equation LaTeX length")
    fig.tight_layout()
    return fig


@styled
def rejections_by_reason(rejections: dict, n_derivations: int):
    """Rejected proposals per reason, per generated derivation (log scale)."""
    table = pd.DataFrame(sorted(rejections.items(), key=lambda kv: -kv[1]), columns=["reason", "count"])
    table["per derivation"] = table["count"] / max(n_derivations, 1)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(table) + 1.2))
    sns.barplot(data=table, y="reason", x="per derivation", color="C0", ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel(f"rejected proposals per accepted derivation (n = {n_derivations}, log scale)")
    ax.set_ylabel("")
    ax.set_title("Rejected proposals by reason")
    fig.tight_layout()
    return fig


@styled
def error_distribution(summary):
    """Share of generated equations per check label, per model and test set (stacked bars)."""
    table = summary.copy()
    table["model / set"] = table["model"] + " / " + table["set"]
    shares = table.set_index("model / set")[list(LABELS)].div(table.set_index("model / set")["equations"].clip(lower=1), axis=0) * 100
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(shares) + 1.8))
    colours = {"reference": "#4c9f70", "valid": "#9bd09f", "irrelevant": "#f2c14e",
               "redundant": "#f78154", "incorrect": "#d1495b", "unparseable": "#7a7a7a",
               "cut_off": "#b8b8b8", "too_large": "#3d5a80", "timeout": "#1b1b1b"}
    order = ["reference", "valid", "irrelevant", "redundant", "incorrect", "unparseable", "cut_off", "too_large",
             "timeout"]
    shares[order].iloc[::-1].plot.barh(stacked=True, ax=ax, color=[colours[k] for k in order], width=0.8)
    ax.set_xlabel("share of generated equations (%)")
    ax.set_ylabel("")
    ax.set_xlim(0, 100)
    ax.set_title("Symbolic check of generated equations")
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    figure_height = fig.get_size_inches()[1]
    fig.legend(handles, labels, ncol=3, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.85 / figure_height, 1, 1))  # the legend's three rows: about 0.85 inch
    return fig


@styled
def metric_vs_validity(per_item, metric: str = "rouge"):
    """Text metric against the share of symbolically correct equations, per derivation."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.scatterplot(data=per_item, x=metric, y="share correct", hue="model", style="goal reached",
                    alpha=0.6, ax=ax)
    correlation = np.corrcoef(per_item[metric], per_item["share correct"])[0, 1] if len(per_item) > 2 else float("nan")
    names = {"rouge": "ROUGE-2", "bleu": "BLEU", "gleu": "GLEU"}
    ax.set_xlabel(f"{names.get(metric, metric)} of the derivation against its reference (fraction)")
    ax.set_ylabel("share of equations correct (reference or valid)")
    ax.set_title(f"Text metric vs symbolic validity (Pearson r = {correlation:.2f}, n = {len(per_item)})")
    # outside the axes: derivations fill every corner of the unit square
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- 10_paper_items

@styled
def paper_items_rouge2(table):
    """The authors' released items: mean ROUGE-2 per test set (left) and the share of
    derivations reaching the goal (right), one bar per model. ``table``:
    ``derivlib.stages.paper_items.items_table`` (columns model, set, rouge2, goal_reached)."""
    models = list(dict.fromkeys(table["model"]))
    sets = list(dict.fromkeys(table["set"]))
    items = int(table["items"].max()) if len(table) else 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), sharex=True)
    for ax, column, label in ((left, "rouge2", "mean ROUGE-2 (x100)"),
                              (right, "goal_reached", "derivations reaching the goal (%)")):
        sns.barplot(data=table, x="set", y=column, hue="model", order=sets, hue_order=models, ax=ax,
                    legend=ax is right)
        for container in ax.containers:
            # upright labels overlap once six bars share a set
            ax.bar_label(container, fmt="%.0f", fontsize=6.5, padding=2, rotation=90)
        ax.set_ylim(0, 116)
        ax.set_yticks(range(0, 101, 20))  # shares and scores, never above 100
        ax.set_xlabel("test set")
        ax.set_ylabel(label)
    left.set_title(f"ROUGE-2 on the released items ({items} per set)")
    right.set_title("Goal equation reached (symbolic check)")
    right.legend(title="model", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
