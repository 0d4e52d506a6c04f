"""Stage paper_items: derivlib's models on the authors' released items, beside the released
outputs and the copy baseline. A tiny T5 (trained by train_t5), a LoRA adapter of the tiny
random Llama (trained by train_lora) and the same Llama in context decode 2 released items
of each set; the in-context requests are the stored GPT-4 prompts byte for byte. Tests that
need the released files use DERIVLIB_PAPER_RESULTS (the ``paper_results_dir`` fixture says
so when it is unset); the SKIPPED path runs without them."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from derivlib import baseline
from derivlib.base.files import read_jsonl
from derivlib.base.params import ParameterError, validate
from derivlib.base.vocabulary import PREDICTION_FIELDS, SETS, field
from derivlib.models import t5
from derivlib.readers import released
from derivlib.stages import paper_items, train_lora, train_t5

from test_t5 import TINY, make_sets_dir  # the same tiny T5 and synthetic sets as the T5 tests

t5.prefer_passive_threads()  # before torch loads

N_ITEMS = 2


def values(**overrides) -> dict:
    return {"t5_model": "", "lora_model": "", "in_context_model": "", "profile": "test", "workers": 1,
            "max_items": N_ITEMS, "max_new_tokens": 12, **overrides}


def test_parameters_are_checked_before_anything_runs():
    with pytest.raises(ParameterError, match="'n_shots' must be 0 to 5"):
        validate(paper_items.Params, values(n_shots=6))
    with pytest.raises(ParameterError, match="'max_items' must be >= 0"):
        validate(paper_items.Params, values(max_items=-1))
    with pytest.raises(ParameterError, match="'num_beams' must be >= 1"):
        validate(paper_items.Params, values(num_beams=0))
    with pytest.raises(ParameterError, match="'time_limit'"):
        validate(paper_items.Params, values(time_limit=0))


def test_bad_model_runs_are_refused_in_one_line(isolated_data, tmp_path):
    with pytest.raises(ParameterError, match="parameter 't5_model'.*not a complete run directory"):
        paper_items.open_run(values(t5_model=str(tmp_path / "nothing")))
    sets = make_sets_dir(tmp_path)  # a complete run, but of another stage
    with pytest.raises(ParameterError, match="parameter 'lora_model'.*not a train_lora run"):
        paper_items.open_run(values(lora_model=str(sets)))
    with pytest.raises(ValueError, match="unknown model 'no-such/model'"):
        paper_items.open_run(values(in_context_model="no-such/model"))
    assert not (isolated_data / "data" / "paper_items").exists()


def test_without_the_released_files_the_run_is_skipped(isolated_data, monkeypatch, capsys):
    monkeypatch.delenv(released.ENV, raising=False)
    run = paper_items.open_run(values())
    assert f"SKIPPED: the released items are not available, nothing is decoded. {released.DOWNLOAD_HINT}" \
        in capsys.readouterr().out
    result = paper_items.run(run)
    assert not result.available and result.figures == {} and result.note.startswith("SKIPPED")
    assert list(result.table.columns) == list(paper_items.TABLE_COLUMNS) and result.table.empty
    assert run.complete and pd.read_csv(run.path("table.csv")).empty
    assert json.loads(run.path("meta.json").read_text())["counts"] == {"skipped": 1}
    again = paper_items.open_run(values())
    assert again.complete and not paper_items.run(again).available


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_causal_lm):
    """A train_t5 run and a train_lora run (of the tiny Llama) on synthetic sets, under a
    module-wide data root."""
    root = tmp_path_factory.mktemp("paper_items")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(root / "data"))
        mp.setenv("DERIVLIB_FIGURES", str(root / "figures"))
        sets = make_sets_dir(root)
        t5_run = train_t5.open_run({"sets": str(sets), "profile": "test", **TINY, "epochs": 1,
                                    "max_train_items": 16})
        train_t5.run(t5_run)
        lora_run = train_lora.open_run({"sets": str(sets), "profile": "test", "model": str(tiny_causal_lm),
                                        "batch_size": 4, "learning_rate": 1e-2, "max_train_items": 8,
                                        "max_dev_items": 2, "eval_max_new_tokens": 8, "logging_steps": 1,
                                        "max_items": 1, "max_new_tokens": 8, "workers": 1})
        train_lora.run(lora_run)
    return root, t5_run.final, lora_run.final


@pytest.fixture(scope="module")
def decoded(paper_results_dir, models, tiny_causal_lm):
    root, t5_run, lora_run = models
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(root / "data"))
        mp.setenv("DERIVLIB_FIGURES", str(root / "figures"))
        chosen = values(t5_model=str(t5_run), lora_model=str(lora_run), in_context_model=str(tiny_causal_lm))
        run = paper_items.open_run(chosen)
        result = paper_items.run(run)
        again = paper_items.open_run(chosen)
        loaded = paper_items.run(again) if again.complete else None
    return root, run, result, loaded


@pytest.mark.slow
@pytest.mark.paper_results
def test_every_model_on_the_same_released_items(decoded, tiny_causal_lm):
    _, run, result, _ = decoded
    records = read_jsonl(run.path("predictions.jsonl"))
    assert {tuple(r) for r in records} == {PREDICTION_FIELDS}
    in_context = f"{tiny_causal_lm.name} 5-shot"
    lora = f"{tiny_causal_lm.name}-lora"
    expected = ["t5-scratch", lora, in_context, "flan-t5-large (released)", "gpt-4 (released)", baseline.MODEL_NAME]
    assert list(dict.fromkeys(r["model"] for r in records)) == expected
    ids = [f"paper-{i:03d}" for i in range(N_ITEMS)]
    for model in expected:
        for set_name in SETS:
            assert sorted(r["id"] for r in records if r["model"] == model and r["set"] == set_name) == ids, \
                (model, set_name)
    # the written sets are the released items; every row's reference is theirs
    sets = {name: read_jsonl(run.path("sets", f"{name}.jsonl")) for name in SETS}
    assert sets == {name: items[:N_ITEMS] for name, items in released.to_sets().items()}
    reference = {(name, item["id"]): item["derivation"] for name, items in sets.items() for item in items}
    assert all(r["reference"] == reference[r["set"], r["id"]] for r in records)


@pytest.mark.slow
@pytest.mark.paper_results
def test_released_and_baseline_rows_are_the_authors_outputs(decoded, gpt4_results):
    _, run, result, _ = decoded
    records = read_jsonl(run.path("predictions.jsonl"))
    authors = released.load_items(gpt4_results)
    gpt4 = {(r["set"], r["id"]): r["prediction"] for r in records if r["model"] == "gpt-4 (released)"}
    for index in range(N_ITEMS):
        for set_name in SETS:
            assert gpt4[set_name, f"paper-{index:03d}"] == authors[index][f"{set_name}_gpt-4"]
    copies = [r for r in records if r["model"] == baseline.MODEL_NAME]
    assert copies and all(r["prediction"] == baseline.copy_prompt(r["prompt"]) for r in copies)
    table = result.table
    assert list(table.columns) == list(paper_items.TABLE_COLUMNS)
    assert len(table) == 6 * len(SETS) and set(table["items"]) == {N_ITEMS}
    # pinned to the authors' own scores of the same items (their static_rouge column)
    row = table[(table["model"] == "gpt-4 (released)") & (table["set"] == "static")].iloc[0]
    assert row["rouge2"] == pytest.approx(100 * sum(a["static_rouge"] for a in authors[:N_ITEMS]) / N_ITEMS, abs=0.01)
    # copying the prompt writes reference equations only, the goal among them
    copy = table[table["model"] == baseline.MODEL_NAME]
    assert (copy["incorrect_equations"] == 0).all() and (copy["goal_reached"] == 100).all()
    assert (copy["well_formed"] == 100).all()
    for column in ("rouge2", "bleu", "gleu", "well_formed", "goal_reached"):
        assert table[column].between(0, 100).all(), column


@pytest.mark.slow
@pytest.mark.paper_results
def test_in_context_requests_are_the_stored_gpt4_prompts(decoded, gpt4_results):
    root, run, _, _ = decoded
    authors = released.load_items(gpt4_results)
    asked = {}
    for path in (root / "data" / "llm" / "cache").rglob("*.json"):
        entry = json.loads(path.read_text())
        asked.setdefault(entry["item"], []).append(entry["messages"][-1]["content"])
    for index in range(N_ITEMS):
        for set_name in SETS:
            texts = asked[f"paper-{index:03d} ({set_name})"]
            # the in-context model got GPT-4's prompt; the adapter the zero-shot template
            assert authors[index][field(set_name, "prompt")] in texts
            assert len(texts) == 2
    usage = json.loads(run.path("in_context", "usage.json").read_text())
    assert usage["prompts"] == N_ITEMS * len(SETS)


@pytest.mark.slow
@pytest.mark.paper_results
def test_the_figure_is_drawn_and_a_complete_run_loads(decoded):
    _, run, result, loaded = decoded
    path = result.figures[paper_items.FIGURE]
    assert path == run.final / "figures" / f"{paper_items.FIGURE}.png" and path.stat().st_size > 5000
    assert Image.open(path).size[0] > 1000
    wide = result.wide("rouge2")
    assert list(wide.columns) == list(SETS) and list(wide.index) == list(dict.fromkeys(result.table["model"]))
    assert loaded is not None and loaded.available
    pd.testing.assert_frame_equal(loaded.table, result.table, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.predictions, result.predictions)
    assert loaded.figures == result.figures


@pytest.mark.slow
def test_an_adapter_asked_twice_the_same_way_is_refused(models, isolated_data):
    _, _, lora_run = models
    with pytest.raises(ParameterError, match="two rows of one label"):
        paper_items.open_run(values(lora_model=str(lora_run), in_context_model=str(lora_run), n_shots=0))
    assert not (isolated_data / "data" / "paper_items").exists()
