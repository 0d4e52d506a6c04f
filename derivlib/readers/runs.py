"""derivlib's own files: derivations, sets and predictions, as files or run directories.

lm-evaluation-harness ``--log_samples`` files of derivlib's exported tasks
(:mod:`derivlib.readers.harness`) are accepted wherever predictions are read.

Every reader here gives records in the shared vocabulary (:mod:`derivlib.base.vocabulary`) and
names the file, the line or item and the problem when a record is malformed. An authors'
results file (:mod:`derivlib.readers.released`) is accepted wherever its content fits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .. import prompts, srepr
from ..base.files import iter_jsonl, read_text
from ..base.vocabulary import (PREDICTION_FIELDS, REQUIRED_ITEM_FIELDS, REQUIRED_PREDICTION_FIELDS, SET_FILES, SETS,
                               paper_item_id)
from ..derivation import Derivation
from ..perturb import with_authors_prompt
from . import harness, released


def _json_kind(value) -> str:
    """How a JSON value that should have been an object reads to a user: list, number, text..."""
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _checked_steps(record) -> list:
    """A record's normalised steps, every srepr read once; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"is a JSON {_json_kind(record)}, expected an object")
    if "srepr_derivation" not in record:
        raise ValueError("lacks srepr_derivation (the field holding the steps)")
    problem = released.steps_problem(record["srepr_derivation"])
    if problem:
        raise ValueError(problem)
    steps = Derivation.from_record(record).steps
    for _, text in steps:
        # Unevaluated: whether the two sides are equal is not a question of form, and deciding
        # it took 90% of reading (82 of 88 s for the smoke profile's 12,000 derivations).
        srepr.read(text, evaluate_equality=False)
    return steps


def read_derivations(path: Path | str) -> list[dict]:
    """Derivation records of a derivations JSONL, a run directory holding ``derivations.jsonl``,
    or an authors' results file (its static derivations); a malformed record is an error
    naming the file and the line."""
    path = Path(path)
    if path.is_dir():
        path = path / "derivations.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no derivations file {path}")
    if released.is_results_file(path):
        entries = [(f"item {k}", r) for k, r in enumerate(released.static_records(path))]
    else:
        entries = [(f"line {n}", r) for n, r in iter_jsonl(path)]
    records = []
    for where, record in entries:
        try:
            steps = _checked_steps(record)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {where}: {err}") from None
        record = dict(record)
        record["srepr_derivation"] = steps
        record.setdefault("id", f"line-{where.split()[-1]}")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no derivations (the file is empty)")
    return records


def iter_steps(path: Path | str) -> Iterable[tuple[str, str, list]]:
    """(id, field, steps) of every derivation in a derivations JSONL, a run directory holding
    ``derivations.jsonl``, or an authors' results file (``srepr_derivation`` and
    ``P srepr_derivation`` for P in VR, EE, AG, SR)."""
    path = Path(path)
    if path.is_dir():
        path = path / "derivations.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if released.is_results_file(path):
        yield from released.derivations(path)
        return
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is a JSON {_json_kind(record)}, expected an object "
                             "with 'srepr_derivation'")
        if "srepr_derivation" not in record:
            raise ValueError(f"{path}: line {number} lacks srepr_derivation (the field holding the steps)")
        problem = released.steps_problem(record["srepr_derivation"])
        if problem:
            raise ValueError(f"{path}: line {number}: {problem}")
        yield str(record.get("id", f"line-{number}")), "srepr_derivation", record["srepr_derivation"]


def read_items(path: Path | str) -> list[dict]:
    """Static items from a JSONL file (a sets file, or a derivations file: items without a
    prompt get the authors' rule's) or from an authors' results JSON (a list; items get ids
    ``paper-000``... as in :func:`released.to_predictions`).

    An item that is not a JSON object, lacks a field, or holds a malformed derivation is an
    error naming the file and the line (JSONL) or item (JSON).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no input file {path}")
    text = read_text(path, "a JSON lines file of static items or an authors' results file")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        entries = [(f"item {i}", {"id": paper_item_id(i), **item} if isinstance(item, dict) else item)
                   for i, item in enumerate(data)]
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
    items = []
    for where, item in entries:
        try:
            steps = _checked_steps(item)
            wrong = [f"field {key!r} is a JSON {_json_kind(item[key])}, expected text"
                     for key in ("id", "prompt", "derivation") if key in item and not isinstance(item[key], str)]
            if wrong:
                raise ValueError("; ".join(wrong))
            item = {**item, "srepr_derivation": steps}
            if "prompt" not in item:
                item = with_authors_prompt(item)
            elif "derivation" not in item and "equations" not in item:
                raise ValueError("has a prompt but lacks derivation (its equations' text)")
            prompts.parse_prompt(item["prompt"])
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {where}: {err}") from None
        items.append(item)
    if not items:
        raise ValueError(f"{path}: no items (the file is empty)")
    return items


def load_sets(directory: Path | str) -> dict[str, list[dict]]:
    """Every set file of a sets directory (missing perturbed files give empty sets)."""
    directory = Path(directory)
    if not (directory / "static.jsonl").exists():
        raise FileNotFoundError(f"{directory} is not a sets directory (no static.jsonl)")
    return {name: [r for _, r in iter_jsonl(directory / f"{name}.jsonl")]
            if (directory / f"{name}.jsonl").exists() else [] for name in SET_FILES}


def load_set(sets_dir: Path | str, name: str, required: tuple[str, ...] = REQUIRED_ITEM_FIELDS,
             allow_empty: bool = False) -> list[dict]:
    """The items of ``<sets_dir>/<name>.jsonl``; a missing file or field is an error naming it."""
    path = Path(sets_dir) / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (a sets directory holds {', '.join(SET_FILES)} .jsonl)")
    items = [r for _, r in iter_jsonl(path)]
    if not items and not allow_empty:
        raise ValueError(f"{path} holds no items")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {number} is not a JSON object")
        absent = [f for f in required if not isinstance(item.get(f), str) or not item.get(f)]
        if absent:
            raise ValueError(f"{path}: item {number} (id {item.get('id', '?')!r}) lacks field(s) "
                             f"{', '.join(absent)} (required: {', '.join(required)})")
    return items


def load_prompting_sets(sets_dir: Path | str, max_items: int = 0) -> tuple[list[dict], dict[str, list[dict]]]:
    """(train, {set: items}) of a sets directory, for prompting; ``max_items`` > 0 keeps the
    first static items and their matched perturbed items. Missing perturbed files are allowed
    (none of that set), and a missing ``train.jsonl`` (items that carry their own exemplars, or
    zero-shot prompting, need none)."""
    sets_dir = Path(sets_dir)
    if not (sets_dir / "static.jsonl").exists():
        raise FileNotFoundError(f"sets directory {sets_dir} lacks static.jsonl")
    train = [r for _, r in iter_jsonl(sets_dir / "train.jsonl")] if (sets_dir / "train.jsonl").exists() else []
    tests = {name: load_set(sets_dir, name, allow_empty=True) for name in SETS if (sets_dir / f"{name}.jsonl").exists()}
    if max_items:
        keep = {item["id"] for item in tests["static"][:max_items]}
        tests = {name: [i for i in items if i["id"] in keep] for name, items in tests.items()}
    return train, tests


def load_predictions(path: Path | str, model_name: str | None = None) -> list[dict]:
    """Prediction records from a derivlib predictions JSONL, a run directory holding
    ``predictions.jsonl``, an authors' results JSON file, or lm-evaluation-harness
    ``--log_samples`` output of derivlib's tasks (a ``samples_<task>_<date>.jsonl``, or the
    directory the harness wrote them in: the latest file of each task; :mod:`.harness`), alike.
    ``model_name`` renames the model (of an authors' file it is otherwise read off the file's
    keys, of a harness file off the harness's results)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "predictions.jsonl").exists():
            samples = harness.samples_files(path)
            if samples:
                return [record for file in samples for record in harness.load_samples(file, model_name)]
            raise FileNotFoundError(f"{path}: no predictions.jsonl (nor lm-eval samples_derivlib_*.jsonl) "
                                    "in this directory")
        path = path / "predictions.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such predictions file or run directory")
    if released.is_results_file(path):
        return released.to_predictions(path, model_name)
    if harness.is_samples_file(path):
        return harness.load_samples(path, model_name)
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object")
        missing = [k for k in REQUIRED_PREDICTION_FIELDS if k not in record]
        if missing:
            raise ValueError(f"{path}: line {number} lacks {', '.join(missing)} "
                             f"(expected fields {', '.join(PREDICTION_FIELDS)})")
        if record["set"] not in SETS:
            raise ValueError(f"{path}: line {number} has set {record['set']!r}, expected one of {', '.join(SETS)}")
        for key in ("id", "model", "set", "reference", "prediction"):
            if not isinstance(record[key], str):
                raise ValueError(f"{path}: line {number}: field {key!r} is {type(record[key]).__name__}, "
                                 "expected text")
        if model_name:
            record = {**record, "model": model_name}
        records.append(record)
    if not records and (path.parent / "COMPLETE").exists() is False:
        # A complete run may hold no predictions (an LLM run that replayed nothing offline);
        # an empty file given on its own is a mistake.
        raise ValueError(f"{path}: no prediction records (the file is empty)")
    return records
