"""Sensitivity measures, means with bootstrap intervals, the score CLI, stage ``score`` and
notebook 07_score."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import subprocess
import sys
from contextlib import redirect_stdout

import nbformat
import numpy as np
import pandas as pd
import pytest

from derivlib import metrics, scoring
from derivlib.__main__ import main as cli_main
from derivlib.base.files import write_jsonl
from derivlib.base.params import ParameterError
from derivlib.base.vocabulary import SETS, paper_item_id
from derivlib.models import t5
from derivlib.readers import released
from derivlib.stages import rundir
from derivlib.stages import score as stage

ALL_STORED = ("static", "P_m", "P_m_abs", "ratio_P_m")


def test_every_stored_score_and_derived_column_reproduced(flan_results, gpt4_results):
    for path in (flan_results, gpt4_results):
        items = json.loads(path.read_text())
        model = released.model_name(path)
        ours = scoring.sensitivity_items(released.to_predictions(path)).xs(model, level="model")
        columns = released.stored_columns(items)
        # 3 static + 4 perturbations x 3 metrics x (P_m, P_m_abs, ratio_P_m)
        assert len(columns) == 3 + 4 * 3 * 3
        for column in columns:
            stored = np.array([item[column] for item in items], dtype=float)
            assert np.isfinite(stored).all(), column
            values = ours.loc[[paper_item_id(i) for i in range(len(items))], column].to_numpy()
            assert np.abs(values - stored).max() <= 1e-9, (model, column)


def test_released_files_have_no_zero_ratio_denominator(flan_results, gpt4_results):
    # ratio_P_m = M(sP, s) / M(rP, r): no released item has M(rP, r) = 0, so the files say nothing
    # about that case; derivlib gives NaN (the authors' division would raise).
    for path in (flan_results, gpt4_results):
        ours = scoring.sensitivity_items(released.to_predictions(path))
        ratios = ours[[c for c in ours if c.startswith("ratio_")]]
        assert np.isfinite(ratios.to_numpy()).all()


def records_for(model, item_id, static, perturbed):
    """static/perturbed: (prediction, reference)."""
    out = [{"id": item_id, "model": model, "set": "static", "prompt": "", "srepr_derivation": [],
            "prediction": static[0], "reference": static[1]}]
    for set_name, (prediction, reference) in perturbed.items():
        out.append({"id": item_id, "model": model, "set": set_name, "prompt": "", "srepr_derivation": [],
                    "prediction": prediction, "reference": reference})
    return out


def test_sensitivity_definitions_on_a_hand_made_item():
    s, r = "x = y + z and y = z", "x = y + z and y = z"
    sP, rP = "x = y and y = z", "a = y + z and y = z"
    frame = scoring.sensitivity_items(records_for("m", "i0", (s, r), {"VR": (sP, rP)}))
    M = lambda p, q: metrics.score_pair(p, q, ["gleu"])["gleu"]  # noqa: E731
    row = frame.loc[("m", "i0")]
    assert row["VR_gleu"] == pytest.approx(M(s, r) - M(sP, rP))
    assert row["VR_gleu_abs"] == pytest.approx(M(rP, r) - M(sP, s))
    assert row["ratio_VR_gleu"] == pytest.approx(M(sP, s) / M(rP, r))
    assert row["norm_VR_gleu_abs"] == pytest.approx(row["VR_gleu_abs"] / M(rP, r))
    assert "EE_gleu" not in frame  # sets absent from the records are left out


def test_zero_denominator_ratio_is_nan_and_norm_uses_the_mean():
    # The perturbed reference shares no bigram with the static one: ROUGE-2 M(rP, r) = 0.
    records = records_for("m", "a", ("x = y", "x = y"), {"VR": ("u = v", "u = v")})
    records += records_for("m", "b", ("x = y + z", "x = y + z"), {"VR": ("x = y + w", "x = y + w")})
    frame = scoring.sensitivity_items(records, ["rouge"])
    assert math.isnan(frame.loc[("m", "a"), "ratio_VR_rouge"])
    mean_shift = np.mean([metrics.score_pair("u = v", "x = y")["rouge"],
                          metrics.score_pair("x = y + w", "x = y + z")["rouge"]])
    assert frame.loc[("m", "b"), "norm_VR_rouge_abs"] == pytest.approx(
        frame.loc[("m", "b"), "VR_rouge_abs"] / mean_shift)


def test_unmatched_perturbed_items_are_left_out():
    records = records_for("m", "a", ("x = y", "x = y"), {"SR": ("x = y", "x = y")})
    records.append({"id": "no-static", "model": "m", "set": "VR", "prompt": "", "srepr_derivation": [],
                    "prediction": "a", "reference": "a"})
    frame = scoring.sensitivity_items(records)
    assert list(frame.index) == [("m", "a")]


def test_means_table_bootstrap_is_seeded_and_brackets_the_mean(flan_results):
    scores = scoring.score_records(released.to_predictions(flan_results))
    first = scoring.means_table(scores, n_bootstrap=200, seed=3)
    again = scoring.means_table(scores, n_bootstrap=200, seed=3)
    other = scoring.means_table(scores, n_bootstrap=200, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    assert (first["ci_low"] <= first["mean"]).all() and (first["mean"] <= first["ci_high"]).all()
    static_rouge = first[(first["set"] == "static") & (first["metric"] == "rouge")]
    assert static_rouge["mean"].iloc[0] == pytest.approx(91.17, abs=0.005)  # PAPER.md §5
    # One group's interval does not depend on which other groups were scored.
    alone = scoring.means_table(scores[scores["set"] == "SR"], n_bootstrap=200, seed=3)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  first[first["set"] == "SR"].reset_index(drop=True), check_categorical=False)


def test_duplicate_records_are_an_error():
    records = records_for("m", "a", ("x", "x"), {}) * 2
    with pytest.raises(ValueError, match="duplicate prediction record.*'a'"):
        scoring.score_records(records)


def run_cli(*argv) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = cli_main(list(argv))
    return code, buffer.getvalue()


def test_cli_csv_columns_and_values(gpt4_results):
    code, out = run_cli("score", "--results", str(gpt4_results), "--format", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out))
    assert list(table.columns) == ["model", "set", "metric", "mean"]
    assert len(table) == 5 * 3
    assert set(table["set"]) == set(SETS) and set(table["metric"]) == {"rouge", "bleu", "gleu"}
    static_rouge = table[(table["set"] == "static") & (table["metric"] == "rouge")]["mean"].iloc[0]
    assert static_rouge == pytest.approx(82.84, abs=0.005)
    items = json.loads(gpt4_results.read_text())
    for metric in ("rouge", "bleu", "gleu"):
        row = table[(table["set"] == "static") & (table["metric"] == metric)]["mean"].iloc[0]
        assert row == pytest.approx(100 * np.mean([i[f"static_{metric}"] for i in items]), abs=1e-9)


def test_cli_reads_our_predictions_like_the_released_file(gpt4_results, tmp_path):
    records = released.to_predictions(gpt4_results)
    write_jsonl(tmp_path / "predictions.jsonl", records)
    _, from_json = run_cli("score", "--results", str(gpt4_results), "--format", "csv")
    _, from_dir = run_cli("score", "--results", str(tmp_path), "--format", "csv")
    assert from_json == from_dir
    code, table = run_cli("score", "--results", str(tmp_path), "--sensitivity")
    assert code == 0 and "gpt-4" in table and "ratio_P_m" in table


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    assert cli_main(["score", "--results", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "model": "m", "set": "XX", "reference": "", "prediction": ""}\n')
    assert cli_main(["score", "--results", str(bad)]) == 2
    assert "set 'XX'" in capsys.readouterr().err


def test_cli_model_name_relabels_every_results(gpt4_results, flan_results, tmp_path):
    _, renamed = run_cli("score", "--results", str(gpt4_results), "--model-name", "mine", "--format", "csv")
    _, plain = run_cli("score", "--results", str(gpt4_results), "--format", "csv")
    assert renamed == plain.replace("gpt-4,", "mine,")
    _, both = run_cli("score", "--results", str(gpt4_results), "--results", str(flan_results),
                      "--model-name", "a", "--model-name", "b", "--format", "csv")
    assert set(pd.read_csv(io.StringIO(both))["model"]) == {"a", "b"}


def test_cli_model_name_count_must_fit_the_results(gpt4_results, capsys):
    argv = ["score", "--results", str(gpt4_results), "--results", str(gpt4_results)]
    assert cli_main(argv + ["--model-name", "a", "--model-name", "b", "--model-name", "c"]) == 2
    assert "--model-name given 3 times for 2 --results" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- stage 06

@dataclasses.dataclass(frozen=True)
class FixtureParams:
    name: str = "fixture"
    profile: str = "fixture"


def derivation_text(*equations: str) -> str:
    return " and ".join(equations)


def fixture_records(n_items: int = 4, model: str = "fixture-model") -> list[dict]:
    """Hand-written prediction records: every item in static, VR and EE, the model's outputs
    partly right, so every measure has something to measure."""
    records = []
    for index in range(n_items):
        v = "xyzw"[index]
        static = derivation_text(f"f{{({v})}} = {v}^{{2}}", f"\\frac{{d}}{{d {v}}} f{{({v})}} = 2 {v}")
        renamed = static.replace(v, "a")
        swapped = derivation_text(f"{v}^{{2}} = f{{({v})}}", f"2 {v} = \\frac{{d}}{{d {v}}} f{{({v})}}")
        outputs = {"static": static if index % 2 else static.replace("2 ", "3 "),
                   "VR": renamed.replace("2 ", "4 "), "EE": static}
        for set_name, reference in (("static", static), ("VR", renamed), ("EE", swapped)):
            records.append({"id": f"item-{index}", "model": model, "set": set_name, "prompt": "",
                            "reference": reference, "prediction": outputs[set_name], "srepr_derivation": []})
    return records


def fixture_predictions_run(records: list[dict], name: str = "fixture") -> str:
    """A complete predictions run, published as ``predict_t5/<name>`` as 04 would publish it."""
    run = rundir.start_run("predict_t5", FixtureParams(name=name, profile=name))
    write_jsonl(run.path("predictions.jsonl"), records)
    run.finish(records=len(records))
    return f"predict_t5/{name}"


def test_score_stage_runs_then_loads(isolated_data, monkeypatch):
    monkeypatch.delenv(released.ENV, raising=False)
    records = fixture_records()
    records[-1]["prediction"] = records[-1]["prediction"][:-4]  # cut off: not well-formed
    namespace = {"predictions": [fixture_predictions_run(records)], "n_bootstrap": 50, "profile": "tiny"}
    run = stage.open_run(namespace)
    result = stage.run(run)
    assert run.complete and run.dir == run.final
    assert len(result.scores) == len(records)
    assert list(result.scores["well_formed"]) == [int(t5.is_well_formed(r["prediction"].strip())) for r in records]
    assert result.scores["well_formed"].sum() == len(records) - 1
    assert set(result.means["metric"]) == set(metrics.PAPER_METRICS + metrics.LATEX_METRICS)
    assert list(result.means["set"].cat.categories) == list(SETS)
    expected = scoring.sensitivity_items(records, stage.Params().metrics)
    pd.testing.assert_frame_equal(result.sensitivity, expected)
    assert set(result.figures) == {"score_drops"} and result.figures["score_drops"].exists()
    assert (isolated_data / "figures" / "tiny" / "score_drops.png").exists()
    assert {"params.json", "meta.json", "scores.csv", "means.csv", "sensitivity.csv", "COMPLETE"} <= \
        {p.name for p in run.dir.iterdir()}
    assert set(result.sensitivity_means().index.get_level_values("perturbation")) == {"VR", "EE"}
    assert result.means_wide().shape[1] == 3  # static, VR, EE

    again = stage.run(stage.open_run(namespace))  # complete: loads
    pd.testing.assert_frame_equal(again.scores, result.scores)
    pd.testing.assert_frame_equal(again.means, result.means)
    pd.testing.assert_frame_equal(again.sensitivity, result.sensitivity, check_exact=False)
    assert again.figures == result.figures


def test_score_stage_writes_a_chosen_directory(isolated_data, monkeypatch, tmp_path):
    monkeypatch.delenv(released.ENV, raising=False)
    namespace = {"predictions": [fixture_predictions_run(fixture_records(2))], "n_bootstrap": 0,
                 "metrics": ["rouge"], "profile": "tiny"}
    run = stage.open_run(namespace, out=tmp_path / "scored")
    result = stage.run(run)
    assert (tmp_path / "scored" / "COMPLETE").exists() and list(result.means["metric"].unique()) == ["rouge"]
    assert result.means["ci_low"].isna().all()  # no bootstrap asked for
    assert not (isolated_data / "data" / "score" / "tiny").exists()  # a chosen directory is not published


def test_score_stage_names_bad_parameters(isolated_data):
    with pytest.raises(ParameterError, match="predict_t5/nowhere"):
        stage.open_run({"predictions": ["predict_t5/nowhere"], "profile": "tiny"})
    with pytest.raises(ParameterError, match="n_bootstrp"):
        stage.open_run({"predictions": [], "n_bootstrp": 3})
    with pytest.raises(ParameterError, match="'metrics': unknown \\['rogue'\\]"):
        stage.open_run({"predictions": [], "metrics": ["rogue"]})
    with pytest.raises(ParameterError, match="nothing to score"):
        stage.open_run({"predictions": [], "include_paper_results": False})


def test_score_stage_with_the_released_outputs(isolated_data, paper_results_dir):
    namespace = {"predictions": [fixture_predictions_run(fixture_records(2))], "n_bootstrap": 20,
                 "metrics": list(metrics.PAPER_METRICS), "profile": "tiny"}
    result = stage.run(stage.open_run(namespace))
    assert set(result.scores["model"]) == {"fixture-model", "flan-t5-large", "gpt-4"}
    static_rouge = result.means[(result.means["set"] == "static") & (result.means["metric"] == "rouge")]
    assert static_rouge.set_index("model").loc["gpt-4", "mean"] == pytest.approx(82.84, abs=0.005)


@pytest.mark.slow
def test_notebook_06_runs_with_tiny_profile(isolated_data, tmp_path, monkeypatch):
    monkeypatch.delenv(released.ENV, raising=False)
    upstream = fixture_predictions_run(fixture_records())
    out = tmp_path / "06.ipynb"
    env_code = (f"import os; os.environ['DERIVLIB_DATA']={str(isolated_data / 'data')!r}; "
                f"os.environ['DERIVLIB_FIGURES']={str(isolated_data / 'figures')!r}; "
                "from derivlib.__main__ import main; import sys; "
                f"sys.exit(main(['notebook', '07_score', '--profile', 'tiny', '--out', {str(out)!r}, "
                f"'-p', 'predictions=[\"{upstream}\"]']))")
    done = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = json.dumps(nbformat.read(out, 4).cells[-1].outputs)
    assert "image/png" in text
    means = pd.read_csv(isolated_data / "data" / "score" / "tiny" / "means.csv")
    assert set(means["model"]) == {"fixture-model"}
