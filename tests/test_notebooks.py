"""Every numbered notebook, executed in order through papermill with the tiny profile, as
`make reproduce` runs them (same runner, same kernel), into a temporary data root."""
from __future__ import annotations

import json
import os
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
    "06_score": "score",
    "07_error_analysis": "error_analysis",
    "08_paper_outputs": "paper_outputs",
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
