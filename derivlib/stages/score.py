"""Stage ``score`` (notebook ``07_score``): the paper's metric tables and perturbation
sensitivity for every predictions run and, when ``DERIVLIB_PAPER_RESULTS`` is set, the authors'
released outputs, scored by the same code (:mod:`derivlib.scoring`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from .. import metrics, scoring
from ..base.params import ParameterError, from_namespace
from ..models import t5
from ..presentation import plots
from ..readers import released, runs
from . import rundir

STAGE = "score"
#: Metrics a run may ask for (BLEURT is added by ``bleurt_checkpoint``, not named here).
KNOWN_METRICS = metrics.PAPER_METRICS + metrics.LATEX_METRICS


@dataclasses.dataclass(frozen=True)
class Params:
    # run directories (relative to the data root) holding predictions.jsonl
    predictions: list = dataclasses.field(default_factory=lambda: ["predict_t5/smoke", "prompt_llm/smoke"])
    include_paper_results: bool = True  # also score the released outputs when DERIVLIB_PAPER_RESULTS is set
    # paper-exact metrics, then ours
    metrics: list = dataclasses.field(default_factory=lambda: list(KNOWN_METRICS))
    n_bootstrap: int = 1000  # bootstrap resamples over items for the 95% intervals
    seed: int = 0  # seed of the bootstrap
    bleurt_checkpoint: str = ""  # local BLEURT checkpoint directory; empty: BLEURT left out (never downloaded)
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        if self.n_bootstrap < 0:
            raise ParameterError(f"parameter 'n_bootstrap' must be >= 0, got {self.n_bootstrap}")
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown or not self.metrics:
            raise ParameterError(
                f"parameter 'metrics': unknown {unknown or 'empty list'}; choose from "
                f"{', '.join(KNOWN_METRICS)} (BLEURT: bleurt_checkpoint)")
        if not self.predictions and not self.include_paper_results:
            raise ParameterError("nothing to score: 'predictions' is empty and "
                                 "'include_paper_results' is False")


def open_run(namespace, out=None) -> rundir.Run:
    """Validate the parameters and open the run directory. Every predictions run must be
    complete (else an error naming it); the released files' digest enters the run key, so a run
    with them and one without get different run directories."""
    params = from_namespace(Params, namespace)
    upstream = {f"predictions[{i}]": rundir.resolve_run_dir(value, "predictions")
                for i, value in enumerate(params.predictions)}
    digest = ""
    if params.include_paper_results:
        digest, files = released.results_digest()
        if not files:
            print(f"released results skipped: {released.DOWNLOAD_HINT}")
    return rundir.start_run(STAGE, params, upstream=upstream, inputs={"paper_results": digest}, out=out)


@dataclasses.dataclass
class Result:
    scores: pd.DataFrame        # one row per record: model, set, id, metrics (fractions)
    means: pd.DataFrame         # model, set, metric, n, mean, ci_low, ci_high (x100)
    sensitivity: pd.DataFrame   # per model and item: static_m, P_m, P_m_abs, ratio_P_m, norm_P_m_abs
    figures: dict[str, Path]    # name -> saved figure (score_drops)

    def means_wide(self) -> pd.DataFrame:
        """Every set: mean x100 [95% bootstrap interval] per model and metric."""
        return scoring.wide_means(self.means)

    def sensitivity_means(self) -> pd.DataFrame:
        """Means over matched items per model x perturbation x metric of the four measures."""
        return scoring.sensitivity_table(self.sensitivity)


def _records(run: rundir.Run) -> list[dict]:
    records = []
    for name, directory in sorted(run.upstream.items()):
        loaded = runs.load_predictions(directory)
        run.log(f"{name}: {len(loaded)} records from {directory}")
        records += loaded
    if run.inputs.get("paper_results"):
        for model, path in released.results_files().items():
            loaded = released.to_predictions(path)
            run.log(f"released results {path.name}: {len(loaded)} records (model {model})")
            records += loaded
    if not records:
        raise ValueError("nothing to score: no predictions runs and no released results")
    return records


def run(run: rundir.Run) -> Result:
    """Score every listed predictions run (and the released outputs when used); write
    ``scores.csv`` (with a 0/1 ``well_formed`` column beside the metrics), ``means.csv``,
    ``sensitivity.csv`` and the figure ``score_drops``. A complete run loads."""
    if run.complete:
        return Result(pd.read_csv(run.path("scores.csv")), scoring.in_paper_order(pd.read_csv(run.path("means.csv"))),
                      pd.read_csv(run.path("sensitivity.csv")).set_index(["model", "id"]), run.figures())
    params = run.params
    records = _records(run)
    metric_names = list(params.metrics)
    scored_names = list(metric_names)
    if params.bleurt_checkpoint:
        reason = metrics.bleurt_unavailable(params.bleurt_checkpoint)
        if reason:
            run.log(reason)
        else:
            scored_names.append("bleurt")
    scores = scoring.score_records(records, scored_names, bleurt_checkpoint=params.bleurt_checkpoint or None)
    means = scoring.means_table(scores, params.n_bootstrap, params.seed)
    sensitivity = scoring.sensitivity_items(records, metric_names)
    # not a metric (no interval in means.csv): the share the README's and the report's tables show
    scores["well_formed"] = [int(t5.is_well_formed(r["prediction"].strip())) for r in records]
    scores.to_csv(run.path("scores.csv"), index=False)
    means.to_csv(run.path("means.csv"), index=False)
    sensitivity.to_csv(run.path("sensitivity.csv"))
    figure = run.save_figure(plots.score_drops(scoring.sensitivity_long(sensitivity)), "score_drops")
    run.log(f"scored {len(scores)} records of {scores['model'].nunique()} model(s); figure {figure}")
    run.finish(records=len(scores), models=int(scores["model"].nunique()))
    return Result(scores, means, sensitivity, run.figures())
