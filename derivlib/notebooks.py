"""Execute the numbered notebooks with a parameter profile, through papermill.

A profile is ``notebooks/params/<profile>.yaml``: one section per notebook (its file stem), each
a mapping of parameter names to values. ``profile`` itself is injected into every notebook, so
its outputs are published under ``data/<stage>/<profile>`` and ``figures/<profile>/``.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .config import ParameterError

KERNEL = "derivlib"
REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
PARAMS_DIR = NOTEBOOK_DIR / "params"


def notebook_names(directory: Path = NOTEBOOK_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("[0-9][0-9]_*.ipynb"))


def load_profile(profile: str, params_dir: Path = PARAMS_DIR) -> dict:
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise ParameterError(f"unknown profile {profile!r}: no {path} (known: {', '.join(known)})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of notebook name -> parameters")
    return data


def notebook_parameters(name: str, profile: str, params_dir: Path = PARAMS_DIR,
                        notebook_dir: Path = NOTEBOOK_DIR, overrides: dict | None = None) -> dict:
    """The parameters papermill injects into ``name`` for ``profile``, checked against the
    notebook's own ``parameters`` cell: an unknown name is an error here, before any kernel."""
    import papermill as pm

    path = notebook_dir / f"{name}.ipynb"
    if not path.exists():
        raise ParameterError(f"no notebook {path} (known: {', '.join(notebook_names(notebook_dir))})")
    section = dict(load_profile(profile, params_dir).get(name) or {})
    section.update(overrides or {})
    section["profile"] = profile
    declared = set(pm.inspect_notebook(str(path)))
    unknown = sorted(set(section) - declared)
    if unknown:
        raise ParameterError(f"{name}: profile {profile!r} sets parameters the notebook does not "
                             f"declare: {', '.join(unknown)} (declared: {', '.join(sorted(declared))})")
    return section


def execute(name: str, profile: str, out: Path | str, overrides: dict | None = None,
            notebook_dir: Path = NOTEBOOK_DIR, params_dir: Path = PARAMS_DIR,
            cwd: Path | str | None = None, log_output: bool = True) -> Path:
    """Run notebook ``name`` into ``out``; the executed copy appears only if the run succeeded."""
    import papermill as pm

    parameters = notebook_parameters(name, profile, params_dir, notebook_dir, overrides)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.ipynb")
    pm.execute_notebook(str(notebook_dir / f"{name}.ipynb"), str(partial), parameters=parameters,
                        kernel_name=KERNEL, cwd=str(cwd or REPO), log_output=log_output,
                        progress_bar=False)
    os.replace(partial, out)
    return out
