"""Each notebook's `parameters` cell declares exactly its stage's parameter dataclass, with the
same defaults, so that what a reader sees in the notebook is what the stage validates."""
from __future__ import annotations

import ast
import dataclasses
import importlib

import papermill as pm
import pytest

from derivlib.cli import notebook as notebooks

PARAMS = {
    "01_generate": "derivlib.stages.generate:Params",
    "02_testsets": "derivlib.stages.testsets:Params",
    "03_train_t5": "derivlib.stages.train_t5:Params",
    "04_predict_t5": "derivlib.stages.predict_t5:Params",
    "05_prompt_llm": "derivlib.stages.prompt_llm:Params",
    "06_train_lora": "derivlib.stages.train_lora:Params",
    "07_score": "derivlib.stages.score:Params",
    "08_error_analysis": "derivlib.stages.error_analysis:Params",
    "09_paper_outputs": "derivlib.stages.paper_outputs:Params",
    "10_paper_items": "derivlib.stages.paper_items:Params",
}


def _dataclass(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameters_cell_matches_the_stage_dataclass(name):
    declared = pm.inspect_notebook(str(notebooks.NOTEBOOK_DIR / f"{name}.ipynb"))
    fields = {f.name: f for f in dataclasses.fields(_dataclass(PARAMS[name]))}
    assert set(declared) == set(fields), f"{name}: notebook and {PARAMS[name]} declare different names"
    for pname, info in declared.items():
        notebook_default = ast.literal_eval(info["default"])  # literals only, as the notebooks promise
        assert notebook_default == _default(fields[pname]), f"{name}: default of {pname!r} differs"
        assert info["help"], f"{name}: parameter {pname!r} has no comment"
