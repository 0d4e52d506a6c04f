"""Stage ``testsets`` (notebook ``02_testsets``, command ``build-sets``): prompts, the train/dev
split and the five test sets built from derivations, and the statistics figure; and, for the
command ``perturb``, one perturbation of a file of static items (:func:`perturb_file`).

A testsets run directory is a sets directory: ``train.jsonl, dev.jsonl, static.jsonl, VR.jsonl,
EE.jsonl, AG.jsonl, SR.jsonl, test_combined.jsonl`` (:func:`derivlib.sets.write_sets`) and
``figures/testsets_statistics.png``; the counts of what was dropped are in ``meta.json``.

A perturb run (stage ``perturb``) is kept here because it is the same step applied to one file:
its directory holds ``<kind>.jsonl``, named as the set it is, so a later stage can read it as such.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .. import perturb, sets
from ..base import parallel
from ..base.files import file_digest, read_jsonl, write_jsonl
from ..base.params import ParameterError, from_namespace, validate
from ..presentation import plots
from ..readers import runs
from . import rundir

STAGE = "testsets"
PERTURB_STAGE = "perturb"
FIGURE = "testsets_statistics"


@dataclasses.dataclass(frozen=True)
class Params:
    derivations: str = "generate/smoke"  # run directory of 01_generate holding derivations.jsonl (relative to the data root)
    seed: int = 0  # seed of the split hash, the VR renamings and the AG steps
    n_train: int = 1800  # train + dev pairs (at most); the paper profile uses 15300
    dev_fraction: float = 0.05  # share of n_train kept as dev for checkpoint selection, as in the paper
    n_static: int = 200  # static test items (at most); the paper profile uses 3100
    n_vr: int = 190  # VR items, matched to the first static items; the paper profile uses 2900
    n_ee: int = 200  # EE items; the paper profile uses 3100
    n_ag: int = 200  # AG items; the paper profile uses 3100
    n_sr: int = 65  # SR items; the paper profile uses 1000
    intermediate_policy: str = "evaluate"  # "evaluate": the authors' rule; "random": counts drawn from the released distributions
    verify: bool = True  # keep only perturbed derivations that pass the replay verifier
    workers: int = 1  # processes for the perturbations (joblib; or the dask LocalCluster's); the files do not depend on it
    backend: str = "loky"  # "loky": this machine's processes; "dask": a distributed cluster (same files)
    scheduler: str = ""  # dask scheduler, e.g. "tcp://10.0.0.5:8786"; "": a LocalCluster of `workers` processes
    profile: str = "smoke"  # label: outputs published under data/<stage>/<profile> and figures/<profile>/

    def check(self) -> None:
        self.sets_config().check()
        parallel.check(self.backend, self.scheduler, self.workers)

    def sets_config(self) -> sets.SetsConfig:
        """The set builder's parameters (all of these but ``derivations`` and ``profile``)."""
        return sets.SetsConfig.of(self)


def derivations_source(value: str) -> tuple[dict, dict, Path]:
    """(upstream, inputs, path) of the ``derivations`` parameter: a file (a derivations JSONL or an
    authors' results file) enters the run key by its digest, a run directory of 01_generate by its
    key (relative to the data root unless it exists as given)."""
    path = Path(value)
    if path.is_file():
        return {}, {"derivations": file_digest(path)}, path
    directory = rundir.resolve_run_dir(value, "derivations")
    return {"derivations": directory}, {}, directory / "derivations.jsonl"


def open_run(namespace: Mapping[str, Any], out: Path | str | None = None) -> rundir.Run:
    """Validate the parameters and open the run directory (``out``: a command's ``--out``)."""
    params = from_namespace(Params, namespace)
    upstream, inputs, source = derivations_source(params.derivations)
    if out is not None:
        rundir.refuse_out_over_input(out, source, "derivations")
    return rundir.start_run(STAGE, params, upstream=upstream, inputs=inputs, out=out)


@dataclasses.dataclass
class Result:
    items: dict[str, list[dict]]  # set file (train, dev, static, VR, EE, AG, SR) -> items
    counts: dict  # what the builder counted: sizes, requested, skipped and removed items by reason
    counts_table: pd.DataFrame  # requested and built size per set, skipped items by reason
    statistics: pd.DataFrame  # per set: size, equations, intermediates, text lengths
    figures: dict[str, Path]  # "testsets_statistics" -> the saved figure


def run(run: rundir.Run) -> Result:
    """Build the sets into the run directory, with the statistics figure; a complete run loads."""
    if run.complete:
        run.log(f"loading the complete run {run.dir}")
        items = runs.load_sets(run.dir)
    else:
        source = Path(run.upstream["derivations"]) if "derivations" in run.upstream else Path(run.params.derivations)
        derivations = runs.read_derivations(source)
        run.log(f"{len(derivations)} derivations from {source}")
        # the perturbations' worker processes end with the block, and die with this process if killed;
        # on a cluster, SetsConfig.workers is its number of worker threads
        params = run.params
        with parallel.backend(params.backend, params.workers, params.scheduler, log=run.log) as jobs:
            config = dataclasses.replace(params.sets_config(), workers=jobs)
            built = sets.build_sets(derivations, config, log=run.log)
        empty = [name for name in ("train", "static") if not built.items.get(name)]
        if empty:  # a sets run without training or test items is not a result: nothing is written
            raise ValueError(f"{source}: {len(derivations)} derivation(s) gave no {' and no '.join(empty)} "
                             "items; give more derivations (or smaller n_static)")
        sets.write_sets(run.dir, built)
        run.save_figure(plots.set_statistics(sets.item_table(built.items)), FIGURE)
        run.finish(**built.counts)
        items = built.items
    counts = run.meta.get("counts", {})
    return Result(items=items, counts=counts, counts_table=sets.counts_table(counts),
                  statistics=sets.statistics(items), figures=run.figures())


# ----------------------------------------------------------------------------------- perturb

@dataclasses.dataclass(frozen=True)
class PerturbParams:
    kind: str = ""  # the perturbation: VR, EE, AG or SR
    input: str = ""  # static items: a JSONL file (e.g. a sets directory's static.jsonl, or derivations) or an authors' results file
    seed: int = 0  # seed of the VR renamings and the AG steps
    verify: bool = True  # keep only perturbed derivations that pass the replay verifier

    def check(self) -> None:
        if self.kind not in perturb.KINDS:
            raise ParameterError(f"parameter 'kind': unknown perturbation {self.kind!r} "
                                 f"(known: {', '.join(perturb.KINDS)})")
        if not self.input:
            raise ParameterError("parameter 'input' must name a file of static items")


@dataclasses.dataclass
class PerturbResult:
    items: list[dict]  # the perturbed items, same ids as their static items, in input order
    read: int  # static items read
    skipped: dict[str, int]  # reason -> items the perturbation does not apply to
    path: Path  # <run>/<kind>.jsonl
    run_dir: Path


def perturb_file(values: Mapping[str, Any], out: Path | str | None = None) -> PerturbResult:
    """Perturb every item of ``values["input"]`` into a run directory holding ``<kind>.jsonl``,
    keyed by the parameters and the input file's digest; a complete run loads. The input is read
    (and a malformed item reported, naming file and line) before anything is written."""
    params = validate(PerturbParams, values)
    source = Path(params.input)
    if out is not None:
        rundir.refuse_out_over_input(out, source, "input")
    items = runs.read_items(source)
    run = rundir.start_run(PERTURB_STAGE, params, inputs={"input": file_digest(source)}, out=out)
    name = params.kind
    if run.complete:
        counts = run.meta.get("counts", {})
        return PerturbResult(read_jsonl(run.path(f"{name}.jsonl")), counts.get("items", len(items)),
                             counts.get("skipped", {}), run.path(f"{name}.jsonl"), run.dir)
    options = {} if params.verify else {"verify": None}
    perturbed, skipped = perturb.perturb_records(items, params.kind, params.seed, **options)
    if not perturbed:  # nothing perturbed is not a result: the run stays unfinished, nothing is written
        run.release()
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "none"
        raise ValueError(f"{source}: {params.kind} applies to none of its {len(items)} item(s) "
                         f"(skipped: {reasons})")
    write_jsonl(run.path(f"{name}.jsonl"), perturbed)
    skipped = dict(sorted(skipped.items()))
    run.finish(items=len(items), perturbed=len(perturbed), skipped=skipped)
    return PerturbResult(perturbed, len(items), skipped, run.path(f"{name}.jsonl"), run.dir)
