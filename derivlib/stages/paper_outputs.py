"""Stage ``paper_outputs`` (notebook ``09_paper_outputs``): the authors' released outputs
rescored with derivlib's metrics, beside the scores stored in their files."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .. import metrics, scoring
from ..base.params import ParameterError, from_namespace
from ..base.vocabulary import paper_item_id
from ..readers import released
from . import rundir

STAGE = "paper_outputs"


@dataclasses.dataclass(frozen=True)
class Params:
    n_bootstrap: int = 1000  # bootstrap resamples over items for the 95% intervals
    seed: int = 0  # seed of the bootstrap
    profile: str = "smoke"

    def check(self) -> None:
        if self.n_bootstrap < 0:
            raise ParameterError(f"parameter 'n_bootstrap' must be >= 0, got {self.n_bootstrap}")


def open_run(namespace, out=None) -> rundir.Run:
    """Validate the parameters and open the run directory (keyed by the released files' digest)."""
    params = from_namespace(Params, namespace)
    digest, files = released.results_digest()
    if not files:
        print(f"SKIPPED: the released outputs are not available, nothing is rescored. {released.DOWNLOAD_HINT}")
    return rundir.start_run(STAGE, params, inputs={"paper_results": digest}, out=out)


def rescore(results_file):
    """Rescore one released file with derivlib. Returns (comparison, rescored, stored):
    comparison has one row per authors' column (max and mean absolute difference, both means
    x100); rescored and stored are per-item frames indexed by id with the authors' columns."""
    items = released.load_items(results_file)
    model = released.model_name(results_file, items)
    rescored = scoring.sensitivity_items(released.to_predictions(results_file), metrics.PAPER_METRICS)
    rescored = rescored.xs(model, level="model")
    columns = released.stored_columns(items)
    stored = pd.DataFrame([{c: item[c] for c in columns} for item in items],
                          index=[paper_item_id(i) for i in range(len(items))])
    rows = []
    for column in columns:
        difference = np.abs(rescored.loc[stored.index, column].to_numpy() - stored[column].to_numpy())
        rows.append({"model": model, "column": column, "items": len(stored),
                     "stored_mean_x100": 100 * stored[column].mean(),
                     "derivlib_mean_x100": 100 * rescored[column].mean(),
                     "max_abs_difference": float(np.nanmax(difference))})
    return pd.DataFrame(rows), rescored, stored


@dataclasses.dataclass
class Result:
    available: bool
    comparison: pd.DataFrame  # model, column, items, stored/derivlib means, max_abs_difference
    means: pd.DataFrame       # scoring.means_table of the released outputs rescored
    sensitivity: pd.DataFrame  # scoring.sensitivity_table of the released outputs

    def summary(self):
        """Worst absolute difference per model and kind of column (static, P_m, P_m_abs, ratio)."""
        if not self.available:
            return "skipped: " + released.DOWNLOAD_HINT
        kind = self.comparison["column"].str.replace(r"^(ratio_)?(static|VR|EE|AG|SR)_(\w+?)(_abs)?$",
                                                     lambda m: ("ratio_P_m" if m.group(1) else
                                                                "static_m" if m.group(2) == "static" else
                                                                "P_m_abs" if m.group(4) else "P_m"),
                                                     regex=True)
        return (self.comparison.assign(kind=kind)
                .pivot_table(index="model", columns="kind", values="max_abs_difference", aggfunc="max"))

    def means_wide(self):
        """Every set: mean x100 [95% bootstrap interval] per model and metric."""
        if not self.available:
            return "skipped: " + released.DOWNLOAD_HINT
        return scoring.wide_means(self.means)

    def static_means(self):
        """Per-model static means x100 (FLAN-T5-large ROUGE-2 91.17, GPT-4 82.84 per PAPER.md)."""
        if not self.available:
            return "skipped: " + released.DOWNLOAD_HINT
        table = self.means[self.means["set"] == "static"]
        return table.pivot_table(index="model", columns="metric", values="mean", sort=False).round(2)


def run(run: rundir.Run) -> Result:
    """Rescore the released files; write comparison.csv, means.csv, sensitivity.csv. When the
    files are absent, record that and complete with empty tables. A complete run loads."""
    names = ("comparison", "means", "sensitivity")
    if run.complete:
        if not run.inputs.get("paper_results"):
            return Result(False, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
        return Result(True, pd.read_csv(run.path("comparison.csv")), pd.read_csv(run.path("means.csv")),
                      pd.read_csv(run.path("sensitivity.csv"), index_col=[0, 1, 2]))
    files = released.results_files() if run.inputs.get("paper_results") else {}
    if not files:
        run.log(f"skipped: released outputs not available ({released.DOWNLOAD_HINT})")
        run.finish(skipped=1)
        return Result(False, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    comparisons, records = [], []
    for path in files.values():
        comparison, _, _ = rescore(path)
        comparisons.append(comparison)
        records += released.to_predictions(path)
        run.log(f"{path.name}: max |derivlib - stored| = {comparison['max_abs_difference'].max():.2e}")
    comparison = pd.concat(comparisons, ignore_index=True)
    scores = scoring.score_records(records, metrics.PAPER_METRICS)
    means = scoring.means_table(scores, run.params.n_bootstrap, run.params.seed)
    sensitivity = scoring.sensitivity_table(scoring.sensitivity_items(records, metrics.PAPER_METRICS))
    tables = {"comparison": comparison, "means": means, "sensitivity": sensitivity}
    for name in names:
        tables[name].to_csv(run.path(f"{name}.csv"), index=name == "sensitivity")
    run.finish(models=len(files), items=len(records))
    return Result(True, comparison, means, sensitivity)
