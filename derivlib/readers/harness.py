"""lm-evaluation-harness output: the per-sample files ``lm_eval --log_samples`` writes for the
tasks ``python -m derivlib export lm-eval`` made, read as prediction records.

The harness writes, under ``--output_path``, a directory named after the model holding
``results_<date>.json`` (aggregated results and the run's configuration) and one
``samples_<task>_<date>.jsonl`` per task: one JSON object per document with ``doc`` (the
exported row: ``id``, ``set``, ``prompt``, ``derivation``, ``srepr_derivation`` as JSON text),
``resps`` / ``filtered_resps`` (the model's answers) and the task's per-item metrics.

A record's set is read off the task name (``derivlib_vr_5shot`` is VR), its prediction is the
derivation :func:`derivlib.fewshot.extract_derivation` pulls out of the answer (what the task's
``process_results`` scores, and what ``prompt`` does with a chat answer), and its model is the
harness's model name from ``results_<date>.json`` (``model_name``, else the ``pretrained=`` or
``model=`` of ``model_args``; a local directory by its last component), else the name of the directory the harness wrote the file in, with
``+<n>shot`` added so that zero-shot and 5-shot runs of one model are two rows of every table. A
renamed samples file (not ``samples_<task>_<date>.jsonl``) takes its set from the documents and
its model from the directory, without shots.

The task names are defined here, once, for the exporter and this reader alike.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .. import fewshot
from ..base.files import iter_jsonl
from ..base.vocabulary import SETS

#: Prefix of every exported task, and the name of the zero-shot group.
TASK_PREFIX = "derivlib"
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")
_TASK_NAME = re.compile(rf"^{TASK_PREFIX}_(?P<set>[a-z]+)(?:_(?P<shots>\d+)shot)?$")
_SET_BY_SLUG = {name.lower(): name for name in SETS}
#: Keys every line of a harness samples file has.
SAMPLE_KEYS = ("doc_id", "doc", "filtered_resps")


def task_name(set_name: str, n_shots: int = 0) -> str:
    """``derivlib_static``, ``derivlib_vr``... for zero-shot, ``derivlib_vr_5shot`` for 5-shot."""
    if set_name not in SETS:
        raise ValueError(f"unknown set {set_name!r} (known: {', '.join(SETS)})")
    return f"{TASK_PREFIX}_{set_name.lower()}" + (f"_{n_shots}shot" if n_shots else "")


def group_name(n_shots: int = 0) -> str:
    """``derivlib`` (zero-shot tasks) or ``derivlib_5shot``."""
    return TASK_PREFIX + (f"_{n_shots}shot" if n_shots else "")


def parse_task_name(name: str) -> tuple[str, int]:
    """(set, shots) of an exported task's name; ValueError for any other name."""
    match = _TASK_NAME.match(name)
    if not match or match["set"] not in _SET_BY_SLUG:
        raise ValueError(f"task {name!r} is not a derivlib task (expected {task_name('static')}, "
                         f"{task_name('VR', 5)}, ...)")
    return _SET_BY_SLUG[match["set"]], int(match["shots"] or 0)


def is_samples_file(path: Path | str) -> bool:
    """Whether ``path`` is a harness ``--log_samples`` file: named ``samples_<task>_<date>.jsonl``,
    or a JSONL whose first object has the harness's keys."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".jsonl":
        return False
    if _SAMPLES_NAME.match(path.name):
        return True
    with open(path, "rb") as fh:  # bytes: a file that is not UTF-8 is for the JSONL reader to name
        first = next((line for line in fh if line.strip()), b"")
    try:
        head = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(head, dict) and all(k in head for k in SAMPLE_KEYS)


def samples_files(directory: Path | str) -> list[Path]:
    """The latest ``samples_<task>_<date>.jsonl`` of each derivlib task in a directory the harness
    wrote, in task order (a rerun into the same directory adds files of a later date)."""
    latest: dict[str, tuple[str, Path]] = {}
    for path in Path(directory).glob(f"samples_{TASK_PREFIX}_*.jsonl"):
        match = _SAMPLES_NAME.match(path.name)
        if match and _TASK_NAME.match(match["task"]):
            if match["task"] not in latest or match["date"] > latest[match["task"]][0]:
                latest[match["task"]] = (match["date"], path)
    return [latest[task][1] for task in sorted(latest, key=_task_order)]


def _task_order(name: str) -> tuple:
    set_name, shots = parse_task_name(name)
    return shots, SETS.index(set_name)


def results_file(samples: Path | str) -> Path | None:
    """The ``results_<date>.json`` written with a samples file, if it is beside it."""
    samples = Path(samples)
    match = _SAMPLES_NAME.match(samples.name)
    if not match:
        return None
    candidate = samples.with_name(f"results_{match['date']}.json")
    return candidate if candidate.is_file() else None


def _model_from_args(model_args) -> str | None:
    if isinstance(model_args, dict):
        return next((str(model_args[k]) for k in ("pretrained", "model") if model_args.get(k)), None)
    if isinstance(model_args, str):
        for part in model_args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model") and value.strip():
                return value.strip()
    return None


def model_name(samples: Path | str) -> str:
    """The harness's name of the model of a samples file (module docstring), without shots."""
    samples = Path(samples)
    found = results_file(samples)
    if found is not None:
        try:
            results = json.loads(found.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{found}: not a readable harness results file ({err})") from None
        name = results.get("model_name") or _model_from_args((results.get("config") or {}).get("model_args"))
        if name:
            name = str(name)
            # a local model directory is named by its last component, a hub id ("org/name") as it is
            return Path(name).name if name.startswith(("/", ".", "~")) else name
    return samples.parent.name or samples.stem


def task_of(samples: Path | str) -> str | None:
    """The task name in a samples file's name, or None when it is not named by the harness."""
    match = _SAMPLES_NAME.match(Path(samples).name)
    return match["task"] if match else None


def load_samples(path: Path | str, model: str | None = None) -> list[dict]:
    """Prediction records of a harness samples file (module docstring); ``model`` relabels them
    (no shots added). A line that is not a harness sample of a derivlib task is an error naming
    the file and the line."""
    path = Path(path)
    task = task_of(path)
    set_name = shots = None
    if task is not None:
        set_name, shots = parse_task_name(task)
    label = model
    records = []
    for number, sample in iter_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(sample, dict) or any(k not in sample for k in SAMPLE_KEYS):
            raise ValueError(f"{where} is not a harness sample (expected the keys {', '.join(SAMPLE_KEYS)})")
        doc = sample["doc"]
        missing = [k for k in ("id", "set", "prompt", "derivation", "srepr_derivation")
                   if not isinstance(doc, dict) or k not in doc]
        if missing:
            raise ValueError(f"{where}: doc lacks {', '.join(missing)}: not a task of "
                             "`python -m derivlib export lm-eval`")
        if set_name is None:  # a renamed file: the set is the doc's own
            set_name = doc["set"]
            if set_name not in SETS:
                raise ValueError(f"{where}: doc has set {set_name!r}, expected one of {', '.join(SETS)}")
        if doc["set"] != set_name:
            raise ValueError(f"{where}: doc of set {doc['set']!r} in a file of task {task!r}")
        answer = _first_answer(sample["filtered_resps"])
        if answer is None:
            raise ValueError(f"{where}: filtered_resps holds no text answer")
        try:
            steps = json.loads(doc["srepr_derivation"]) if isinstance(doc["srepr_derivation"], str) \
                else doc["srepr_derivation"]
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: doc's srepr_derivation is not JSON ({err.msg})") from None
        if label is None:
            label = model_name(path) + (f"+{shots}shot" if shots is not None else "")
        records.append({"id": str(doc["id"]), "model": label, "set": set_name, "prompt": doc["prompt"],
                        "reference": doc["derivation"], "prediction": fewshot.extract_derivation(answer),
                        "srepr_derivation": steps})
    return records


def _first_answer(responses) -> str | None:
    """The first text of ``filtered_resps``: ``["text"]`` for generate_until, nested lists too."""
    while isinstance(responses, list) and responses:
        responses = responses[0]
    return responses if isinstance(responses, str) else None
