"""The authors' released per-example results (``gpt-4_results.json``, ``flan-t5-large_results.json``).

They are read from the directory named by ``DERIVLIB_PAPER_RESULTS``, never copied into the
project. Download: https://github.com/jmeadows17/deriving-equations-with-LLMs (the results
JSON files of the repository).
"""
from __future__ import annotations

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
