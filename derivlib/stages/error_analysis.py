"""Stage ``error_analysis`` (notebook ``08_error_analysis``): every generated equation of every
predictions run (and of the released outputs, when ``DERIVLIB_PAPER_RESULTS`` is set) checked
symbolically and labelled (:mod:`derivlib.check`), beside the text metrics of its derivation;
the equations that do not parse, by kind; ProcessBench-style numbers of the reference-matching
step verifier against the symbolic first wrong step."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from .. import check, metrics
from ..base import parallel
from ..base.files import read_jsonl, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..presentation import plots
from ..readers import released, runs
from . import rundir

STAGE = "error_analysis"


@dataclasses.dataclass(frozen=True)
class Params:
    # run directories (relative to the data root) holding predictions.jsonl
    predictions: list = dataclasses.field(default_factory=lambda: ["predict_t5/smoke", "prompt_llm/smoke"])
    include_paper_results: bool = True  # also check the released GPT-4 / FLAN-T5-large outputs when DERIVLIB_PAPER_RESULTS is set
    seed: int = 0  # seed of the numeric check points
    time_limit: float = 60.0  # seconds a worker may spend on one equation before it is killed (label timeout)
    workers: int = 1  # worker processes checking derivations (or the dask LocalCluster's); the labels do not depend on it
    backend: str = "loky"  # "loky": this machine's processes; "dask": a distributed cluster (same labels)
    scheduler: str = ""  # dask scheduler, e.g. "tcp://10.0.0.5:8786"; "": a LocalCluster of `workers` processes
    profile: str = "smoke"  # label: outputs published under data/error_analysis/<profile> and figures/<profile>/

    def check(self) -> None:
        if not all(isinstance(p, str) for p in self.predictions):
            raise ParameterError("parameter 'predictions' must be a list of run directories (strings)")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ParameterError(f"parameter 'workers' must be an integer >= 1, got {self.workers!r}")
        parallel.check(self.backend, self.scheduler, self.workers)
        if not isinstance(self.time_limit, (int, float)) or self.time_limit <= 0:
            raise ParameterError("parameter 'time_limit' must be a positive number of seconds, "
                                 f"got {self.time_limit!r}")
        if not self.predictions and not self.include_paper_results:
            raise ParameterError("parameters 'predictions' and 'include_paper_results': nothing to check")


def open_run(namespace, out=None) -> rundir.Run:
    """Validate the parameters and open the run directory; every run directory named in
    ``predictions`` must be complete and hold ``predictions.jsonl`` (else an error naming it)."""
    params = from_namespace(Params, namespace)
    upstream = {f"predictions[{i}]": rundir.resolve_run_dir(p, f"predictions[{i}]")
                for i, p in enumerate(params.predictions)}
    for name, path in upstream.items():
        if not (path / "predictions.jsonl").exists():
            raise ParameterError(f"parameter {name!r}: {path} has no predictions.jsonl")
    digest, files = released.results_digest() if params.include_paper_results else ("", {})
    if params.include_paper_results and not files:
        print(f"released GPT-4 / FLAN-T5-large outputs skipped: {released.DOWNLOAD_HINT}")
    return rundir.start_run(STAGE, params, upstream=upstream, inputs={"paper_results": digest}, out=out)


@dataclasses.dataclass
class Result:
    summary: pd.DataFrame                # per model x set: check.COUNT_COLUMNS
    checks: list[check.DerivationCheck]  # one per prediction record, labels per equation
    per_item: pd.DataFrame               # model, set, id, share correct, goal reached, rouge, bleu, gleu
    failures: pd.DataFrame               # every unparseable equation: model, set, id, index, kind, reason, text
    processbench: pd.DataFrame           # per model x set: check.processbench_table (reference matching)
    figures: dict[str, Path]             # error_distribution, rouge_vs_validity


def _records(run: rundir.Run) -> list[dict]:
    records = []
    for path in run.upstream.values():
        records.extend(runs.load_predictions(path))
    if run.inputs.get("paper_results"):
        for path in released.results_files().values():
            records.extend(released.to_predictions(path))
    if not records:
        raise ValueError("nothing to check: no prediction records in the predictions runs and no released results")
    return records


def _checked_rows(run: rundir.Run, records: list[dict]) -> list[dict]:
    """One row per record: its check (:meth:`check.DerivationCheck.to_dict`) and its paper metrics."""
    params = run.params
    checks = check.check_records(records, seed=params.seed, workers=params.workers, time_limit=params.time_limit,
                                 log=run.log, backend=params.backend, scheduler=params.scheduler)
    scores = metrics.score_pairs([r["prediction"] for r in records], [r["reference"] for r in records])
    rows = []
    for index, result in enumerate(checks):
        row = result.to_dict()
        row.update({name: float(values[index]) for name, values in scores.items()})
        rows.append(row)
    return rows


def per_item_table(rows: list[dict]) -> pd.DataFrame:
    """Per derivation: the share of its equations that are correct (reference or valid), whether
    it reached the goal, and its text metrics."""
    return pd.DataFrame([{
        "model": r["model"], "set": r["set"], "id": r["id"],
        "share correct": sum(e["label"] in ("reference", "valid") for e in r["equations"]) / max(len(r["equations"]), 1),
        "goal reached": r["goal_reached"],
        **{m: r[m] for m in metrics.PAPER_METRICS if m in r}} for r in rows])


def run(run: rundir.Run) -> Result:
    """Check every prediction record of the run's inputs; write ``checks.jsonl``, ``summary.csv``,
    ``failures.csv``, ``processbench.csv`` and the figures ``error_distribution`` and
    ``rouge_vs_validity``. A complete run loads."""
    rows = read_jsonl(run.path("checks.jsonl")) if run.complete else _checked_rows(run, _records(run))
    checks = [check.DerivationCheck.from_dict(row) for row in rows]
    summary = check.summarize(checks)
    per_item = per_item_table(rows)
    failures = check.failures_table(checks)
    processbench = check.processbench_table(checks)
    if not run.complete:
        write_jsonl(run.path("checks.jsonl"), rows)
        summary.to_csv(run.path("summary.csv"), index=False)
        failures.to_csv(run.path("failures.csv"), index=False)
        processbench.to_csv(run.path("processbench.csv"), index=False)
        run.save_figure(plots.error_distribution(summary), "error_distribution")
        run.save_figure(plots.metric_vs_validity(per_item, "rouge"), "rouge_vs_validity")
        run.finish(derivations=len(rows), equations=int(summary["equations"].sum()))
    return Result(summary, checks, per_item, failures, processbench, run.figures())
