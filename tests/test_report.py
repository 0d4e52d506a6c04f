"""The report's tables (``derivlib.presentation.report``) and ``report --markdown``, which prints
the README's stage-time and results tables from the runs of a profile."""
from __future__ import annotations

import pandas as pd
import pytest

from derivlib import __main__ as cli
from derivlib.base.files import atomic_write_json, atomic_write_text, write_jsonl
from derivlib.presentation import report
from derivlib.stages import rundir

MEANS = pd.DataFrame([
    {"model": "a", "set": "VR", "metric": "rouge", "n": 2, "mean": 50.0, "ci_low": 40.0, "ci_high": 60.0},
    {"model": "a", "set": "static", "metric": "rouge", "n": 2, "mean": 90.04, "ci_low": 80.0, "ci_high": 99.96},
    {"model": "a", "set": "static", "metric": "bleu", "n": 2, "mean": 1.0, "ci_low": 0.0, "ci_high": 2.0}])
SCORES = pd.DataFrame([
    {"model": "a", "set": "static", "id": "1", "rouge": 0.9, "well_formed": 1},
    {"model": "a", "set": "static", "id": "2", "rouge": 0.9, "well_formed": 0},
    {"model": "a", "set": "VR", "id": "1", "rouge": 0.5, "well_formed": 1},
    {"model": "b", "set": "static", "id": "1", "rouge": 0.2, "well_formed": 0}])
SUMMARY = pd.DataFrame([{"model": "a", "set": "static", "equations": 8, "incorrect": 2, "derivations": 2,
                         "goal_reached": 1}])


def check_record(model, set_name, item, labels, goal, rouge):
    return {"model": model, "set": set_name, "id": item, "labels": labels, "goal_reached": goal, "rouge": rouge}


CHECKS = [check_record("a", "static", "1", ["reference", "incorrect"], True, 0.9),
          check_record("a", "static", "2", ["reference"], True, 0.7),
          check_record("b", "static", "1", ["incorrect", "incorrect", "valid"], False, 0.2),
          check_record("a", "VR", "1", ["reference"], True, 0.5)]


def test_results_table_has_items_interval_well_formed_and_check_shares_in_set_order():
    table = report.results_table(MEANS, SUMMARY, SCORES)
    assert list(table.columns) == ["model", "set", "items", "ROUGE-2", "well-formed", "incorrect equations",
                                   "goal reached"]
    first = table.iloc[0].to_dict()
    assert first == {"model": "a", "set": "static", "items": "2", "ROUGE-2": "90.0 [80.0, 100.0]",
                     "well-formed": "50.0%", "incorrect equations": "25.0%", "goal reached": "50.0%"}
    assert list(table["set"][table["model"] == "a"]) == ["static", "VR"]  # the paper's order, not sorted
    assert table[table["model"] == "b"].iloc[0]["ROUGE-2"] == "-"  # scored rows without a mean say so
    # scores written before the well_formed column existed: no column, nothing invented
    assert "well-formed" not in report.results_table(MEANS, SUMMARY, SCORES.drop(columns="well_formed")).columns


def test_same_items_table_compares_on_the_items_every_model_answered():
    table = report.same_items_table(CHECKS, SCORES, ["a", "b"])
    assert table.to_dict("records") == [
        {"set": "static", "model": "a", "items": 1, "ROUGE-2": "90.0", "well-formed": "100.0%",
         "incorrect equations": "50.0%", "goal reached": "100.0%"},
        {"set": "static", "model": "b", "items": 1, "ROUGE-2": "20.0", "well-formed": "0.0%",
         "incorrect equations": "66.7%", "goal reached": "0.0%"}]  # VR: b answered nothing there
    with pytest.raises(ValueError, match="no checked outputs of model\\(s\\) c; checked models: a, b"):
        report.same_items_table(CHECKS, SCORES, ["a", "c"])


def test_stage_times_and_markdown():
    stages = [report.StageRun("01_generate", "generate", None),
              report.StageRun("03_train_t5", "train_t5", rundir.data_root(),
                              meta={"started": "2026-12-02T09:00:00+00:00", "finished": "2026-12-02T09:07:30+00:00"})]
    times = report.stage_times(stages)
    assert times.to_dict("records") == [{"notebook": "01_generate", "minutes": "not run"},
                                        {"notebook": "03_train_t5", "minutes": "7.5"}]
    text = report.markdown(pd.DataFrame([{"model": "x|y", "n": 1}]))
    assert text.splitlines() == ["| model | n |", "|---|---|", "| x\\|y | 1 |"]


def published(root, stage, profile, files: dict) -> None:
    """A complete published run of ``stage`` holding ``files`` (name -> DataFrame or records)."""
    directory = root / stage / "k"
    directory.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            content.to_csv(directory / name, index=False)
        else:
            write_jsonl(directory / name, content)
    atomic_write_json(directory / "meta.json", {"started": "2026-12-02T09:00:00+00:00",
                                                "finished": "2026-12-02T09:01:00+00:00"})
    atomic_write_json(directory / "params.json", {})
    atomic_write_text(directory / rundir.COMPLETE, "done\n")
    (root / stage / profile).symlink_to("k")


def test_report_markdown_prints_the_readme_tables_and_writes_nothing(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    monkeypatch.setenv("DERIVLIB_DATA", str(root))
    published(root, "score", "p", {"means.csv": MEANS, "scores.csv": SCORES})
    published(root, "error_analysis", "p", {"summary.csv": SUMMARY, "checks.jsonl": CHECKS})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert cli.main(["report", "--profile", "p", "--build", str(tmp_path / "build"), "--markdown",
                     "--compare", "a", "b"]) == 0
    printed = capsys.readouterr().out
    assert "| 07_score | 1.0 |" in printed and "| 03_train_t5 | not run |" in printed
    assert "| a | static | 2 | 90.0 [80.0, 100.0] | 50.0% | 25.0% | 50.0% |" in printed
    assert "| static | b | 1 | 20.0 | 0.0% | 66.7% | 0.0% |" in printed
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_report_compare_errors_are_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    monkeypatch.setenv("DERIVLIB_DATA", str(root))
    assert cli.main(["report", "--profile", "p", "--compare", "a"]) == 2
    assert "--compare goes with --markdown" in capsys.readouterr().err
    assert cli.main(["report", "--profile", "p", "--markdown", "--compare", "a"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "checks.jsonl does not exist" in err
    published(root, "error_analysis", "p", {"checks.jsonl": CHECKS})
    assert cli.main(["report", "--profile", "p", "--markdown", "--compare", "a", "zz"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "checks.jsonl: no checked outputs of model(s) zz" in err
