"""Parameters, run directories and seeding: the contract every stage and notebook follows.

A stage declares its parameters as a frozen dataclass. A notebook's `parameters` cell holds the
same names with literal defaults; its next cell calls :func:`start_run`, which validates what the
notebook holds (papermill only *warns* about unknown names, so a typo would otherwise run with
the default silently), hashes everything that determines the output, and opens
``<data root>/<stage>/<key>/``.

A run directory holds ``params.json`` (every resolved parameter), ``meta.json`` (versions, git
commit, start and end, counts), the payload, and ``COMPLETE``, written last and atomically. A
directory without ``COMPLETE`` is an interrupted run: the stage resumes or restarts it, and no
reader treats it as finished.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import functools
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

COMPLETE = "COMPLETE"
#: Names that are not notebook parameters even though they sit in a notebook's namespace.
_NAMESPACE_NOISE = {"In", "Out", "exit", "quit", "get_ipython", "open"}
#: Parameters that name *where* things go or how they are labelled, not *what* they contain:
#: they never enter the run key, so the same experiment under two labels shares one directory.
UNHASHED = {"profile", "data_root", "workers", "figures_root"}


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type, or out of range. The message names it."""


def data_root() -> Path:
    return Path(os.environ.get("DERIVLIB_DATA", "data"))


def figures_root() -> Path:
    return Path(os.environ.get("DERIVLIB_FIGURES", "figures"))


# ----------------------------------------------------------------------------------- parameters

def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def validate(params_cls: type, values: Mapping[str, Any]):
    """Build ``params_cls`` from ``values``; unknown names and wrong types are errors.

    Values missing from ``values`` take the dataclass default. Integers are accepted where a
    float is declared and converted, so ``lr: 1`` in YAML works.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(
            f"unknown parameter(s) for {params_cls.__name__}: {', '.join(hints)}; "
            f"known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(params_cls)
    resolved = {}
    for name, value in values.items():
        if not _type_ok(value, hints[name]):
            raise ParameterError(
                f"parameter {name!r} must be {hints[name]}, got {type(value).__name__} {value!r}")
        if hints[name] is float and isinstance(value, int):
            value = float(value)
        resolved[name] = value
    params = params_cls(**resolved)
    check = getattr(params, "check", None)
    if check is not None:
        check()  # stage-specific ranges: raises ParameterError naming the parameter
    return params


def from_namespace(params_cls: type, namespace: Mapping[str, Any]):
    """Validate the parameters a notebook holds in its global namespace.

    Everything public that is not a module, function, class or IPython's own is taken as a
    parameter, so an injected ``n_derivatons = 5`` is reported instead of ignored.
    """
    values = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _NAMESPACE_NOISE:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
            continue
        if callable(value) and not isinstance(value, (list, dict, str)):
            continue
        values[name] = value
    return validate(params_cls, values)


def params_dict(params) -> dict:
    return dataclasses.asdict(params)


def run_key(stage: str, params, upstream: Mapping[str, str] | None = None,
            inputs: Mapping[str, str] | None = None) -> str:
    """Hash of everything that determines a stage's output.

    Upstream run keys stand in for upstream content: a run directory never changes once
    complete, so its key identifies its payload. ``inputs`` names other content the output
    depends on that is not a parameter (e.g. a digest of the released results files).
    """
    hashed = {k: v for k, v in params_dict(params).items() if k not in UNHASHED}
    blob = json.dumps({"stage": stage, "params": hashed, "upstream": dict(upstream or {}),
                       "inputs": dict(inputs or {}), "versions": _determining_versions()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of derivlib's own source: outputs depend on the code as much as on parameters, so
    a changed generator never reuses a run directory made by the old one."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _determining_versions() -> dict:
    # The output of generation depends on SymPy's behaviour, of training on torch/transformers.
    import importlib.metadata as md
    out = {"derivlib_code": code_digest()}
    for dist in ("derivlib", "sympy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for dist in ("derivlib", "sympy", "numpy", "torch", "transformers", "tokenizers", "datasets",
                 "openai", "rouge-score", "sacrebleu", "nltk", "papermill"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:  # not a checkout (an installed wheel): the version says enough
        return None


# ----------------------------------------------------------------------------------- files

def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path | str, records: Iterable[Mapping]) -> int:
    """Write records as JSON lines, atomically. Returns how many were written."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def iter_jsonl(path: Path | str):
    """(line number, object) for each non-blank line; a malformed line is an error naming the
    file and the line number."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg})") from None


def read_jsonl(path: Path | str) -> list[dict]:
    """Read JSON lines; a malformed line is an error naming the file and the line number."""
    return [obj for _, obj in iter_jsonl(path)]


def check_writable(path: Path | str, name: str = "out") -> Path:
    """Fail early, before any work, if ``path`` cannot be written. Creates nothing."""
    path = Path(path)
    parent = path.parent if path.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ParameterError(f"parameter {name!r}: cannot write {path} ({probe} is not a writable directory)")
    if path.exists() and (path.is_dir() or not os.access(path, os.W_OK)):
        raise ParameterError(f"parameter {name!r}: cannot write {path}")
    return path


# ----------------------------------------------------------------------------------- seeding

def seed_everything(seed: int) -> None:
    """Seed the global generators that libraries draw from behind our back (torch, numpy)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def item_rng(seed: int, index: int, stream: str = "") -> random.Random:
    """A generator for one item, derived from (seed, index, stream) alone.

    Serial, parallel and resumed runs give item ``index`` the same draws whatever else ran.
    """
    digest = hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# ----------------------------------------------------------------------------------- runs

@dataclasses.dataclass
class Run:
    stage: str
    key: str
    dir: Path
    params: Any
    upstream: dict
    meta: dict
    inputs: dict = dataclasses.field(default_factory=dict)
    publish: bool = True  # also name the run <stage>/<profile>; off for a directory the user chose

    @property
    def complete(self) -> bool:
        return (self.dir / COMPLETE).exists()

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def log(self, message: str) -> None:
        """One progress line, to the notebook (stdout) and to the run's ``log.txt``."""
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        line = f"[{stamp}] {message}"
        print(line, flush=True)
        with open(self.dir / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def save_figure(self, fig, name: str) -> Path:
        """Save ``fig`` as ``<run>/figures/<name>.png`` and ``figures/<profile>/<name>.png``."""
        target = self.dir / "figures" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        profile = getattr(self.params, "profile", None) or "adhoc"
        public = figures_root() / profile / f"{name}.png"
        public.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(public, dpi=150, bbox_inches="tight")
        return public

    def finish(self, **counts: Any) -> None:
        """Record the end and the counts, then write the completion marker last."""
        self.meta["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        self.meta.setdefault("counts", {}).update(counts)
        atomic_write_json(self.dir / "meta.json", self.meta)
        atomic_write_text(self.dir / COMPLETE, self.meta["finished"] + "\n")
        self._publish()

    def _publish(self) -> None:
        # A stable name (<stage>/<profile>) that downstream notebooks take as their input path;
        # replaced atomically so it always points at a complete run.
        profile = getattr(self.params, "profile", None)
        if not profile or not self.publish:
            return
        link = self.dir.parent / profile
        tmp = self.dir.parent / f".{profile}.link-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(self.dir.name)
        os.replace(tmp, link)


def _new_meta(stage: str, key: str, upstream_dirs: dict, upstream_keys: dict, inputs: dict) -> dict:
    return {"stage": stage, "key": key, "upstream": upstream_dirs, "upstream_keys": upstream_keys,
            "inputs": inputs, "versions": versions(), "git_commit": git_commit(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(), "argv": sys.argv[:1]}


def start_run(stage: str, params, upstream: Mapping[str, Path | str] | None = None,
              root: Path | str | None = None, inputs: Mapping[str, str] | None = None) -> Run:
    """Open (or reopen) the run directory of ``stage`` for ``params``.

    ``params`` is a validated dataclass (see :func:`validate`, :func:`from_namespace`).
    ``upstream`` maps names to run directories this stage reads; each must be complete, and its
    key enters this run's key. If the run is already complete, it is returned as it is and the
    stage can load instead of recompute; otherwise it is (re)started.
    """
    upstream_keys = {}
    upstream_dirs = {}
    for name, path in (upstream or {}).items():
        path = Path(path)
        if not (path / COMPLETE).exists():
            raise ParameterError(
                f"parameter {name!r}: {path} is not a complete run directory "
                "(run the stage that makes it first)")
        upstream_keys[name] = json.loads((path / "meta.json").read_text())["key"]
        upstream_dirs[name] = str(path.resolve())
    inputs = dict(inputs or {})
    key = run_key(stage, params, upstream_keys, inputs)
    base = Path(root) if root is not None else Path(getattr(params, "data_root", "") or data_root())
    directory = base / stage / key
    directory.mkdir(parents=True, exist_ok=True)
    meta = _new_meta(stage, key, upstream_dirs, upstream_keys, inputs)
    if (directory / COMPLETE).exists():
        meta = json.loads((directory / "meta.json").read_text())
    else:
        atomic_write_json(directory / "params.json", params_dict(params))
        atomic_write_json(directory / "meta.json", meta)
    run = Run(stage=stage, key=key, dir=directory, params=params, upstream=upstream_dirs, meta=meta,
              inputs=inputs)
    if run.complete:
        run._publish()
    return run


def start_run_at(directory: Path | str, stage: str, params,
                 inputs: Mapping[str, str] | None = None) -> Run:
    """A run in a directory the user named (a CLI's ``--out``) rather than ``<stage>/<key>``.

    Same files and completion marker as :func:`start_run`, so later stages take the directory
    as their input; the key hashes ``params`` and ``inputs`` (digests of the input files). An
    earlier marker is removed first: the directory is about to be rewritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / COMPLETE).unlink(missing_ok=True)
    inputs = dict(inputs or {})
    key = run_key(stage, params, {}, inputs)
    meta = _new_meta(stage, key, {}, {}, inputs)
    atomic_write_json(directory / "params.json", params_dict(params))
    atomic_write_json(directory / "meta.json", meta)
    return Run(stage=stage, key=key, dir=directory, params=params, upstream={}, meta=meta,
               inputs=inputs, publish=False)


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes (first 16 hex digits), for a run key's ``inputs``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def resolve_run_dir(value: str | Path, name: str) -> Path:
    """An upstream run directory given as a notebook/CLI parameter.

    Absolute or existing paths are taken as they are; otherwise the value is relative to the
    data root (``generate/smoke`` -> ``data/generate/smoke``), so profiles stay portable.
    """
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = data_root() / path
    if not (path / COMPLETE).exists():
        raise ParameterError(f"parameter {name!r}: {path} is not a complete run directory "
                             "(run the notebook that makes it first)")
    return path
