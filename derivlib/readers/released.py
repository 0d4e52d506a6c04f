"""The authors' released per-example results files (``gpt-4_results.json``,
``flan-t5-large_results.json``, ``chatgpt_results.json``).

They are read from the directory named by ``DERIVLIB_PAPER_RESULTS``, never copied into the
project. Download: https://github.com/jmeadows17/deriving-equations-with-LLMs (the results
JSON files of the repository).

A file is a JSON list of items. Each item holds the static derivation (``prompt``,
``derivation``, ``srepr_derivation``), the same three fields of each perturbed set
(``"VR prompt"``...), a model's output per set (``static_<model>``, ``VR_<model>``...) and the
authors' scores (``static_rouge``, ``VR_rouge_abs``, ``ratio_VR_rouge``...). The model is named
by those output keys, not by the file's name, so a renamed download reads the same.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..base.vocabulary import PERTURBATIONS, SETS, field, paper_item_id
from ..fewshot import INTRO, parse_prompt as parse_fewshot


def fewshot_intro() -> str:
    return INTRO.strip()

ENV = "DERIVLIB_PAPER_RESULTS"
DOWNLOAD_HINT = ("set DERIVLIB_PAPER_RESULTS to a directory holding gpt-4_results.json and "
                 "flan-t5-large_results.json from https://github.com/jmeadows17/deriving-equations-with-LLMs")
#: Score names of the authors' columns (``static_rouge``...): never a model name.
SCORE_NAMES = ("rouge", "bleu", "bleurt", "gleu")


def steps_problem(steps, key: str = "srepr_derivation") -> str | None:
    """What is wrong with the value of a ``srepr_derivation`` field ``key`` as data, or None: it
    must be a non-empty list of ``[annotation, srepr text]`` steps (whether each srepr reads is
    for the srepr reader and the verifier to say)."""
    if not isinstance(steps, list):
        return f"field {key!r} is {type(steps).__name__}, expected a list of [annotation, srepr] steps"
    if not steps:
        return f"field {key!r} is empty, expected at least one [annotation, srepr] step"
    for number, step in enumerate(steps, 1):
        if not isinstance(step, list) or len(step) != 2:
            return f"step {number} of field {key!r} is {json.dumps(step)[:60]}, expected [annotation, srepr]"
        if not isinstance(step[1], str):
            return f"step {number} of field {key!r} holds {json.dumps(step[1])[:40]} where the srepr text is expected"
    return None


def results_dir() -> Path | None:
    """The released results directory, or None when ``DERIVLIB_PAPER_RESULTS`` is unset or missing."""
    value = os.environ.get(ENV)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


def results_files(directory: Path | None = None) -> dict[str, Path]:
    """model name -> results file, for every ``*_results.json`` in the directory (the model
    named by the file's content, :func:`model_name`)."""
    directory = directory or results_dir()
    if directory is None:
        return {}
    return {model_name(p): p for p in sorted(Path(directory).glob("*_results.json"))}


def results_digest() -> tuple[str, dict[str, Path]]:
    """(digest, model -> file) of the released results in DERIVLIB_PAPER_RESULTS; ("", {}) if unset.

    Stages that read them pass the digest into their run key, so a run with the released files
    and one without get different run directories."""
    files = results_files()
    if not files:
        return "", {}
    digest = hashlib.sha256()
    for model, path in files.items():
        digest.update(model.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16], files


def is_results_file(path: Path | str) -> bool:
    """True for a ``.json`` file whose text starts a JSON list (the authors' format)."""
    path = Path(path)
    if path.suffix != ".json" or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(256).lstrip()[:1] == b"["


def load_items(path: Path | str) -> list[dict]:
    """The raw list of items of one released results file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not an authors' results file (not valid JSON: {err})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: not an authors' results file (expected a non-empty JSON list of items)")
    for index, item in enumerate(data):
        if not isinstance(item, dict) or "srepr_derivation" not in item:
            raise ValueError(f"{path}: item {index} is not an authors' item (expected an object with "
                             "'srepr_derivation')")
    return data


def model_names(item: dict) -> list[str]:
    """The models whose outputs an item holds: every ``<model>`` of a ``static_<model>`` key that
    is not one of the authors' score columns."""
    return sorted(key[len("static_"):] for key in item
                  if key.startswith("static_") and key[len("static_"):] not in SCORE_NAMES)


def model_name(path: Path | str, items: list[dict] | None = None) -> str:
    """The model of a results file, read off its ``static_<model>`` keys."""
    items = load_items(path) if items is None else items
    names = model_names(items[0])
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ValueError(f"{path}: item 0 should hold one model's outputs as 'static_<model>', "
                         f"found {found} (name the model with --model-name)")
    return names[0]


def output_sets(item: dict, model: str) -> list[str]:
    """The sets for which an item holds the model's output, in the paper's order."""
    return [s for s in SETS if f"{s}_{model}" in item]


def to_predictions(results_file: Path | str, model: str | None = None) -> list[dict]:
    """A results file as derivlib prediction records, one per set x item.

    Item ``i`` gets id ``paper-{i:03d}`` in every set, so perturbed records match their static
    one as in our own sets. The reference of set P is ``item["P derivation"]``, the prediction
    ``item["P_<model>"]`` (static: ``derivation``, ``static_<model>``). ``model`` overrides the
    name read from the file; the outputs are then looked up under the file's own name.
    """
    items = load_items(results_file)
    stored = model_name(results_file, items)
    label = model or stored
    sets = output_sets(items[0], stored)
    records = []
    for set_name in sets:
        output_key = f"{set_name}_{stored}"
        for index, item in enumerate(items):
            missing = [k for k in (output_key, field(set_name, "derivation")) if k not in item]
            if missing:
                raise ValueError(f"{results_file}: item {index} lacks {', '.join(map(repr, missing))}")
            for key in (output_key, field(set_name, "derivation")):
                if not isinstance(item[key], str):
                    raise ValueError(f"{results_file}: item {index}: field {key!r} is "
                                     f"{type(item[key]).__name__}, expected text")
            records.append({
                "id": paper_item_id(index),
                "model": label,
                "set": set_name,
                "prompt": item.get(field(set_name, "prompt"), ""),
                "reference": item[field(set_name, "derivation")],
                "prediction": item[output_key],
                "srepr_derivation": item.get(field(set_name, "srepr_derivation")),
            })
    return records


def static_records(path: Path | str) -> list[dict]:
    """The released static derivations as derivation records (``id`` ``paper-NNN``)."""
    return [{"id": paper_item_id(k), **item} for k, item in enumerate(load_items(path))]


def derivations(path: Path | str):
    """(id, field, steps) for every derivation of a results file: the static one and each
    perturbed set's (``srepr_derivation``, ``"VR srepr_derivation"``...)."""
    for index, item in enumerate(load_items(path)):
        for set_name in SETS:
            key = field(set_name, "srepr_derivation")
            if key in item:
                problem = steps_problem(item[key], key)
                if problem:
                    raise ValueError(f"{path}: item {index}: {problem}")
                yield paper_item_id(index), key, item[key]


def test_records() -> list[dict]:
    """The 100 released static test derivations, or [] when ``DERIVLIB_PAPER_RESULTS`` is unset."""
    files = results_files()
    if not files:
        return []
    return static_records(files.get("flan-t5-large", next(iter(files.values()))))


def to_sets(directory: Path | None = None) -> dict[str, list[dict]]:
    """The released items as derivlib test sets ({set: items}, ids ``paper-NNN``): ``prompt`` is
    the bare task prompt, ``derivation`` and ``srepr_derivation`` the reference, and, where a
    file holds the 5-shot prompts the authors sent (GPT-4's, ChatGPT's), ``exemplars`` are that
    prompt's shots, so in-context models are asked exactly what GPT-4 was asked. Empty when
    ``DERIVLIB_PAPER_RESULTS`` is unset."""
    files = results_files(directory)
    if not files:
        return {}
    items_of = {name: load_items(path) for name, path in files.items()}
    lengths = {name: len(items) for name, items in items_of.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"released files disagree on the number of items: {lengths}")
    sets: dict[str, list[dict]] = {}
    for set_name in SETS:
        key = field(set_name, "prompt")
        records = []
        for index in range(next(iter(lengths.values()))):
            versions = [items[index] for items in items_of.values() if key in items[index]]
            if not versions:
                break
            few_shot = next((v[key] for v in versions if v[key].startswith(fewshot_intro())), None)
            bare = next((v[key] for v in versions if not v[key].startswith(fewshot_intro())), None)
            exemplars, query = parse_fewshot(few_shot) if few_shot else (None, None)
            record = {"id": paper_item_id(index), "prompt": bare or query,
                      "derivation": versions[0][field(set_name, "derivation")],
                      "srepr_derivation": versions[0].get(field(set_name, "srepr_derivation"))}
            if exemplars is not None:
                record["exemplars"] = exemplars
            records.append(record)
        if records:
            sets[set_name] = records
    return sets


def stored_columns(items: list[dict], metric_names=("rouge", "bleu", "gleu")) -> list[str]:
    """The authors' score columns present in their items, in their file's order."""
    names = [f"static_{m}" for m in metric_names]
    for p in PERTURBATIONS:
        names += [f"{p}_{m}" for m in metric_names] + [f"{p}_{m}_abs" for m in metric_names]
        names += [f"ratio_{p}_{m}" for m in metric_names]
    return [n for n in names if n in items[0]]
