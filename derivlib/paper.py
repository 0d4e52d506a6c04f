"""The authors' released per-example results (``gpt-4_results.json``, ``flan-t5-large_results.json``).

They are read from the directory named by ``DERIVLIB_PAPER_RESULTS``, never copied into the
project. Download: https://github.com/jmeadows17/deriving-equations-with-LLMs (the results
JSON files of the repository).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

ENV = "DERIVLIB_PAPER_RESULTS"
SETS = ("static", "VR", "EE", "AG", "SR")
PERTURBATIONS = ("VR", "EE", "AG", "SR")
DOWNLOAD_HINT = ("set DERIVLIB_PAPER_RESULTS to a directory holding gpt-4_results.json and "
                 "flan-t5-large_results.json from https://github.com/jmeadows17/deriving-equations-with-LLMs")


def results_dir() -> Path | None:
    """The released results directory, or None when ``DERIVLIB_PAPER_RESULTS`` is unset or missing."""
    value = os.environ.get(ENV)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


def results_files(directory: Path | None = None) -> dict[str, Path]:
    """model name -> results file, for every ``<model>_results.json`` in the directory."""
    directory = directory or results_dir()
    if directory is None:
        return {}
    return {p.name[: -len("_results.json")]: p for p in sorted(Path(directory).glob("*_results.json"))}


def results_digest() -> tuple[str, dict[str, Path]]:
    """(digest, model -> file) of the released results in DERIVLIB_PAPER_RESULTS; ("", {}) if unset.

    Stages that read them pass the digest to ``config.start_run(inputs=...)``, so a run with the
    released files and one without get different run directories."""
    files = results_files()
    if not files:
        return "", {}
    digest = hashlib.sha256()
    for model, path in files.items():
        digest.update(model.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16], files


def load_items(path: Path | str) -> list[dict]:
    """The raw list of items of one released results file."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "srepr_derivation" not in data[0]:
        raise ValueError(f"{path}: not an authors' results file (expected a list of items with 'srepr_derivation')")
    return data


def model_name(path: Path | str) -> str:
    name = Path(path).name
    return name[: -len("_results.json")] if name.endswith("_results.json") else Path(path).stem


def field(set_name: str, kind: str) -> str:
    """Authors' field name of ``kind`` (prompt, derivation, srepr_derivation) for a set."""
    return kind if set_name == "static" else f"{set_name} {kind}"


# ----------------------------------------------------------------------------------- predictions

#: Fields of a predictions record (the shared format of 04/05 outputs, input of scoring).
PREDICTION_FIELDS = ("id", "model", "set", "prompt", "reference", "prediction", "srepr_derivation")


def to_predictions(results_file: Path | str) -> list[dict]:
    """An authors' results file as derivlib prediction records, 5 sets x items.

    Item ``i`` gets id ``paper-{i:03d}`` in every set, so perturbed records match their static
    one as in our own sets. The reference of set P is ``item["P derivation"]``, the prediction
    ``item["P_<model>"]`` (static: ``derivation``, ``static_<model>``); the model name comes from
    the file name (``gpt-4_results.json`` -> ``gpt-4``).
    """
    items = load_items(results_file)
    model = model_name(results_file)
    records = []
    for set_name in SETS:
        output_key = f"{set_name}_{model}"
        for index, item in enumerate(items):
            missing = [k for k in (output_key, field(set_name, "derivation")) if k not in item]
            if missing:
                raise ValueError(f"{results_file}: item {index} lacks {', '.join(map(repr, missing))} "
                                 f"(model name {model!r} is taken from the file name)")
            records.append({
                "id": f"paper-{index:03d}",
                "model": model,
                "set": set_name,
                "prompt": item.get(field(set_name, "prompt"), ""),
                "reference": item[field(set_name, "derivation")],
                "prediction": item[output_key],
                "srepr_derivation": item.get(field(set_name, "srepr_derivation")),
            })
    return records


def load_predictions(path: Path | str) -> list[dict]:
    """Prediction records from a derivlib predictions JSONL, a run directory holding
    ``predictions.jsonl``, or an authors' results JSON file, alike."""
    from .config import read_jsonl

    path = Path(path)
    if path.is_dir():
        if not (path / "predictions.jsonl").exists():
            raise FileNotFoundError(f"{path}: no predictions.jsonl in this directory")
        path = path / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such predictions file or run directory")
    if path.suffix == ".json":
        return to_predictions(path)
    records = read_jsonl(path)
    for number, record in enumerate(records, 1):
        missing = [k for k in ("id", "model", "set", "reference", "prediction") if k not in record]
        if missing:
            raise ValueError(f"{path}: record {number} lacks {', '.join(missing)} "
                             f"(expected fields {', '.join(PREDICTION_FIELDS)})")
        if record["set"] not in SETS:
            raise ValueError(f"{path}: record {number} has set {record['set']!r}, expected one of {', '.join(SETS)}")
    return records


# ----------------------------------------------------------------------------------- stage 08

def stored_columns(items: list[dict], metric_names=("rouge", "bleu", "gleu")) -> list[str]:
    """The authors' score columns present in their items, in their file's order."""
    names = [f"static_{m}" for m in metric_names]
    for p in PERTURBATIONS:
        names += [f"{p}_{m}" for m in metric_names] + [f"{p}_{m}_abs" for m in metric_names]
        names += [f"ratio_{p}_{m}" for m in metric_names]
    return [n for n in names if n in items[0]]


def rescore(results_file: Path | str):
    """Rescore one released file with derivlib. Returns (comparison, rescored, stored):
    comparison has one row per authors' column (max and mean absolute difference, both means
    x100); rescored and stored are per-item frames indexed by id with the authors' columns."""
    import numpy as np
    import pandas as pd

    from . import metrics, scoring

    items = load_items(results_file)
    model = model_name(results_file)
    rescored = scoring.sensitivity_items(to_predictions(results_file), metrics.PAPER_METRICS)
    rescored = rescored.xs(model, level="model")
    columns = stored_columns(items)
    stored = pd.DataFrame([{c: item[c] for c in columns} for item in items],
                          index=[f"paper-{i:03d}" for i in range(len(items))])
    rows = []
    for column in columns:
        difference = np.abs(rescored.loc[stored.index, column].to_numpy() - stored[column].to_numpy())
        rows.append({"model": model, "column": column, "items": len(stored),
                     "stored_mean_x100": 100 * stored[column].mean(),
                     "derivlib_mean_x100": 100 * rescored[column].mean(),
                     "max_abs_difference": float(np.nanmax(difference))})
    return pd.DataFrame(rows), rescored, stored


@dataclasses.dataclass(frozen=True)
class PaperOutputsParams:
    n_bootstrap: int = 1000
    seed: int = 0
    profile: str = "smoke"

    def check(self) -> None:
        if self.n_bootstrap < 0:
            from .config import ParameterError
            raise ParameterError(f"parameter 'n_bootstrap' must be >= 0, got {self.n_bootstrap}")


def open_run(namespace):
    """Validate 08_paper_outputs' parameters and open its run directory."""
    from . import config, scoring

    params = config.from_namespace(PaperOutputsParams, namespace)
    digest, files = results_digest()
    if not files:
        print(f"SKIPPED: the released outputs are not available, nothing is rescored. {DOWNLOAD_HINT}")
    return config.start_run("paper_outputs", params, inputs={"paper_results": digest})


@dataclasses.dataclass
class PaperOutputs:
    available: bool
    comparison: "object"  # DataFrame: model, column, items, stored/derivlib means, max_abs_difference
    means: "object"       # DataFrame: scoring.means_table of the released outputs rescored
    sensitivity: "object"  # DataFrame: scoring.sensitivity_table of the released outputs

    def summary(self):
        """Worst absolute difference per model and kind of column (static, P_m, P_m_abs, ratio)."""
        if not self.available:
            return "skipped: " + DOWNLOAD_HINT
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
            return "skipped: " + DOWNLOAD_HINT
        from . import scoring
        return scoring.wide_means(self.means)

    def static_means(self):
        """Per-model static means x100 (FLAN-T5-large ROUGE-2 91.17, GPT-4 82.84 per PAPER.md)."""
        if not self.available:
            return "skipped: " + DOWNLOAD_HINT
        table = self.means[self.means["set"] == "static"]
        return table.pivot_table(index="model", columns="metric", values="mean", sort=False).round(2)


def paper_outputs_stage(run) -> PaperOutputs:
    """Rescore the released files; write comparison.csv, means.csv, sensitivity.csv. When the
    files are absent, record that and complete with empty tables. A complete run loads."""
    import pandas as pd

    from . import metrics, scoring

    paths = {name: run.path(f"{name}.csv") for name in ("comparison", "means", "sensitivity")}
    if run.complete:
        if not run.inputs.get("paper_results"):
            return PaperOutputs(False, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
        return PaperOutputs(True, pd.read_csv(paths["comparison"]), pd.read_csv(paths["means"]),
                            pd.read_csv(paths["sensitivity"], index_col=[0, 1, 2]))
    files = results_files() if run.inputs.get("paper_results") else {}
    if not files:
        run.log(f"skipped: released outputs not available ({DOWNLOAD_HINT})")
        run.finish(skipped=1)
        return PaperOutputs(False, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    comparisons, records = [], []
    for model, path in files.items():
        comparison, _, _ = rescore(path)
        comparisons.append(comparison)
        records += to_predictions(path)
        run.log(f"{path.name}: max |derivlib - stored| = {comparison['max_abs_difference'].max():.2e}")
    comparison = pd.concat(comparisons, ignore_index=True)
    scores = scoring.score_records(records, metrics.PAPER_METRICS)
    means = scoring.means_table(scores, run.params.n_bootstrap, run.params.seed)
    sensitivity = scoring.sensitivity_table(scoring.sensitivity_items(records, metrics.PAPER_METRICS))
    comparison.to_csv(paths["comparison"], index=False)
    means.to_csv(paths["means"], index=False)
    sensitivity.to_csv(paths["sensitivity"])
    run.finish(models=len(files), items=len(records))
    return PaperOutputs(True, comparison, means, sensitivity)
