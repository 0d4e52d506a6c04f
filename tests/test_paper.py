"""Reading the authors' released results as prediction records, and stage 08 (rescoring them)."""
from __future__ import annotations

import json

import pytest

from derivlib import config, paper


def test_to_predictions_maps_every_set(gpt4_results):
    items = json.loads(gpt4_results.read_text())
    records = paper.to_predictions(gpt4_results)
    assert len(records) == 5 * len(items)
    assert all(set(r) == set(paper.PREDICTION_FIELDS) for r in records)
    by_key = {(r["set"], r["id"]): r for r in records}
    vr = by_key[("VR", "paper-007")]
    assert vr["model"] == "gpt-4"
    assert vr["reference"] == items[7]["VR derivation"] and vr["prediction"] == items[7]["VR_gpt-4"]
    assert vr["srepr_derivation"] == items[7]["VR srepr_derivation"]
    static = by_key[("static", "paper-007")]
    assert static["reference"] == items[7]["derivation"] and static["prediction"] == items[7]["static_gpt-4"]


def test_load_predictions_reads_json_jsonl_and_run_dir_alike(flan_results, tmp_path):
    records = paper.to_predictions(flan_results)
    config.write_jsonl(tmp_path / "predictions.jsonl", records)
    assert paper.load_predictions(flan_results) == records
    assert paper.load_predictions(tmp_path) == records
    assert paper.load_predictions(tmp_path / "predictions.jsonl") == records


def test_load_predictions_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions.jsonl"):
        paper.load_predictions(tmp_path)
    (tmp_path / "p.jsonl").write_text('{"id": "a", "model": "m", "set": "static"}\n')
    with pytest.raises(ValueError, match="record 1 lacks reference, prediction"):
        paper.load_predictions(tmp_path / "p.jsonl")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an authors' results file"):
        paper.load_predictions(tmp_path / "x.json")


def test_rescore_matches_every_stored_column(flan_results, gpt4_results):
    for path in (flan_results, gpt4_results):
        comparison, _, _ = paper.rescore(path)
        assert len(comparison) == 39
        assert comparison["max_abs_difference"].max() <= 1e-9


def test_stage_08_rescores_and_reloads(isolated_data, paper_results_dir):
    run = paper.open_run({"n_bootstrap": 20, "profile": "tiny"})
    result = paper.paper_outputs_stage(run)
    assert result.available
    static = result.static_means()
    assert static.loc["flan-t5-large", "rouge"] == pytest.approx(91.17)
    assert static.loc["gpt-4", "rouge"] == pytest.approx(82.84)
    assert (result.summary().to_numpy() <= 1e-9).all()
    again = paper.paper_outputs_stage(paper.open_run({"n_bootstrap": 20, "profile": "tiny"}))
    assert again.available and len(again.comparison) == len(result.comparison)


def test_stage_08_without_released_files_says_so_and_completes(isolated_data, monkeypatch, capsys):
    monkeypatch.delenv(paper.ENV, raising=False)
    run = paper.open_run({"n_bootstrap": 20, "profile": "tiny"})
    assert "SKIPPED" in capsys.readouterr().out
    result = paper.paper_outputs_stage(run)
    assert not result.available and run.complete
    assert "skipped" in result.summary() and "DERIVLIB_PAPER_RESULTS" in result.summary()
