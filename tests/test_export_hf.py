"""`export hf`: ``datasets.load_dataset`` on the exported directory gives the run's rows, the card
declares configs, splits, features, licence and size and says how the data was made; and
`export steps`: PRM800K-shaped step labels that are the check's own."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

import derivlib
from derivlib import __main__ as cli
from derivlib import check
from derivlib.base.files import read_jsonl, write_jsonl
from derivlib.base.vocabulary import SETS
from derivlib.exporters import common, hf, steps
from derivlib.readers import runs

from test_export_lmeval import build_sets_run


@pytest.fixture(scope="module")
def sets_run(tmp_path_factory) -> Path:
    return build_sets_run(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def dataset_dir(sets_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "derivlib-hf"
    assert cli.main(["export", "hf", "--sets", str(sets_run), "--out", str(out), "--repo-id", "me/derivations"]) == 0
    return out


def _decoded(row: dict) -> dict:
    return {k: json.loads(v) if k in hf.JSON_FIELDS else v for k, v in row.items() if v is not None}


def test_load_dataset_gives_the_rows_of_the_run(sets_run, dataset_dir, tmp_path):
    loaded = datasets.load_dataset(str(dataset_dir), "static", cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "validation", "test"}
    for split, name in hf.SPLITS["static"].items():
        assert [_decoded(r) for r in loaded[split]] == read_jsonl(sets_run / f"{name}.jsonl"), split
    for name in SETS[1:]:
        test = datasets.load_dataset(str(dataset_dir), name, split="test", cache_dir=str(tmp_path / "cache"))
        assert [_decoded(r) for r in test] == read_jsonl(sets_run / f"{name}.jsonl"), name
    assert loaded["test"].features["srepr_derivation"].dtype == "string"  # JSON text: any Arrow reads it


def test_the_card_declares_configs_splits_features_licence_size(sets_run, dataset_dir):
    card = DatasetCard.load(dataset_dir / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["size_categories"] == "n<1K"
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == set(SETS) and configs["static"].get("default") is True
    assert [f["split"] for f in configs["static"]["data_files"]] == ["train", "validation", "test"]
    infos = {i["config_name"]: i for i in data["dataset_info"]}
    sizes = {name: len(read_jsonl(sets_run / f"{name}.jsonl")) for name in SETS}
    for name in SETS:
        (test,) = [s for s in infos[name]["splits"] if s["name"] == "test"]
        assert test["num_examples"] == sizes[name] and test["num_bytes"] > 0
    assert {f["name"] for f in infos["VR"]["features"]} >= {"id", "prompt", "derivation", "srepr_derivation", "renaming"}
    text = card.text
    key = json.loads((sets_run / "meta.json").read_text())["key"]
    for needed in (f"derivlib {derivlib.__version__}", f"Sets run key `{key}`", "Split seed 3", '"n_static": 6',
                   "**VR**", "**EE**", "**AG**", "**SR**", "hf upload me/derivations . --repo-type dataset",
                   "load_dataset(\"me/derivations\", \"static\")", "2307.09998"):
        assert needed in text, needed
    assert json.loads((dataset_dir / common.MANIFEST).read_text())["sets_run_key"] == key


def test_generator_parameters_come_from_the_upstream_generate_run(sets_run, tmp_path):
    """A sets run built from a generate run directory names that run's parameters."""
    generated = tmp_path / "generate-run"
    generated.mkdir()
    (generated / "params.json").write_text(json.dumps({"n_derivations": 70, "seed": 11, "arity_weights": {"1": 50}}))
    meta = json.loads((sets_run / "meta.json").read_text())
    run = common.read_sets_run(sets_run)
    run.meta = {**meta, "upstream": {"derivations": str(generated)}, "upstream_keys": {"derivations": "abc123"}}
    text = hf.card(run, hf.configs(run)).text
    assert "generate run of key `abc123`" in text and '"n_derivations": 70' in text and '"seed": 11' in text


def test_an_export_is_written_all_at_once_and_never_over_another(sets_run, dataset_dir, tmp_path, capsys):
    before = {p: p.read_bytes() for p in dataset_dir.rglob("*") if p.is_file()}
    assert cli.main(["export", "hf", "--sets", str(sets_run), "--out", str(dataset_dir), "--repo-id", "me/derivations"]) == 0
    assert "already holds this export" in capsys.readouterr().out
    assert cli.main(["export", "hf", "--sets", str(sets_run), "--out", str(dataset_dir)]) == 2
    assert "holds a different export (repo_id" in capsys.readouterr().err
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(dataset_dir)]) == 2
    assert "holds a different export (kind" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in dataset_dir.rglob("*") if p.is_file()} == before
    failing = tmp_path / "failing"

    def write(directory, final):
        (directory / "half.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        common.write_export(failing, {"kind": "x"}, write)
    assert not failing.exists() and not list(tmp_path.glob(".*partial*"))


# ----------------------------------------------------------------------------------- step labels

def _records(sets_run: Path) -> list[dict]:
    items = read_jsonl(sets_run / "static.jsonl")[:3]
    wrong = items[1]["derivation"].split(" and ")
    wrong[2] = wrong[2].rsplit(" = ", 1)[0] + " = 7 q"
    predictions = [items[0]["derivation"], " and ".join(wrong), "\\frac{ = and " + items[2]["derivation"]]
    return [{"id": i["id"], "model": "m", "set": "static", "prompt": i["prompt"], "reference": i["derivation"],
             "prediction": p, "srepr_derivation": i["srepr_derivation"]} for i, p in zip(items, predictions)]


def test_step_labels_are_the_checks_ratings_in_prm800k_shape(sets_run, tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    write_jsonl(predictions, _records(sets_run))
    out = tmp_path / "steps.jsonl"
    assert cli.main(["export", "steps", "--results", str(predictions), "--out", str(out), "--workers", "0"]) == 0
    assert "wrote 3 step-labelled derivations" in capsys.readouterr().out
    written = read_jsonl(out)
    checks = check.check_records(runs.load_predictions(predictions))
    for record, checked in zip(written, checks):
        assert record["ratings"] == checked.ratings and record["labels"] == checked.labels
        assert record["first_wrong_step"] == checked.first_wrong_step
        assert [s["completions"][0]["rating"] for s in record["label"]["steps"]] == checked.ratings
        assert [s["completions"][0]["text"] for s in record["label"]["steps"]] == record["question"]["pre_generated_steps"]
        assert all(s["chosen_completion"] == 0 and s["human_completion"] is None for s in record["label"]["steps"])
        assert set(r for r in record["ratings"]) <= {1, 0, -1, None}
    perfect, wrong, unreadable = written
    assert perfect["label"]["finish_reason"] == "solution" and perfect["first_wrong_step"] is None
    assert set(perfect["ratings"]) == {1}
    assert wrong["label"]["finish_reason"] == "found_error" and wrong["first_wrong_step"] == 2
    assert wrong["ratings"][2] == -1 and wrong["first_wrong_step_determined"] is True
    assert unreadable["ratings"][0] is None and unreadable["label"]["steps"][0]["completions"][0]["flagged"] is True
    assert perfect["question"]["ground_truth_answer"] == perfect["question"]["ground_truth_solution"].split(" and ")[-1]
    assert cli.main(["export", "steps", "--results", str(predictions), "--out", str(predictions)]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and "overwritten" in err
    assert steps.LABELER.startswith("derivlib.check ")
