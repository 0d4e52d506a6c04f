"""Parameters, files, seeding, run directories and the notebook runner's checks."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derivlib.base import files, params as config_params, seeding
from derivlib.base.params import ParameterError
from derivlib.cli import notebook as notebooks
from derivlib.stages import rundir


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
        config_params.validate(Params, {"n_itms": 4})


def test_wrong_type_is_an_error_naming_the_parameter():
    with pytest.raises(ParameterError, match="'n_items'"):
        config_params.validate(Params, {"n_items": "4"})
    with pytest.raises(ParameterError, match="'n_items'"):
        config_params.validate(Params, {"n_items": True})


def test_stage_range_check_runs():
    with pytest.raises(ParameterError, match="'n_items' must be positive"):
        config_params.validate(Params, {"n_items": 0})


def test_int_accepted_for_float():
    assert config_params.validate(Params, {"rate": 1}).rate == 1.0


def test_from_namespace_ignores_modules_and_functions_but_not_typos():
    namespace = {"n_items": 2, "json": json, "os": os, "print": print, "In": [], "_x": 1,
                 "helper": lambda: None}
    assert config_params.from_namespace(Params, namespace).n_items == 2
    namespace["n_itme"] = 5
    with pytest.raises(ParameterError, match="n_itme"):
        config_params.from_namespace(Params, namespace)


def test_run_key_depends_on_content_not_label():
    a = config_params.validate(Params, {"n_items": 2, "profile": "smoke"})
    b = config_params.validate(Params, {"n_items": 2, "profile": "other"})
    c = config_params.validate(Params, {"n_items": 3})
    assert rundir.run_key("s", a) == rundir.run_key("s", b)
    assert rundir.run_key("s", a) != rundir.run_key("s", c)
    assert rundir.run_key("s", a) != rundir.run_key("t", a)
    assert rundir.run_key("s", a, {"up": "k1"}) != rundir.run_key("s", a, {"up": "k2"})


def test_run_directory_lifecycle(tmp_path):
    params = config_params.validate(Params, {"n_items": 2, "profile": "smoke"})
    run = rundir.start_run("stage", params, root=tmp_path)
    assert not run.complete
    assert json.loads((run.dir / "params.json").read_text())["n_items"] == 2
    assert not (tmp_path / "stage" / "smoke").exists()  # nothing published before completion
    (run.dir / "payload.txt").write_text("x")
    run.finish(items=2)
    assert run.complete
    meta = json.loads((run.dir / "meta.json").read_text())
    assert meta["counts"] == {"items": 2} and meta["key"] == run.key and "sympy" in meta["versions"]
    assert (tmp_path / "stage" / "smoke").resolve() == run.dir.resolve()
    again = rundir.start_run("stage", params, root=tmp_path)
    assert again.complete and again.dir == run.dir


def test_interrupted_run_is_not_complete_and_resumes(tmp_path):
    params = config_params.validate(Params, {"n_items": 2})
    run = rundir.start_run("stage", params, root=tmp_path)
    (run.dir / "partial.txt").write_text("half")
    run.release()  # as when the process was killed
    again = rundir.start_run("stage", params, root=tmp_path)
    assert not again.complete and again.dir == run.dir and (again.dir / "partial.txt").exists()
    assert not again.final.exists(), "an unfinished run must not sit where a complete one would"


def test_a_killed_rerun_leaves_the_complete_run_and_its_link_alone(tmp_path):
    first = config_params.validate(Params, {"n_items": 2, "profile": "smoke"})
    run = rundir.start_run("stage", first, root=tmp_path)
    (run.dir / "payload.txt").write_text("first")
    run.finish()
    second = config_params.validate(Params, {"n_items": 3, "profile": "smoke"})
    rerun = rundir.start_run("stage", second, root=tmp_path)
    (rerun.dir / "payload.txt").write_text("second, half written")
    rerun.release()  # killed here
    link = tmp_path / "stage" / "smoke"
    assert link.resolve() == run.dir.resolve() and (link / "COMPLETE").exists()
    assert (link / "payload.txt").read_text() == "first"
    assert json.loads((link / "params.json").read_text())["n_items"] == 2


def test_figures_are_published_when_the_run_completes(isolated_data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    params = config_params.validate(Params, {"profile": "tiny"})
    run = rundir.start_run("stage", params)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    final_path = run.save_figure(fig, "line")
    public = isolated_data / "figures" / "tiny" / "line.png"
    assert not public.exists() and not final_path.exists()
    run.finish()
    assert public.exists() and final_path.exists() and run.figures() == {"line": final_path}
    assert json.loads((run.dir / "meta.json").read_text())["figures"] == ["line"]


def test_out_directory_of_other_parameters_is_refused(tmp_path):
    out = tmp_path / "mine"
    run = rundir.start_run("stage", config_params.validate(Params, {"n_items": 2}), out=out)
    (run.dir / "payload.txt").write_text("kept")
    run.finish()
    assert (out / "COMPLETE").exists() and not run.publish
    with pytest.raises(rundir.RunConflict, match="holds a complete stage run of other parameters"):
        rundir.start_run("stage", config_params.validate(Params, {"n_items": 5}), out=out)
    assert (out / "payload.txt").read_text() == "kept"
    same = rundir.start_run("stage", config_params.validate(Params, {"n_items": 2}), out=out)
    assert same.complete


def test_out_directory_that_is_not_a_run_is_refused(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(rundir.RunConflict, match="not a derivlib run"):
        rundir.start_run("stage", config_params.validate(Params, {}), out=out)
    assert (out / "thesis.tex").read_text() == "precious"


SECOND_WRITER = """
import sys
from derivlib.base.params import validate
from derivlib.stages import rundir
sys.path.insert(0, sys.argv[2])
from test_rundir import Params
run = rundir.start_run("stage", validate(Params, {"n_items": 4}), root=sys.argv[1])
print(run.complete, (run.dir / "payload.txt").read_text())
"""


def test_a_second_writer_waits_for_the_first_and_then_loads(tmp_path):
    params = config_params.validate(Params, {"n_items": 4})
    first = rundir.start_run("stage", params, root=tmp_path)
    second = subprocess.Popen([sys.executable, "-c", SECOND_WRITER, str(tmp_path), str(Path(__file__).parent)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert second.poll() is None, "the second writer must wait: " + second.stderr.read()
    (first.dir / "payload.txt").write_text("one")
    first.finish()
    out, err = second.communicate(timeout=60)
    assert out.split() == ["True", "one"], err


def test_a_refused_second_writer_says_so(tmp_path):
    params = config_params.validate(Params, {"n_items": 4})
    rundir.start_run("stage", params, root=tmp_path)
    script = SECOND_WRITER.replace('root=sys.argv[1])', 'root=sys.argv[1], wait=0.2)')
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(Path(__file__).parent)],
                            capture_output=True, text=True, timeout=60)
    assert "being written by another process" in result.stderr


def test_an_abandoned_run_in_this_process_can_be_reopened(tmp_path):
    params = config_params.validate(Params, {"n_items": 6})
    first = rundir.start_run("stage", params, root=tmp_path)
    (first.dir / "half.txt").write_text("x")
    # the stage raised here; the same process (a notebook) opens the run again
    again = rundir.start_run("stage", params, root=tmp_path, wait=1)
    assert again.dir == first.dir and (again.dir / "half.txt").exists()
    again.release()
    third = rundir.start_run("stage", params, root=tmp_path, wait=1)
    third.finish()
    assert third.complete


def test_meta_records_the_hardware(tmp_path):
    run = rundir.start_run("stage", config_params.validate(Params, {}), root=tmp_path)
    hardware = run.meta["hardware"]
    assert hardware["cpu_count"] >= 1 and hardware["machine"]
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert hardware["cpu_bf16"] == sorted({"avx512_bf16", "amx_bf16"} & set(flags))


def test_upstream_must_be_complete(tmp_path):
    params = config_params.validate(Params, {})
    up = rundir.start_run("up", params, root=tmp_path)
    with pytest.raises(ParameterError, match="'derivations'.*not a complete run directory"):
        rundir.start_run("down", params, upstream={"derivations": up.dir}, root=tmp_path)
    up.finish()
    down = rundir.start_run("down", params, upstream={"derivations": up.dir}, root=tmp_path)
    assert down.meta["upstream_keys"] == {"derivations": up.key}


def test_resolve_run_dir_relative_to_data_root(isolated_data):
    params = config_params.validate(Params, {"profile": "tiny"})
    run = rundir.start_run("generate", params)
    with pytest.raises(ParameterError, match="'derivations'"):
        rundir.resolve_run_dir("generate/tiny", "derivations")
    run.finish()
    assert rundir.resolve_run_dir("generate/tiny", "derivations").resolve() == run.dir.resolve()


def test_item_rng_depends_only_on_seed_index_stream():
    a = [seeding.item_rng(0, 5).random() for _ in range(2)]
    assert a[0] == a[1]
    assert seeding.item_rng(0, 5).random() != seeding.item_rng(0, 6).random()
    assert seeding.item_rng(0, 5).random() != seeding.item_rng(1, 5).random()
    assert seeding.item_rng(0, 5, "ag").random() != seeding.item_rng(0, 5).random()


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match="line 2"):
        files.read_jsonl(path)


def test_check_writable(tmp_path):
    files.check_writable(tmp_path / "new" / "file.jsonl")
    assert not (tmp_path / "new").exists()
    with pytest.raises(ParameterError, match="'out'"):
        files.check_writable(tmp_path)  # a directory is not a file to write
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="'out'.*not a writable directory"):
        files.check_writable(blocker / "sub" / "f.jsonl")  # fails for root too


def test_profiles_declare_only_notebook_parameters():
    """Every profile section names parameters its notebook declares (papermill only warns)."""
    names = notebooks.notebook_names()
    for profile in ("tiny", "smoke", "paper"):
        data = notebooks.load_profile(profile)
        assert set(data) <= set(names) | {"01_generate", "02_testsets", "03_train_t5", "04_predict_t5",
                                           "05_prompt_llm", "06_train_lora", "07_score", "08_error_analysis", "09_paper_outputs", "10_paper_items"}
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
