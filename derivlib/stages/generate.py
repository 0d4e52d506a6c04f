"""Stage ``generate`` (notebook ``01_generate``): derivations generated with SymPy (PAPER.md §2),
their statistics beside the authors' released test derivations, and every step verified.

A run directory holds ``derivations.jsonl`` (one record per derivation, the authors' schema plus
ours), ``rejections.json`` (rejected proposals by reason, also in ``meta.json``),
``derivation_statistics.csv`` and ``operator_frequencies.csv`` (ours and, when
``DERIVLIB_PAPER_RESULTS`` is set, the released test set's), ``verification.json`` (the
verifier's report on every generated step), ``released_verification.json`` (the same for the
authors' released derivations, when available) and the four figures. While it runs,
``chunks/`` keeps each finished chunk of derivations, so an interrupted run resumes.

The chunks and the verification run on local worker processes (``backend="loky"``) or on a Dask
cluster (``backend="dask"``, a ``LocalCluster`` or the one at ``scheduler``), through
:func:`derivlib.base.parallel.backend`; the files are the same either way.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from joblib import Parallel, delayed

from .. import generate, verify
from ..base import parallel
from ..base.files import atomic_write_json, read_jsonl, write_jsonl
from ..base.params import ParameterError, from_namespace
from ..base.progress import Progress
from ..base.vocabulary import split_equations
from ..derivation import operator_name
from ..presentation import plots
from ..readers import released
from . import rundir

STAGE = "generate"
#: Columns of the table of failing steps (:attr:`Result.released_failures`).
FAILURE_COLUMNS = ["id", "field", "step", "annotation", "reason"]


@dataclasses.dataclass(frozen=True)
class Params(generate.GeneratorConfig):
    """Parameters of notebook ``01_generate``: the generator's (:class:`GeneratorConfig`, the
    authors' values by default) and these."""

    n_derivations: int = 2000  # smoke size; the paper profile uses 30000
    seed: int = 0  # derivation i is drawn from item_rng(seed, i): same seed, same file
    workers: int = 1  # worker processes (loky's, or the dask LocalCluster's); never changes the output
    backend: str = "loky"  # "loky": local worker processes; "dask": a distributed cluster (same output)
    scheduler: str = ""  # dask scheduler, e.g. "tcp://10.0.0.5:8786"; "": a LocalCluster of `workers` processes
    profile: str = "smoke"  # label: outputs published under data/generate/<profile> and figures/<profile>/

    def check(self) -> None:
        if isinstance(self.n_derivations, bool) or self.n_derivations <= 0:
            raise ParameterError(f"parameter 'n_derivations' must be a positive integer, got {self.n_derivations!r}")
        generate.check_workers(self.workers)
        parallel.check(self.backend, self.scheduler, self.workers)
        self.generator_config().check()

    def generator_config(self) -> generate.GeneratorConfig:
        """The generator's parameters alone (what the worker processes receive)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(generate.GeneratorConfig)}
        values["arity_weights"] = {str(k): v for k, v in self.arity_weights.items()}
        values["operator_weights"] = dict(self.operator_weights)
        return generate.GeneratorConfig(**values)


def open_run(namespace, out=None) -> rundir.Run:
    """Validate the parameters and open (or reopen) the run directory.

    The key does not depend on the released files: the derivations do not, and every later
    stage's key follows this one. A run compares with the released test set when
    ``DERIVLIB_PAPER_RESULTS`` is set while it runs, and records the files' digest in
    ``meta.json`` (``released_digest``); a complete run is loaded as it was made."""
    params = from_namespace(Params, namespace)
    return rundir.start_run(STAGE, params, out=out)


class ChunkDirectory(MutableMapping):
    """Finished chunks of a run (:data:`generate.ChunkStore`) as files
    ``chunk-<start>-<stop>.jsonl`` in ``directory``, each written atomically."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def _path(self, bounds) -> Path:
        return self.directory / "chunk-{:09d}-{:09d}.jsonl".format(*bounds)

    def __contains__(self, bounds) -> bool:
        return self._path(bounds).exists()

    def __getitem__(self, bounds) -> list:
        if bounds not in self:
            raise KeyError(bounds)
        return read_jsonl(self._path(bounds))

    def __setitem__(self, bounds, outcomes: list) -> None:
        write_jsonl(self._path(bounds), outcomes)

    def __delitem__(self, bounds) -> None:
        if bounds not in self:
            raise KeyError(bounds)
        self._path(bounds).unlink()

    def __iter__(self):
        for path in sorted(self.directory.glob("chunk-*.jsonl")):
            yield tuple(int(part) for part in path.stem.split("-")[1:])

    def __len__(self) -> int:
        return sum(1 for _ in self)


# ----------------------------------------------------------------------------------- statistics

def operator_counts(records: Sequence[dict], key: str = "srepr_derivation") -> Counter:
    """How often each annotation (operator or premise kind) occurs."""
    return Counter(operator_name(annotation) for record in records for annotation, _ in record[key])


def derivation_table(records: Sequence[dict], source: str, key: str = "srepr_derivation",
                     text_key: str = "derivation") -> pd.DataFrame:
    """One row per derivation: source, equations, total LaTeX length, mean equation length."""
    rows = []
    for record in records:
        equations = split_equations(record[text_key])
        rows.append({"source": source, "equations": len(record[key]),
                     "latex_length": sum(len(e) for e in equations),
                     "equation_latex_length": sum(len(e) for e in equations) / max(len(equations), 1)})
    return pd.DataFrame(rows)


def operator_table(records: Sequence[dict], source: str, key: str = "srepr_derivation") -> pd.DataFrame:
    """Realised operator frequencies (share of all steps) of one source."""
    counts = operator_counts(records, key)
    total = sum(counts.values()) or 1
    return pd.DataFrame([{"source": source, "operator": name, "count": c, "share": c / total}
                         for name, c in sorted(counts.items())])


def comparison_tables(records: Sequence[dict], released_records: Sequence[dict] = ()):
    """(per-derivation table, operator table) of ours and, when given, the released test
    derivations."""
    sources = [("ours", records)] + ([("released test set", released_records)] if released_records else [])
    derivations = pd.concat([derivation_table(r, s) for s, r in sources], ignore_index=True)
    operators = pd.concat([operator_table(r, s) for s, r in sources], ignore_index=True)
    return derivations, operators


# ----------------------------------------------------------------------------------- verification

def verify_records(records: Sequence[dict], source: str, workers: int = 1,
                   log: Callable[[str], None] | None = None) -> verify.FileReport:
    """The verifier's report on every step of ``records``, computed in ``workers`` processes
    (contiguous slices, so the rows keep the records' order); ``log`` gets a progress line as
    each slice comes back."""
    derivations = [(r["id"], "srepr_derivation", r["srepr_derivation"]) for r in records]
    if workers == 1 or len(derivations) < 2:
        return verify.verify_derivations(derivations, source)
    size = -(-len(derivations) // (4 * workers))
    slices = [derivations[k:k + size] for k in range(0, len(derivations), size)]
    reports, progress = [], Progress(len(derivations))
    for report in Parallel(n_jobs=workers, return_as="generator")(
            delayed(verify.verify_derivations)(part, source) for part in slices):
        reports.append(report)
        done = min(len(derivations), size * len(reports))
        if log is not None and done < len(derivations):
            log(f"verified {done}/{len(derivations)} derivations ({progress.rate_and_eta(done, 'derivations')})")
    return verify.FileReport(source, [row for report in reports for row in report.rows])


def failure_table(report: verify.FileReport | None) -> pd.DataFrame:
    """The failing steps of a verifier's report, one row each (empty without a report)."""
    return pd.DataFrame(report.failure_table() if report else [], columns=FAILURE_COLUMNS)


# ----------------------------------------------------------------------------------- run

@dataclasses.dataclass
class Result:
    records: list[dict]  # the derivation records of derivations.jsonl
    rejections: dict  # rejected proposals by reason
    derivations: pd.DataFrame  # one row per derivation: source, equations, latex_length, equation_latex_length
    operators: pd.DataFrame  # source, operator, count, share (of all the source's steps)
    verification: verify.FileReport  # the verifier on every generated step
    released_verification: verify.FileReport | None  # the verifier on the released derivations
    released_failures: pd.DataFrame  # the released steps that fail (FAILURE_COLUMNS)
    figures: dict[str, Path]  # figure name -> PNG in the run directory

    def statistics(self) -> pd.DataFrame:
        """Equations and LaTeX lengths per derivation, summarised per source."""
        return self.derivations.groupby("source").describe().T

    def released_summary(self) -> str:
        if self.released_verification is None:
            return f"released derivations not checked: {released.DOWNLOAD_HINT}"
        return self.released_verification.summary().splitlines()[0]


def _released_file() -> Path | None:
    # Both released files hold the same derivations; FLAN-T5-large's when present, so that the
    # choice does not depend on which files the directory holds.
    files = released.results_files()
    return files.get("flan-t5-large", next(iter(files.values()))) if files else None


def run(run: rundir.Run) -> Result:
    """Generate into ``run`` (resuming from its finished chunks), verify, compare, draw; or load
    a complete run."""
    if run.complete:
        return load(run)
    params = run.params
    n = params.n_derivations
    logged, clock = [0], []

    def progress(done, total):
        if not clock:  # the first call: what a resumed run found already done
            clock.append(Progress(total, done))
        if done == total or done - logged[0] >= max(1, total // 10):
            logged[0] = done
            run.log(f"{done}/{total} derivations ({clock[0].rate_and_eta(done, 'derivations')})")

    # chunks keyed by (seed, index range) and stored as they arrive: any backend and any number
    # of workers give the same files, and a rerun resumes from the stored chunks
    with parallel.backend(params.backend, params.workers, params.scheduler, log=run.log) as jobs:
        records, rejections = generate.generate(n, params.seed, jobs, params.generator_config(),
                                                chunk_store=ChunkDirectory(run.path("chunks")), progress=progress)
        write_jsonl(run.path("derivations.jsonl"), records)
        atomic_write_json(run.path("rejections.json"), rejections)
        run.log(f"verifying every step of the {len(records)} derivations")
        report = verify_records(records, str(run.final / "derivations.jsonl"), jobs, log=run.log)
    atomic_write_json(run.path("verification.json"), report.to_json())
    run.log(report.summary().splitlines()[0])
    run.meta["released_digest"] = released.results_digest()[0]
    path = _released_file()
    released_records = []
    if path is None:
        run.log(f"released test set not available, ours shown alone ({released.DOWNLOAD_HINT})")
    else:
        released_records = released.static_records(path)
        run.log(f"verifying the released derivations of {path.name}")
        released_report = verify.verify_derivations(released.derivations(path), str(path))
        atomic_write_json(run.path("released_verification.json"), released_report.to_json())
    derivations, operators = comparison_tables(records, released_records)
    derivations.to_csv(run.path("derivation_statistics.csv"), index=False)
    operators.to_csv(run.path("operator_frequencies.csv"), index=False)
    run.save_figure(plots.operator_frequencies(operators), "generate_operator_frequencies")
    run.save_figure(plots.equations_per_derivation(derivations), "generate_equations_per_derivation")
    run.save_figure(plots.latex_length(derivations), "generate_latex_length")
    run.save_figure(plots.rejections_by_reason(rejections, len(records)), "generate_rejections")
    shutil.rmtree(run.path("chunks"), ignore_errors=True)  # derivations.jsonl holds them all now
    run.finish(derivations=len(records), rejections=rejections, verified_steps=report.n_steps,
               failed_steps=len(report.failures))
    return load(run)


def load(run: rundir.Run) -> Result:
    """The result of a complete run, read from its directory."""
    released_path = run.path("released_verification.json")
    released_report = (verify.FileReport.from_json(json.loads(released_path.read_text()))
                       if released_path.exists() else None)
    return Result(records=read_jsonl(run.path("derivations.jsonl")),
                  rejections=json.loads(run.path("rejections.json").read_text()),
                  derivations=pd.read_csv(run.path("derivation_statistics.csv")),
                  operators=pd.read_csv(run.path("operator_frequencies.csv")),
                  verification=verify.FileReport.from_json(json.loads(run.path("verification.json").read_text())),
                  released_verification=released_report, released_failures=failure_table(released_report),
                  figures=run.figures())
