"""Every numbered notebook, executed in order through papermill with the tiny profile, as
`make reproduce` runs them (same runner, same kernel), into a temporary data root."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derivlib.cli import notebook as notebooks

#: notebook -> stage whose run directory it publishes as <stage>/tiny
STAGES = {
    "01_generate": "generate",
    "02_testsets": "testsets",
    "03_train_t5": "train_t5",
    "04_predict_t5": "predict_t5",
    "05_prompt_llm": "prompt_llm",
    "06_train_lora": "train_lora",
    "07_score": "score",
    "08_error_analysis": "error_analysis",
    "09_paper_outputs": "paper_outputs",
    "10_paper_items": "paper_items",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    outcome = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(root / "data"))
        mp.setenv("DERIVLIB_FIGURES", str(root / "figures"))
        for name in notebooks.notebook_names():
            out = root / "build" / f"{name}.ipynb"
            try:
                notebooks.execute(name, "tiny", out, log_output=False)
                outcome[name] = None
            except Exception as err:  # reported per notebook below, with papermill's message
                outcome[name] = f"{type(err).__name__}: {str(err)[-3000:]}"
    return root, outcome


def test_every_expected_notebook_exists():
    assert sorted(notebooks.notebook_names()) == sorted(STAGES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STAGES))
def test_notebook_runs_and_publishes_a_complete_run(executed, name):
    root, outcome = executed
    assert name in outcome, f"{name} was not executed"
    assert outcome[name] is None, outcome[name]
    published = root / "data" / STAGES[name] / "tiny"
    assert (published / "COMPLETE").exists(), f"{published} is not a complete run"
    params = json.loads((published / "params.json").read_text())
    assert params["profile"] == "tiny"
    executed_nb = json.loads((root / "build" / f"{name}.ipynb").read_text())
    errors = [o for c in executed_nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.slow
def test_notebooks_draw_figures(executed):
    root, outcome = executed
    figures = sorted((root / "figures" / "tiny").glob("*.png"))
    assert figures, "no figure was written"
    for path in figures:
        assert path.stat().st_size > 5000, f"{path.name} looks empty"


def test_committed_notebooks_have_no_outputs_and_one_parameters_cell():
    for path in sorted(notebooks.NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in code), path.name
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        assert "profile: str" in "".join(tagged[0]["source"]), f"{path.name}: no profile parameter"
        assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: first cell should be the title"
        assert not any("def " in "".join(c["source"]).split("\n", 1)[0] or "\ndef " in "".join(c["source"])
                       for c in code), f"{path.name}: function definitions belong in derivlib"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--allow-file-access-from-files", "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def report(executed):
    root, outcome = executed
    env = {**os.environ, "DERIVLIB_DATA": str(root / "data")}
    result = subprocess.run([sys.executable, "-m", "derivlib", "report", "--profile", "tiny",
                             "--build", str(root / "build"), "--out", str(root / "report")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return root / "report", result.stdout


@pytest.mark.slow
def test_report_gathers_every_notebook_figure_and_the_main_table(executed, report):
    directory, printed = report
    index = (directory / "index.html").read_text()
    for name in STAGES:
        assert (directory / f"{name}.html").exists(), f"{name} not converted"
        assert f"href='{name}.html'" in index
    figures = sorted(p.name for p in (directory / "figures").glob("*.png"))
    assert figures and all(f"figures/{f}" in index for f in figures)
    assert "ROUGE-2" in index and "copy-prompt" in index and "goal reached" in index
    assert "report:" in printed and "copy-prompt" in printed


@pytest.mark.slow
def test_report_renders_in_a_real_browser(report, tmp_path):
    if CHROMIUM is None:
        message = "needs Chromium (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory, _ = report
    url = (directory / "index.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded, "the page did not finish loading: " + dom.stderr[-500:]
    assert int(loaded.group(2)) > 0 and loaded.group(1) == loaded.group(2), "some images did not load"
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, "--window-size=1280,2000",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000
    keep = os.environ.get("DERIVLIB_KEEP_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
