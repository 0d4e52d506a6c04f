"""The authors' released results read as prediction records (``readers.released``, through
``readers.runs.load_predictions`` alike) and stage ``paper_outputs`` (08, rescoring them)."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from derivlib.__main__ import main as cli_main
from derivlib.base.files import write_jsonl
from derivlib.base.vocabulary import PREDICTION_FIELDS, SETS
from derivlib.readers import released, runs
from derivlib.stages import paper_outputs as stage


def test_to_predictions_maps_every_set(gpt4_results):
    items = json.loads(gpt4_results.read_text())
    records = released.to_predictions(gpt4_results)
    assert len(records) == len(SETS) * len(items)
    assert all(set(r) == set(PREDICTION_FIELDS) for r in records)
    by_key = {(r["set"], r["id"]): r for r in records}
    vr = by_key[("VR", "paper-007")]
    assert vr["model"] == "gpt-4"
    assert vr["reference"] == items[7]["VR derivation"] and vr["prediction"] == items[7]["VR_gpt-4"]
    assert vr["srepr_derivation"] == items[7]["VR srepr_derivation"]
    static = by_key[("static", "paper-007")]
    assert static["reference"] == items[7]["derivation"] and static["prediction"] == items[7]["static_gpt-4"]


def test_the_model_is_named_by_the_file_content(gpt4_results, tmp_path):
    renamed = tmp_path / "downloaded.json"
    renamed.write_bytes(gpt4_results.read_bytes())
    assert released.model_name(renamed) == "gpt-4"
    assert {r["model"] for r in released.to_predictions(renamed, "mine")} == {"mine"}


def test_load_predictions_reads_json_jsonl_and_run_dir_alike(flan_results, tmp_path):
    records = released.to_predictions(flan_results)
    write_jsonl(tmp_path / "predictions.jsonl", records)
    assert runs.load_predictions(flan_results) == records
    assert runs.load_predictions(tmp_path) == records
    assert runs.load_predictions(tmp_path / "predictions.jsonl") == records
    assert {r["model"] for r in runs.load_predictions(tmp_path, "renamed")} == {"renamed"}


def test_load_predictions_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions.jsonl"):
        runs.load_predictions(tmp_path)
    (tmp_path / "p.jsonl").write_text('{"id": "a", "model": "m", "set": "static"}\n')
    with pytest.raises(ValueError, match="line 1 lacks reference, prediction"):
        runs.load_predictions(tmp_path / "p.jsonl")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="x.json: item 0 is not an authors' item"):
        runs.load_predictions(tmp_path / "x.json")


def test_rescore_matches_every_stored_column(flan_results, gpt4_results):
    for path in (flan_results, gpt4_results):
        comparison, _, _ = stage.rescore(path)
        assert len(comparison) == 39
        assert comparison["max_abs_difference"].max() <= 1e-9


def test_stage_08_rescores_and_reloads(isolated_data, paper_results_dir):
    run = stage.open_run({"n_bootstrap": 20, "profile": "tiny"})
    result = stage.run(run)
    assert result.available
    static = result.static_means()
    assert static.loc["flan-t5-large", "rouge"] == pytest.approx(91.17)
    assert static.loc["gpt-4", "rouge"] == pytest.approx(82.84)
    assert (result.summary().to_numpy() <= 1e-9).all()
    again = stage.run(stage.open_run({"n_bootstrap": 20, "profile": "tiny"}))
    assert again.available and len(again.comparison) == len(result.comparison)


def test_stage_08_without_released_files_says_so_and_completes(isolated_data, monkeypatch, capsys):
    monkeypatch.delenv(released.ENV, raising=False)
    run = stage.open_run({"n_bootstrap": 20, "profile": "tiny"})
    assert "SKIPPED" in capsys.readouterr().out
    result = stage.run(run)
    assert not result.available and run.complete
    assert "skipped" in result.summary() and "DERIVLIB_PAPER_RESULTS" in result.summary()


def test_a_file_named_for_one_model_holding_another_is_read_by_its_keys(gpt4_results, flan_results, tmp_path, capsys):
    """The authors' third file, chatgpt_results.json, holds ``static_gpt-3.5-turbo`` and so on: its
    shape here is the GPT-4 file's, the model keys renamed."""
    items = json.loads(gpt4_results.read_text())
    renamed = [{key.replace("_gpt-4", "_gpt-3.5-turbo"): value for key, value in item.items()} for item in items]
    assert not any(key.endswith("_gpt-4") for item in renamed for key in item)
    chatgpt = tmp_path / "chatgpt_results.json"
    chatgpt.write_text(json.dumps(renamed))
    for name in ("gpt-4_results.json", "flan-t5-large_results.json"):
        (tmp_path / name).write_bytes((gpt4_results if name.startswith("gpt") else flan_results).read_bytes())
    assert released.results_files(tmp_path) == {"gpt-3.5-turbo": chatgpt, "gpt-4": tmp_path / "gpt-4_results.json",
                                                "flan-t5-large": tmp_path / "flan-t5-large_results.json"}
    comparison, _, _ = stage.rescore(chatgpt)
    assert len(comparison) == 39 and comparison["max_abs_difference"].max() <= 1e-9
    assert cli_main(["score", "--results", str(chatgpt), "--format", "csv"]) == 0
    scores = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(scores["model"]) == {"gpt-3.5-turbo"} and set(scores["set"]) == set(SETS)
    stored = np.mean([item["static_rouge"] for item in items])
    assert abs(scores.query("set == 'static' and metric == 'rouge'")["mean"].item() - 100 * stored) <= 1e-7
    assert cli_main(["check", "--results", str(chatgpt), "--format", "csv"]) == 0
    labels = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(labels["model"]) == {"gpt-3.5-turbo"} and labels["equations"].sum() == 2377
