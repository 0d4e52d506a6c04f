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
