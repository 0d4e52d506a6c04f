"""The command line as a user meets it: one line per error, progress on stderr."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def derivlib(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derivlib", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout)


def test_notebook_parameter_errors_are_one_line_before_any_kernel(tmp_path):
    result = derivlib("notebook", "09_paper_outputs", "--profile", "tiny", "-p", "n_bootstrap=-1",
                      "--out", str(tmp_path / "x.ipynb"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: 09_paper_outputs (profile 'tiny'): parameter 'n_bootstrap' must be >= 0, got -1"]
    result = derivlib("notebook", "09_paper_outputs", "--profile", "tiny", "-p", "n_bootstrap=\"many\"",
                      "--out", str(tmp_path / "x.ipynb"))
    assert result.returncode == 2 and "'n_bootstrap' must be <class 'int'>" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.ipynb").exists()


def test_notebook_out_must_be_a_notebook_path(tmp_path):
    result = derivlib("notebook", "09_paper_outputs", "--profile", "tiny", "--out", str(tmp_path))
    assert result.returncode == 2 and "expected the path of an .ipynb file" in result.stderr


@pytest.mark.slow
def test_notebook_prints_per_cell_progress_to_stderr(tmp_path):
    env = {"DERIVLIB_DATA": str(tmp_path / "data"), "DERIVLIB_FIGURES": str(tmp_path / "figures")}
    result = derivlib("notebook", "09_paper_outputs", "--profile", "tiny",
                      "--out", str(tmp_path / "08.ipynb"), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("[09_paper_outputs] cell 5/") and "Rescore" in line and "done in" in line
               for line in lines), result.stderr
    assert "TCP" not in result.stderr, "the kernel must not listen on TCP"
    assert "wrote" in result.stdout and (tmp_path / "08.ipynb").exists()


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.jsonl"
    plain = derivlib("verify", str(missing))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and str(missing) in plain.stderr
    debug = derivlib("--debug", "verify", str(missing))
    assert debug.returncode != 0 and "Traceback" in debug.stderr
