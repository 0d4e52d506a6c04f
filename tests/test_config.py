"""Parameters, run directories and the notebook runner's checks."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from derivlib import config, notebooks
from derivlib.config import ParameterError


@dataclasses.dataclass(frozen=True)
class Params:
    n_items: int = 3
    rate: float = 0.5
    name: str = "x"
    weights: dict = dataclasses.field(default_factory=dict)
    profile: str = "tiny"

    def check(self):
        if self.n_items <= 0:
            raise ParameterError(f"parameter 'n_items' must be positive, got {self.n_items}")


def test_unknown_name_is_an_error_with_a_suggestion():
    with pytest.raises(ParameterError, match=r"'n_itms' \(did you mean 'n_items'\?\)"):
        config.validate(Params, {"n_itms": 4})


def test_wrong_type_is_an_error_naming_the_parameter():
    with pytest.raises(ParameterError, match="'n_items'"):
        config.validate(Params, {"n_items": "4"})
    with pytest.raises(ParameterError, match="'n_items'"):
        config.validate(Params, {"n_items": True})


def test_stage_range_check_runs():
    with pytest.raises(ParameterError, match="'n_items' must be positive"):
        config.validate(Params, {"n_items": 0})


def test_int_accepted_for_float():
    assert config.validate(Params, {"rate": 1}).rate == 1.0


def test_from_namespace_ignores_modules_and_functions_but_not_typos():
    namespace = {"n_items": 2, "json": json, "os": os, "print": print, "In": [], "_x": 1,
                 "helper": lambda: None}
    assert config.from_namespace(Params, namespace).n_items == 2
    namespace["n_itme"] = 5
    with pytest.raises(ParameterError, match="n_itme"):
        config.from_namespace(Params, namespace)


def test_run_key_depends_on_content_not_label():
    a = config.validate(Params, {"n_items": 2, "profile": "smoke"})
    b = config.validate(Params, {"n_items": 2, "profile": "other"})
    c = config.validate(Params, {"n_items": 3})
    assert config.run_key("s", a) == config.run_key("s", b)
    assert config.run_key("s", a) != config.run_key("s", c)
    assert config.run_key("s", a) != config.run_key("t", a)
    assert config.run_key("s", a, {"up": "k1"}) != config.run_key("s", a, {"up": "k2"})


def test_run_directory_lifecycle(tmp_path):
    params = config.validate(Params, {"n_items": 2, "profile": "smoke"})
    run = config.start_run("stage", params, root=tmp_path)
    assert not run.complete
    assert json.loads((run.dir / "params.json").read_text())["n_items"] == 2
    assert not (tmp_path / "stage" / "smoke").exists()  # nothing published before completion
    (run.dir / "payload.txt").write_text("x")
    run.finish(items=2)
    assert run.complete
    meta = json.loads((run.dir / "meta.json").read_text())
    assert meta["counts"] == {"items": 2} and meta["key"] == run.key and "sympy" in meta["versions"]
    assert (tmp_path / "stage" / "smoke").resolve() == run.dir.resolve()
    again = config.start_run("stage", params, root=tmp_path)
    assert again.complete and again.dir == run.dir


def test_interrupted_run_is_not_complete_and_restarts(tmp_path):
    params = config.validate(Params, {"n_items": 2})
    run = config.start_run("stage", params, root=tmp_path)
    (run.dir / "partial.txt").write_text("half")
    again = config.start_run("stage", params, root=tmp_path)
    assert not again.complete and again.dir == run.dir


def test_upstream_must_be_complete(tmp_path):
    params = config.validate(Params, {})
    up = config.start_run("up", params, root=tmp_path)
    with pytest.raises(ParameterError, match="'derivations'.*not a complete run directory"):
        config.start_run("down", params, upstream={"derivations": up.dir}, root=tmp_path)
    up.finish()
    down = config.start_run("down", params, upstream={"derivations": up.dir}, root=tmp_path)
    assert down.meta["upstream_keys"] == {"derivations": up.key}


def test_resolve_run_dir_relative_to_data_root(isolated_data):
    params = config.validate(Params, {"profile": "tiny"})
    run = config.start_run("generate", params)
    with pytest.raises(ParameterError, match="'derivations'"):
        config.resolve_run_dir("generate/tiny", "derivations")
    run.finish()
    assert config.resolve_run_dir("generate/tiny", "derivations").resolve() == run.dir.resolve()


def test_item_rng_depends_only_on_seed_index_stream():
    a = [config.item_rng(0, 5).random() for _ in range(2)]
    assert a[0] == a[1]
    assert config.item_rng(0, 5).random() != config.item_rng(0, 6).random()
    assert config.item_rng(0, 5).random() != config.item_rng(1, 5).random()
    assert config.item_rng(0, 5, "ag").random() != config.item_rng(0, 5).random()


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match="line 2"):
        config.read_jsonl(path)


def test_check_writable(tmp_path):
    config.check_writable(tmp_path / "new" / "file.jsonl")
    assert not (tmp_path / "new").exists()
    with pytest.raises(ParameterError, match="'out'"):
        config.check_writable(tmp_path)  # a directory is not a file to write
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="'out'.*not a writable directory"):
        config.check_writable(blocker / "sub" / "f.jsonl")  # fails for root too


def test_profiles_declare_only_notebook_parameters():
    """Every profile section names parameters its notebook declares (papermill only warns)."""
    names = notebooks.notebook_names()
    for profile in ("tiny", "smoke", "paper"):
        data = notebooks.load_profile(profile)
        assert set(data) <= set(names) | {"01_generate", "02_testsets", "03_train_t5", "04_predict_t5",
                                           "05_prompt_llm", "06_score", "07_error_analysis", "08_paper_outputs"}
        for name in names:
            notebooks.notebook_parameters(name, profile)


def test_unknown_profile_and_unknown_notebook_parameter(tmp_path):
    with pytest.raises(ParameterError, match="unknown profile 'nope'"):
        notebooks.load_profile("nope")
    names = notebooks.notebook_names()
    if not names:
        pytest.fail("no notebooks found in notebooks/")
    with pytest.raises(ParameterError, match="does not declare: not_a_parameter"):
        notebooks.notebook_parameters(names[0], "tiny", overrides={"not_a_parameter": 1})
