"""``python -m derivlib notebook NAME --profile P [-p name=value]``: execute one numbered notebook
with a parameter profile, through papermill (what ``make`` calls).

A profile is ``notebooks/params/<profile>.yaml``: one section per notebook (its file stem), each
a mapping of parameter names to values. ``profile`` itself is injected into every notebook, so
its outputs are published under ``data/<stage>/<profile>`` and ``figures/<profile>/``.

Parameters are validated against the notebook's stage (``derivlib.stages.<name without its
number>``) before any kernel starts, so a typo or a wrong type is one line, not a traceback from
inside the kernel. While the notebook runs, each cell is announced on stderr with its
``#papermill_description`` and elapsed time, and what the cells print (progress lines) is
mirrored to stderr; the executed copy is written only when the run succeeded.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import papermill as pm
import yaml
from jupyter_client import KernelManager
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError

from ..base.files import check_writable, refuse_overlap
from ..base.parallel import Terminated
from ..base.params import ParameterError, validate

KERNEL = "derivlib"
REPO = Path(__file__).resolve().parent.parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
PARAMS_DIR = NOTEBOOK_DIR / "params"
ENGINE = "derivlib"


def add_arguments(p):
    p.add_argument("name", help="notebook stem, e.g. 01_generate")
    p.add_argument("--profile", default="smoke", help="notebooks/params/<profile>.yaml (default: smoke)")
    p.add_argument("--out", type=Path, help="executed copy (default: build/<profile>/<name>.ipynb)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                   help="override one parameter, value as JSON (e.g. -p n_derivations=50)")


def run(args) -> int:
    overrides = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"--param {item!r}: expected NAME=VALUE")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    out = args.out or Path("build") / args.profile / f"{args.name}.ipynb"
    check_out(out, args.name, args.profile)
    execute(args.name, args.profile, out, overrides=overrides)
    print(f"wrote {out}")
    return 0


def check_out(out: Path, name: str, profile: str, notebook_dir: Path = NOTEBOOK_DIR,
              params_dir: Path = PARAMS_DIR) -> None:
    """Refuse, before any kernel starts, an ``--out`` that is not an ``.ipynb`` path, that is or
    holds the notebook or its profile (the executed copy would replace the source), or that
    cannot be written."""
    if out.is_dir() or out.suffix != ".ipynb":
        raise ParameterError(f"--out {out}: expected the path of an .ipynb file to write")
    refuse_overlap(out, {"notebook": notebook_dir / f"{name}.ipynb",
                         "profile": params_dir / f"{profile}.yaml"})
    check_writable(out, "--out")
    check_writable(out.with_name(out.stem + ".partial.ipynb"), "--out")


def notebook_names(directory: Path = NOTEBOOK_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("[0-9][0-9]_*.ipynb"))


def stage_module(name: str):
    """The stage a notebook calls: ``01_generate`` -> ``derivlib.stages.generate``."""
    # Chosen by the notebook's name, so the notebook command loads only the stage it runs.
    return importlib.import_module(f"derivlib.stages.{name.split('_', 1)[1]}")


def load_profile(profile: str, params_dir: Path = PARAMS_DIR) -> dict:
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise ParameterError(f"unknown profile {profile!r}: no {path} (known: {', '.join(known)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParameterError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of notebook name -> parameters")
    return data


def notebook_parameters(name: str, profile: str, params_dir: Path = PARAMS_DIR,
                        notebook_dir: Path = NOTEBOOK_DIR, overrides: dict | None = None) -> dict:
    """The parameters papermill injects into ``name`` for ``profile``, checked against the
    notebook's own ``parameters`` cell and its stage's ``Params``: an unknown name, a wrong type
    or a value out of range is an error here, before any kernel."""
    path = notebook_dir / f"{name}.ipynb"
    if not path.exists():
        raise ParameterError(f"no notebook {path} (known: {', '.join(notebook_names(notebook_dir))})")
    section = load_profile(profile, params_dir).get(name) or {}
    if not isinstance(section, dict):
        raise ParameterError(f"{params_dir / (profile + '.yaml')}: section {name!r} must be a mapping")
    section = {**section, **(overrides or {}), "profile": profile}
    declared = set(pm.inspect_notebook(str(path)))
    unknown = sorted(set(section) - declared)
    if unknown:
        raise ParameterError(f"{name}: profile {profile!r} sets parameters the notebook does not "
                             f"declare: {', '.join(unknown)} (declared: {', '.join(sorted(declared))})")
    try:
        validate(stage_module(name).Params, section)
    except ParameterError as err:
        raise ParameterError(f"{name} (profile {profile!r}): {err}") from None
    return section


#: Exceptions raised in a cell that mean bad input (a parameter, a file, a run directory): the
#: command reports them as one line with exit status 2, as it does its own.
INPUT_ERROR_NAMES = {"ParameterError", "RunConflict", "ValueError", "TypeError", "KeyError", "LookupError",
                     "IndexError", "OSError", "FileNotFoundError", "FileExistsError", "IsADirectoryError",
                     "NotADirectoryError", "PermissionError", "UnicodeDecodeError", "JSONDecodeError"}


class NotebookInputError(ValueError):
    """A notebook cell stopped on bad input; the message names the notebook, the cell and the error."""


class NotebookCellError(RuntimeError):
    """A notebook cell raised something other than bad input."""


def cell_error(name: str, err: PapermillExecutionError, partial: Path) -> Exception:
    """One line for an error raised inside the kernel: notebook, cell, exception and message, and
    where the executed copy with the traceback is."""
    source = (err.source or "").splitlines()
    label = next((line.split("=", 1)[1].strip() for line in source[:1]
                  if line.startswith("#papermill_description=")), f"cell {err.cell_index + 1}")
    message = " ".join(str(err.evalue).split())[:600]
    kind = NotebookInputError if err.ename in INPUT_ERROR_NAMES else NotebookCellError
    return kind(f"{name}, {label}: {err.ename}: {message} (executed copy with the traceback: {partial})")


class ProgressEngine(NBClientEngine):
    """papermill's nbclient engine, announcing each cell on stderr as it starts and ends."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        label = Path(nb_man.nb.metadata.papermill.get("input_path", "notebook")).stem
        total = len(nb_man.nb.cells)
        started = time.monotonic()
        stock_start, stock_complete = nb_man.cell_start, nb_man.cell_complete
        clock = {}

        def describe(cell) -> str:
            first = cell.source.splitlines()[0] if cell.source else ""
            if first.startswith("#papermill_description="):
                return first.split("=", 1)[1].strip()
            if "parameters" in cell.metadata.get("tags", []):
                return "parameters"
            return first[:48] + ("..." if len(first) > 48 else "")

        def cell_start(cell, cell_index=None, **kw):
            clock[cell_index] = time.monotonic()
            if cell.cell_type == "code":
                print(f"[{label}] cell {cell_index + 1}/{total} {describe(cell)} ...",
                      file=sys.stderr, flush=True)
            return stock_start(cell, cell_index, **kw)

        def cell_complete(cell, cell_index=None, **kw):
            if cell.cell_type == "code":
                spent = time.monotonic() - clock.get(cell_index, started)
                print(f"[{label}] cell {cell_index + 1}/{total} {describe(cell)} done in {spent:.1f} s "
                      f"({time.monotonic() - started:.0f} s so far)", file=sys.stderr, flush=True)
            return stock_complete(cell, cell_index, **kw)

        nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


#: The longest Unix socket path that zmq can bind (``sun_path`` holds 108 bytes on Linux, 104 on
#: macOS), with room to spare.
SOCKET_PATH_MAX = 100


def _sockets_parent() -> str | None:
    """Where the kernel's socket directory goes: the temporary directory, or ``/tmp`` where that
    is too deep for a socket path (zmq then refuses with "File name too long")."""
    deepest = os.path.join(tempfile.gettempdir(), "derivlib-kernel-xxxxxxxx", "kernel-99")
    return None if len(deepest) <= SOCKET_PATH_MAX else "/tmp"


@contextlib.contextmanager
def _kernel_stopped_after(kernel: KernelManager):
    """Stop ``kernel`` when the block ends; on Ctrl-C or SIGTERM, kill it in the signal handler.

    Why in the handler: papermill's own clean-up (saving the notebook, about 0.4 s) runs before
    any ``finally`` of ours, and the kernel, in a session of its own, gets no Ctrl-C from the
    terminal, so a busy kernel ran on long enough to finish its cell and publish a run after the
    kill. Under Python's default SIGTERM the command died alone and the kernel ran until
    ipykernel's parent poller noticed (up to a second). Once killed, the kernel is only reaped:
    ``shutdown_kernel`` would resume nbclient's pending tasks on the shared event loop, and one
    of them waits, blocking, for the dead kernel's reply."""
    def interrupted(signum, frame):
        provisioner = kernel.provisioner
        group = getattr(provisioner, "pgid", None)
        process = getattr(provisioner, "process", None)
        with contextlib.suppress(OSError):
            if group:
                os.killpg(group, signal.SIGKILL)
            elif process is not None:
                process.kill()
        if signum == signal.SIGTERM:
            raise Terminated(f"signal {signal.Signals(signum).name}")
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    previous = {signum: signal.signal(signum, interrupted)
                for signum in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}
    killed = False
    try:
        yield
    except KeyboardInterrupt:
        killed = in_main_thread
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        process = getattr(kernel.provisioner, "process", None)
        if killed and process is not None:
            process.wait(timeout=30)
            kernel.cleanup_connection_file()  # what shutdown_kernel would remove, without its event loop
            kernel.cleanup_ipc_files()
        elif kernel.has_kernel:  # a kernel manager we made is ours to stop
            kernel.shutdown_kernel(now=True)


def execute(name: str, profile: str, out: Path | str, overrides: dict | None = None,
            notebook_dir: Path = NOTEBOOK_DIR, params_dir: Path = PARAMS_DIR,
            cwd: Path | str | None = None, log_output: bool = True) -> Path:
    """Run notebook ``name`` into ``out``; the executed copy appears only if the run succeeded.

    With ``log_output``, cells are announced and their output mirrored on stderr."""
    parameters = notebook_parameters(name, profile, params_dir, notebook_dir, overrides)
    papermill_engines.register(ENGINE, ProgressEngine)  # idempotent: a name -> class mapping
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.ipynb")
    with tempfile.TemporaryDirectory(prefix="derivlib-kernel-", dir=_sockets_parent()) as sockets:
        # IPC sockets in a private directory: the kernel's channels never listen on TCP.
        kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=os.path.join(sockets, "kernel"))
        try:
            with _kernel_stopped_after(kernel):
                pm.execute_notebook(str(notebook_dir / f"{name}.ipynb"), str(partial), parameters=parameters,
                                    kernel_name=KERNEL, cwd=str(cwd or REPO),
                                    engine_name=ENGINE if log_output else None, progress_bar=False,
                                    km=kernel, stdout_file=sys.stderr if log_output else None,
                                    stderr_file=sys.stderr if log_output else None)
        except PapermillExecutionError as err:
            raise cell_error(name, err, partial) from None
    os.replace(partial, out)
    return out
