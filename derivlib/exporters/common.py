"""What the exporters share: the complete sets run they read, and the export directory they
write all at once.

An export directory is written into ``.<name>.partial-<pid>`` beside ``--out`` and renamed into
place when every file is there, with ``derivlib_export.json`` (what was exported, from which
run, with which options) written last. ``--out`` may be new or an empty directory. One that
already holds the same export (the same manifest) is left as it is; one that holds anything
else (another export, or files that are not an export) is refused, and nothing is written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..base.files import atomic_write_json
from ..base.params import ParameterError
from ..base.vocabulary import PERTURBATIONS, SET_FILES, SETS
from ..readers import runs

#: The completion marker of the run-directory contract (``derivlib.stages.rundir.COMPLETE``,
#: which this layer may not import; a test holds them equal).
COMPLETE = "COMPLETE"
#: The stage whose run directories are sets runs (``build-sets`` / notebook 02_testsets).
SETS_STAGE = "testsets"
#: The manifest of an export directory, written last.
MANIFEST = "derivlib_export.json"
#: Sets that must hold items: static is the benchmark, train gives the few-shot exemplars.
REQUIRED_NONEMPTY = ("train", "static")


@dataclasses.dataclass
class SetsRun:
    """A complete sets run directory, read and checked."""

    dir: Path
    key: str  # the run key (meta.json)
    params: dict  # params.json: every resolved parameter of the run
    meta: dict  # meta.json: versions, counts, times
    items: dict[str, list[dict]]  # train, dev, static, VR, EE, AG, SR -> items in file order

    @property
    def test_sets(self) -> list[str]:
        """The test sets that hold items, static first."""
        return [name for name in SETS if self.items.get(name)]

    def generator(self) -> dict:
        """How the derivations were made: the parameters and key of the upstream generate run
        (``params.json`` of ``meta.json``'s upstream ``derivations``), or the digest of the
        derivations file the run read; ``{}`` when neither is recorded."""
        upstream = (self.meta.get("upstream") or {}).get("derivations")
        if upstream:
            params_path = Path(upstream) / "params.json"
            try:
                params = json.loads(params_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                params = None
            return {"run": upstream, "run_key": (self.meta.get("upstream_keys") or {}).get("derivations"),
                    "parameters": params}
        digest = (self.meta.get("inputs") or {}).get("derivations")
        if digest:
            return {"file": self.params.get("derivations"), "sha256_16": digest, "parameters": None}
        return {}

    def provenance(self) -> dict:
        """What an export records of its source: the run, its parameters and versions."""
        versions = self.meta.get("versions", {})
        return {"sets_run": str(self.dir.resolve()), "sets_run_key": self.key,
                "derivlib_version": __version__, "sets_derivlib_version": versions.get("derivlib"),
                "sympy_version": versions.get("sympy"), "git_commit": self.meta.get("git_commit"),
                "started": self.meta.get("started"), "finished": self.meta.get("finished"),
                "parameters": self.params, "generator": self.generator()}


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ParameterError(f"--sets {path.parent}: cannot read {path.name} ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ParameterError(f"--sets {path.parent}: {path.name} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(value, dict):
        raise ParameterError(f"--sets {path.parent}: {path.name} is not a JSON object ({what})")
    return value


def read_sets_run(directory: Path | str) -> SetsRun:
    """The sets run in ``directory``; anything but a complete sets run (of ``build-sets`` or
    notebook 02_testsets) is an error naming what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ParameterError(f"--sets {directory}: no such directory (a sets run directory of "
                             "build-sets or notebook 02_testsets)")
    if not (directory / COMPLETE).is_file():
        raise ParameterError(f"--sets {directory}: not a complete run directory (no {COMPLETE}: "
                             "unfinished, or not a derivlib run); run build-sets or 02_testsets first")
    meta = _read_json(directory / "meta.json", "the run's meta.json")
    if meta.get("stage") != SETS_STAGE:
        raise ParameterError(f"--sets {directory}: a complete {meta.get('stage')!r} run, not a sets run "
                             f"(stage {SETS_STAGE!r}: build-sets or 02_testsets)")
    absent = [f"{name}.jsonl" for name in SET_FILES if not (directory / f"{name}.jsonl").is_file()]
    if absent:
        raise ParameterError(f"--sets {directory}: an incomplete sets run, lacks {', '.join(absent)}")
    params = _read_json(directory / "params.json", "the run's parameters")
    items = {name: runs.load_set(directory, name, allow_empty=name not in REQUIRED_NONEMPTY)
             for name in SET_FILES}
    for name in SETS:
        for number, item in enumerate(items[name], 1):
            steps = item.get("srepr_derivation")
            if not isinstance(steps, list) or not steps:
                raise ValueError(f"{directory / f'{name}.jsonl'}: item {number} (id {item['id']!r}) lacks "
                                 "srepr_derivation (the reference the symbolic check needs)")
    return SetsRun(dir=directory, key=str(meta.get("key", "")), params=params, meta=meta, items=items)


@dataclasses.dataclass
class ExportResult:
    dir: Path  # the export directory
    written: bool  # False when it already held this very export
    files: list[str]  # paths of the export's files, relative to ``dir``


def _describe_difference(found: dict, wanted: dict) -> str:
    if found.get("kind") != wanted.get("kind"):
        return f"kind {found.get('kind')!r}, this export's kind {wanted.get('kind')!r}"
    keys = [k for k in sorted(set(found) | set(wanted)) if k != "files" and found.get(k) != wanted.get(k)]
    shown = []
    for key in keys[:3]:
        shown.append(f"{key} {json.dumps(found.get(key), default=str)[:60]} (this export: "
                     f"{json.dumps(wanted.get(key), default=str)[:60]})")
    return "; ".join(shown) or "other files"


def write_export(out: Path | str, manifest: dict[str, Any], write: Callable[[Path, Path], None],
                 source: Path | None = None) -> ExportResult:
    """Write an export into ``out``, all or nothing (module docstring).

    ``write(directory, final)`` writes every file into ``directory``; ``final`` is where they will
    lie (absolute), for files that name their own paths. ``manifest`` says what the export is;
    ``source`` (the sets run) may not hold ``out``."""
    out = Path(out)
    final = out.resolve()
    if source is not None and (final == source.resolve() or source.resolve() in final.parents):
        raise ParameterError(f"--out {out} lies inside the sets run {source}, which is never written again; "
                             "choose a directory outside it")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, expected a directory")
    if out.is_dir() and any(out.iterdir()):
        found_path = out / MANIFEST
        if not found_path.is_file():
            raise ParameterError(f"--out {out} holds files that are not a derivlib export (no {MANIFEST}); "
                                 "choose a new or empty directory")
        try:
            found = json.loads(found_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ParameterError(f"--out {out}: unreadable {MANIFEST} ({err}); choose a new or empty directory") from None
        comparable = {k: v for k, v in found.items() if k != "files"} if isinstance(found, dict) else found
        if comparable == manifest:
            return ExportResult(out, False, list(found.get("files", [])))
        raise ParameterError(f"--out {out} holds a different export ({_describe_difference(found, manifest)}); "
                             "nothing was overwritten: choose another --out or remove it")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)  # this process's own leftover of an earlier failed attempt
    partial.mkdir()
    try:
        write(partial, final)
        files = sorted(str(p.relative_to(partial)) for p in partial.rglob("*") if p.is_file())
        atomic_write_json(partial / MANIFEST, {**manifest, "files": files})
        # os.replace renames over a missing or empty directory in one step; a directory that
        # filled up meanwhile makes it fail, and that directory is kept as it was.
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return ExportResult(out, True, files)


def perturbations_defined() -> dict[str, str]:
    """The four perturbations, one line each (PAPER.md §3), for cards and READMEs."""
    return {
        "VR": "variable renaming: every symbol and function renamed one-to-one onto Greek letters "
              "outside the generator's vocabulary, text re-rendered",
        "EE": "expression exchange: both sides of every equation swapped (substitution annotations flipped)",
        "AG": "alternative goal: the last step replaced by another step the generator makes from the same prefix",
        "SR": "step removal: the intermediate equations removed from the prompt",
    }

