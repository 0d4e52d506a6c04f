"""Run directories: the contract every stage and notebook follows.

A stage's ``open_run`` validates its parameters and calls :func:`start_run`, which hashes
everything that determines the output and opens ``<data root>/<stage>/<key>/``.

A run directory holds ``params.json`` (every resolved parameter), ``meta.json`` (versions, git
commit, start and end, counts), the payload, and ``COMPLETE``, written last and atomically. A
directory without ``COMPLETE`` is an interrupted run: the stage resumes or restarts it, and no
reader treats it as finished. Only the stages (this package) write run directories and figures.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from filelock import FileLock, Timeout

from ..base.files import atomic_write_json, atomic_write_text, refuse_overlap, writable_directory
from ..base.params import ParameterError, params_dict

COMPLETE = "COMPLETE"
#: Parameters that name *where* things go or how they are labelled, not *what* they contain:
#: they never enter the run key, so the same experiment under two labels shares one directory.
UNHASHED = {"profile", "data_root", "workers", "backend", "scheduler", "figures_root", "concurrency"}


def data_root() -> Path:
    return Path(os.environ.get("DERIVLIB_DATA", "data"))


def figures_root() -> Path:
    return Path(os.environ.get("DERIVLIB_FIGURES", "figures"))


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
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _determining_versions() -> dict:
    # The output of generation depends on SymPy's behaviour, of training on torch/transformers.
    out = {"derivlib_code": code_digest()}
    for dist in ("derivlib", "sympy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def versions() -> dict:
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


def hardware() -> dict:
    """What the run ran on: outputs of training can depend on the CPU (its bf16 support, which
    ``precision: auto`` follows) and on the thread counts. The training stages add the precision
    they chose and torch's thread count (:func:`record_precision`)."""
    model, flags = platform.processor() or None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and not flags:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": model, "cpu_count": os.cpu_count(),
            "cpu_bf16": sorted(flags & {"avx512_bf16", "amx_bf16"}),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "system": platform.system()}


def record_precision(run: "Run", precision: str, torch_threads: int | None, device: str | None = None) -> None:
    """Add a training run's chosen precision, torch thread count and device to its meta.json."""
    run.meta.setdefault("hardware", {}).update(precision=precision, torch_threads=torch_threads, device=device)


#: lock file -> the lock this process holds on an unfinished run.
_HELD: dict = {}


class RunConflict(ParameterError):
    """A run directory is being written by another process, or an ``--out`` directory already
    holds a different complete run."""


@dataclasses.dataclass
class Run:
    """One run of one stage for one set of parameters.

    While it runs, everything is written into ``<final>.partial`` beside the final directory
    (``dir`` points there), under an exclusive lock per run, so that a second writer of the same
    run waits and then loads it. :meth:`finish` writes ``meta.json`` and ``COMPLETE`` last, then
    moves the directory into place in one rename: a complete run directory is only ever the
    result of one whole run, and an interrupted one never damages what was there before.
    """

    stage: str
    key: str
    dir: Path
    params: Any
    upstream: dict
    meta: dict
    final: Path
    inputs: dict = dataclasses.field(default_factory=dict)
    publish: bool = True  # also name the run <stage>/<profile>; off for a directory the user chose
    lock: Any = None
    figure_names: list = dataclasses.field(default_factory=list)
    #: False in the other processes of one distributed job (ranks != 0 of ``accelerate launch``
    #: or ``torchrun``): they compute in the same directory but never write, lock or finish it.
    writer: bool = True

    @property
    def complete(self) -> bool:
        return (self.dir / COMPLETE).exists()

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def log(self, message: str) -> None:
        """One progress line, to the notebook (stdout) and to the run's ``log.txt``."""
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        line = f"[{stamp}] {message}"
        if not self.writer:
            return
        print(line, flush=True)
        with open(self.dir / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def save_figure(self, fig, name: str) -> Path:
        """Save ``fig`` as ``<run>/figures/<name>.png``; :meth:`finish` publishes it under
        ``figures/<profile>/``. Returns the figure's path once the run is complete."""
        target = self.dir / "figures" / f"{name}.png"
        if self.writer:
            target.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(target, dpi=150, bbox_inches="tight")
        import matplotlib.pyplot as plt  # optional heavy dependency, loaded by whoever drew fig
        plt.close(fig)
        if name not in self.figure_names:
            self.figure_names.append(name)
        return self.final / "figures" / f"{name}.png"

    def figures(self) -> dict[str, Path]:
        """name -> path of every figure of the run (in the complete run directory)."""
        directory = self.dir / "figures"
        names = self.figure_names or sorted(p.stem for p in directory.glob("*.png"))
        return {name: directory / f"{name}.png" for name in names}

    def finish(self, **counts: Any) -> None:
        """Record the end and the counts, write the completion marker last, and move the run
        into place (in the writing process only)."""
        if not self.writer:
            return
        self.meta["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        self.meta.setdefault("counts", {}).update(counts)
        if self.figure_names:
            self.meta["figures"] = list(self.figure_names)
        atomic_write_json(self.dir / "meta.json", self.meta)
        atomic_write_text(self.dir / COMPLETE, self.meta["finished"] + "\n")
        if self.dir != self.final:
            _replace_directory(self.dir, self.final)
            self.dir = self.final
        self._release()
        self._publish()

    def _release(self) -> None:
        if self.lock is not None:
            _HELD.pop(self.lock.lock_file, None)
            self.lock.release(force=True)
            self.lock = None

    def release(self) -> None:
        """Give up an unfinished run: its ``.partial`` directory stays for a rerun to resume, and
        another process may now open it."""
        self._release()

    def _publish(self) -> None:
        # A stable name (<stage>/<profile>) that downstream notebooks take as their input path,
        # replaced atomically so it always points at a complete run; its figures are copied to
        # figures/<profile>/, each file replaced atomically.
        profile = getattr(self.params, "profile", None)
        if not profile or not self.publish:
            return
        link = self.dir.parent / profile
        tmp = self.dir.parent / f".{profile}.link-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(self.dir.name)
        os.replace(tmp, link)
        public = figures_root() / profile
        for name, path in self.figures().items():
            if path.exists():
                public.mkdir(parents=True, exist_ok=True)
                partial = public / f".{name}.png.partial-{os.getpid()}"
                shutil.copyfile(path, partial)
                os.replace(partial, public / f"{name}.png")


def _replace_directory(partial: Path, final: Path) -> None:
    """Move ``partial`` to ``final``; an earlier ``final`` (incomplete, or a complete run of the
    same key) is moved aside first and removed after."""
    if final.exists() or final.is_symlink():
        aside = final.with_name(f".{final.name}.replaced-{os.getpid()}")
        os.replace(final, aside)
        os.replace(partial, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, final)


def _new_meta(stage: str, key: str, upstream_dirs: dict, upstream_keys: dict, inputs: dict) -> dict:
    return {"stage": stage, "key": key, "upstream": upstream_dirs, "upstream_keys": upstream_keys,
            "inputs": inputs, "versions": versions(), "hardware": hardware(),
            "git_commit": git_commit(), "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "argv": sys.argv[:1]}


def _complete_key(directory: Path) -> str | None:
    if not (directory / COMPLETE).exists():
        return None
    try:
        return json.loads((directory / "meta.json").read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def _complete_stage(directory: Path) -> str | None:
    try:
        return json.loads((directory / "meta.json").read_text())["stage"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start_run(stage: str, params, upstream: Mapping[str, Path | str] | None = None,
              root: Path | str | None = None, inputs: Mapping[str, str] | None = None,
              out: Path | str | None = None, wait: float = -1, writer: bool = True) -> Run:
    """Open (or reopen) the run directory of ``stage`` for ``params``.

    ``params`` is a validated dataclass (:func:`derivlib.base.params.validate`). ``upstream``
    maps names to run directories this stage reads; each must be complete, and its key enters
    this run's key, as do ``inputs`` (digests of other content the output depends on). The run
    lives in ``<root>/<stage>/<key>/``, or in ``out`` when given (a command's ``--out``: never
    published under a profile name, and refused when it holds a complete run of other
    parameters).

    A complete run is returned as it is, and the stage loads instead of recomputing. Otherwise
    the run is (re)started in ``<dir>.partial`` under an exclusive lock: a second process
    opening the same run waits up to ``wait`` seconds (forever when negative) and then finds it
    complete, or resumes what the first one left.

    ``writer=False`` (the ranks != 0 of one distributed job, opened after rank 0 has opened the
    run): the same run, without lock, and nothing is ever written to it from this process.
    """
    upstream_keys = {}
    upstream_dirs = {}
    for name, path in (upstream or {}).items():
        path = Path(path)
        key = _complete_key(path)
        if key is None:
            raise ParameterError(
                f"parameter {name!r}: {path} is not a complete run directory "
                "(run the stage that makes it first)")
        upstream_keys[name] = key
        upstream_dirs[name] = str(path.resolve())
    inputs = dict(inputs or {})
    key = run_key(stage, params, upstream_keys, inputs)
    if out is not None:
        # every upstream run stays as it is: an --out that is, holds or lies inside one is refused
        refuse_overlap(out, [(f"the run directory of parameter {n!r}", p) for n, p in upstream_dirs.items()])
        final = Path(out)
        found = _complete_key(final)
        if found is not None and found != key:
            raise RunConflict(f"{final} holds a complete {_complete_stage(final) or stage} run of other "
                              f"parameters (key {found}, this run's key {key}); choose another --out or remove it")
        if final.exists() and not final.is_dir():
            raise ParameterError(f"--out {final} is a file, expected a run directory")
        if final.is_dir() and any(final.iterdir()) and not (final / "meta.json").exists():
            raise RunConflict(f"--out {final} is a directory that is not a derivlib run (no meta.json); "
                              "choose a new or empty directory")
    else:
        base = Path(root) if root is not None else Path(getattr(params, "data_root", "") or data_root())
        final = base / stage / key
    if not writer:
        return _follow(stage, key, final, params, upstream_dirs, inputs)
    writable_directory(final.parent, f"--out {out}" if out is not None else
                       f"the data root {base} ($DERIVLIB_DATA, default data/)")
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = str(final.parent / f".{final.name}.lock")
    earlier = _HELD.pop(lock_path, None)
    if earlier is not None:
        # This process opened the run before and did not finish it (a stage raised, a notebook
        # cell is rerun): that attempt is over, so its lock is released, not waited for.
        earlier.release(force=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise RunConflict(f"{final} is being written by another process (lock "
                          f"{lock.lock_file}); wait for it or stop it") from None
    found = _complete_key(final)
    if out is not None and found is not None and found != key:
        # another writer of this --out finished while this one waited: its run is kept
        lock.release()
        raise RunConflict(f"{final} now holds a complete {stage} run of other parameters (key {found}), "
                          f"written by another process while this one waited; choose another --out")
    if found == key:
        lock.release()
        meta = json.loads((final / "meta.json").read_text())
        run = Run(stage=stage, key=key, dir=final, params=params, upstream=upstream_dirs, meta=meta,
                  final=final, inputs=inputs, publish=out is None, figure_names=meta.get("figures", []))
        run._publish()
        return run
    partial = final.with_name(final.name + ".partial")
    if partial.exists() and _partial_key(partial) != key:
        shutil.rmtree(partial)  # another run's leftovers (an --out reused with new parameters)
    partial.mkdir(parents=True, exist_ok=True)
    meta = _new_meta(stage, key, upstream_dirs, upstream_keys, inputs)
    atomic_write_json(partial / "params.json", params_dict(params))
    atomic_write_json(partial / "meta.json", meta)
    _HELD[lock_path] = lock
    return Run(stage=stage, key=key, dir=partial, params=params, upstream=upstream_dirs, meta=meta,
               final=final, inputs=inputs, publish=out is None, lock=lock)


def _follow(stage: str, key: str, final: Path, params, upstream_dirs: dict, inputs: dict) -> Run:
    # the run as the writing process (rank 0) has opened it: complete, or its .partial
    directory = final if _complete_key(final) == key else final.with_name(final.name + ".partial")
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        raise RunConflict(f"{directory} was not opened by the writing process (rank 0) of this "
                          "distributed job") from None
    return Run(stage=stage, key=key, dir=directory, params=params, upstream=upstream_dirs, meta=meta,
               final=final, inputs=inputs, publish=False, figure_names=meta.get("figures", []),
               writer=False)


def _partial_key(directory: Path) -> str | None:
    try:
        return json.loads((directory / "meta.json").read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


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


def stage_of(value: str | Path) -> str | None:
    """The stage of the complete run directory ``value`` names (as :func:`resolve_run_dir` finds
    it), or None when it names none."""
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = data_root() / path
    return _complete_stage(path) if (path / COMPLETE).exists() else None


def refuse_out_over_input(out: Path | str, source: Path | str, name: str) -> None:
    """A finished run replaces its ``--out`` directory as a whole: refuse an ``out`` that is, holds,
    or lies inside the input ``source`` (parameter ``name``), or inside the complete run directory
    holding a ``source`` file (:func:`derivlib.base.files.refuse_overlap`)."""
    source = Path(source)
    inputs = [(f"parameter {name!r}", source)]
    if source.is_file() and (source.parent / COMPLETE).exists():
        inputs.append((f"the run directory of parameter {name!r}", source.parent))
    refuse_overlap(out, inputs)
