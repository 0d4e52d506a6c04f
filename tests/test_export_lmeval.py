"""`export lm-eval`: the task directory (files, YAML, derivlib's own 5-shot prompts), its
hooks, refusals that write nothing, the harness's own loader; the reader of the harness's
``--log_samples`` output; and (slow) the real ``lm_eval`` run against a tiny local HF model,
whose aggregated metrics equal derivlib's ``score`` and ``check`` of the same logged samples."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import derivlib
from derivlib import __main__ as cli
from derivlib import check, fewshot, metrics, scoring
from derivlib.base.files import read_jsonl, write_jsonl
from derivlib.base.vocabulary import SETS
from derivlib.exporters import common, harness_hooks
from derivlib.models import llm
from derivlib.readers import harness, runs
from derivlib.stages import prompt_llm, rundir

import handmade
from llm_support import Served

REPO = Path(__file__).resolve().parent.parent
BUILD_SETS = ["--seed", "3", "--n-train", "30", "--n-static", "6", "--n-vr", "6", "--n-ee", "6", "--n-ag", "4",
              "--n-sr", "6", "--verify", "false"]


def build_sets_run(directory: Path) -> Path:
    """A complete sets run (build-sets on hand-made derivations, about 3 s)."""
    derivations = directory / "derivations.jsonl"
    write_jsonl(derivations, handmade.records(40) + handmade.records(30, handmade.no_evaluation_chain, prefix="p"))
    out = directory / "sets"
    assert cli.main(["build-sets", "--derivations", str(derivations), "--out", str(out), *BUILD_SETS]) == 0
    return out


@pytest.fixture(scope="module")
def sets_run(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("lmeval")
    return build_sets_run(directory)


@pytest.fixture(scope="module")
def tasks(sets_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tasks") / "derivlib_tasks"
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(out)]) == 0
    return out


def _yaml(path: Path) -> dict:
    # The harness's !function tag, read as its text.
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda l, node: f"!function {l.construct_scalar(node)}")
    return yaml.load(path.read_text(), Loader=loader)


# ----------------------------------------------------------------------------------- the directory

def test_one_task_per_set_in_two_variants_and_two_groups(tasks):
    names = {p.stem for p in tasks.glob("*.yaml")}
    expected = {harness.task_name(s, k) for s in SETS for k in (0, 5)} | {"derivlib", "derivlib_5shot"}
    assert names == expected
    assert {"derivlib_static", "derivlib_vr", "derivlib_ee", "derivlib_ag", "derivlib_sr"} <= names
    group = _yaml(tasks / "derivlib.yaml")
    assert group["task"] == [harness.task_name(s) for s in SETS]
    assert {m["metric"] for m in group["aggregate_metric_list"]} == {"rouge2", "bleu", "gleu", "goal_reached",
                                                                     "with_wrong_step"}
    assert (tasks / "utils.py").read_text().count("from derivlib.exporters.harness_hooks import") == 1


def test_task_yaml_json_data_by_absolute_path_generate_until_aggregations_version(tasks):
    task = _yaml(tasks / "derivlib_vr_5shot.yaml")
    shared = _yaml(tasks / task["include"])
    assert shared["dataset_path"] == "json" and shared["output_type"] == "generate_until"
    data_file = Path(task["dataset_kwargs"]["data_files"]["test"])
    assert data_file.is_absolute() and data_file == tasks.resolve() / "data" / "VR.jsonl"
    assert task["doc_to_text"] == "few_shot" and shared["num_fewshot"] == 0
    until = shared["generation_kwargs"]["until"]
    assert "\nPrompt:" in until and "\n\n" not in until and len(until) <= 4  # chat endpoints take 4 stops
    assert shared["process_results"] == "!function utils.process_results"
    declared = {m["metric"]: m for m in shared["metric_list"]}
    assert set(declared) == set(harness_hooks.METRICS)
    assert all("aggregation" in m and "higher_is_better" in m for m in declared.values())
    assert declared["incorrect_share"]["aggregation"] == "!function utils.pooled_share"
    assert declared["first_wrong_step"]["aggregation"] == "!function utils.mean_present"
    assert shared["metadata"]["version"] == derivlib.__version__
    manifest = json.loads((tasks / common.MANIFEST).read_text())
    assert manifest["kind"] == "lm-eval" and manifest["seed"] == prompt_llm.Params().seed


def test_five_shot_prompts_are_the_prompts_notebook_05_sends(tasks, sets_run):
    """Same exemplars (derivlib's draw, 05's seed), same template, byte for byte."""
    train, tests = runs.load_prompting_sets(sets_run)
    params = prompt_llm.Params()
    queries = fewshot.build_queries(train, tests, params.n_shots, params.seed)
    sent = {(q.set, q.id): q.request.messages[-1]["content"] for q in queries}
    zero = {(q.set, q.id): q.request.messages[-1]["content"] for q in fewshot.build_queries(train, tests, 0, 0)}
    for set_name in SETS:
        rows = read_jsonl(tasks / "data" / f"{set_name}.jsonl")
        assert [r["id"] for r in rows] == [i["id"] for i in tests[set_name]]
        for row in rows:
            assert row["few_shot"] == sent[(set_name, row["id"])]
            assert row["zero_shot"] == zero[(set_name, row["id"])]
            assert json.loads(row["srepr_derivation"]) == next(
                i["srepr_derivation"] for i in tests[set_name] if i["id"] == row["id"])
    assert llm.user_message("x")[-1]["content"] == "x"


def test_process_results_scores_and_checks_with_derivlib(tasks):
    row = read_jsonl(tasks / "data" / "static.jsonl")[0]
    perfect = harness_hooks.process_results(row, [f"Derivation: {row['derivation']}"])
    n = len(row["derivation"].split(" and "))
    assert {k: pytest.approx(v) for k, v in perfect.items() if k in harness_hooks.MEAN_METRICS[:4]} == {
        "rouge2": 1.0, "bleu": 1.0, "gleu": 1.0, "goal_reached": 1.0}
    assert perfect["incorrect_share"] == [0, n]
    assert perfect["first_wrong_step"] is None and perfect["with_wrong_step"] == 0.0
    wrong = row["derivation"].rsplit(" = ", 1)[0] + " = 7 q"
    got = harness_hooks.process_results(row, [wrong])
    expected = check.check_derivation(wrong, json.loads(row["srepr_derivation"]), seed=0)
    assert got["incorrect_share"] == [expected.labels.count("incorrect"), len(expected.labels)]
    assert got["incorrect_share"][0] >= 1 and got["goal_reached"] == 0.0
    assert got["first_wrong_step"] == expected.first_wrong_step == expected.labels.index("incorrect")
    assert got["with_wrong_step"] == 1.0
    assert got["rouge2"] == metrics.score_pair(wrong, row["derivation"])["rouge"]
    assert harness_hooks.pooled_share([[1, 4], [0, 0], [2, 4]]) == 3 / 8
    assert harness_hooks.pooled_share([]) == 0.0
    assert harness_hooks.mean_present([None, 2, 4]) == 3.0 and math.isnan(harness_hooks.mean_present([None]))


def test_the_harness_loader_accepts_every_task(tasks, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval", reason="the harness extra: pip install -e '.[harness]' (make setup does)")
    from lm_eval.tasks import TaskManager  # the optional harness, needed by this test only

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # any directory
    manager = TaskManager(include_path=str(tasks), include_defaults=False)
    assert set(manager.all_tasks) == {p.stem for p in tasks.glob("*.yaml")}
    loaded = manager.load(["derivlib", "derivlib_5shot"])
    built = {t.config.task: t for t in loaded["tasks"].values()}
    assert set(built) == {harness.task_name(s, k) for s in SETS for k in (0, 5)}
    static = built["derivlib_static_5shot"]
    doc = static.eval_docs[0]
    assert static.doc_to_text(doc) == doc["few_shot"] and static.doc_to_target(doc) == doc["derivation"]
    assert static.VERSION == derivlib.__version__


# ----------------------------------------------------------------------------------- refusals

def _tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_an_out_holding_anything_else_is_refused_and_kept(sets_run, tasks, tmp_path, capsys):
    before = _tree(tasks)
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(tasks)]) == 0
    assert "already holds this export" in capsys.readouterr().out
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(tasks), "--seed", "7"]) == 2
    err = capsys.readouterr().err
    assert "holds a different export" in err and "seed 42 (this export: 7)" in err and len(err.splitlines()) == 1
    assert _tree(tasks) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(other)]) == 2
    assert "not a derivlib export" in capsys.readouterr().err
    assert _tree(other) == {"notes.txt": b"keep me"}
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(sets_run / "tasks")]) == 2
    assert "lies inside" in capsys.readouterr().err
    assert not (sets_run / "tasks").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["export", "lm-eval", "--sets", str(sets_run), "--out", str(empty), "--n-shots", "0"]) == 0
    assert not list(empty.glob("*5shot*")) and (empty / "derivlib.yaml").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_sets_that_are_not_a_complete_sets_run_are_refused(sets_run, tmp_path, capsys):
    out = tmp_path / "out"
    unfinished = tmp_path / "unfinished"
    shutil.copytree(sets_run, unfinished)
    (unfinished / rundir.COMPLETE).unlink()
    partial = tmp_path / "partial"
    shutil.copytree(sets_run, partial)
    (partial / "SR.jsonl").unlink()
    other_stage = tmp_path / "other"
    shutil.copytree(sets_run, other_stage)
    meta = json.loads((other_stage / "meta.json").read_text())
    (other_stage / "meta.json").write_text(json.dumps({**meta, "stage": "predict_t5"}))
    broken = tmp_path / "broken"
    shutil.copytree(sets_run, broken)
    rows = read_jsonl(broken / "static.jsonl")
    write_jsonl(broken / "static.jsonl", [rows[0], {k: v for k, v in rows[1].items() if k != "prompt"}])
    for directory, message in ((tmp_path / "nowhere", "no such directory"), (unfinished, "not a complete run"),
                               (partial, "lacks SR.jsonl"), (other_stage, "not a sets run"),
                               (broken, "static.jsonl: item 2")):
        for kind in ("lm-eval", "hf"):
            assert cli.main(["export", kind, "--sets", str(directory), "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert message in err and len(err.splitlines()) == 1, (directory, err)
            assert not out.exists()
    assert common.COMPLETE == rundir.COMPLETE


# ----------------------------------------------------------------------------------- the samples reader

def _sample(doc: dict, answer: str, doc_id: int = 0) -> dict:
    """One line as lm_eval --log_samples writes it (keys of lm_eval 0.4)."""
    return {"doc_id": doc_id, "doc": doc, "target": doc["derivation"], "arguments": {"gen_args_0": {"arg_0": "..."}},
            "resps": [[answer]], "filtered_resps": [answer], "filter": "none", "metrics": ["rouge2"],
            "doc_hash": "x", "prompt_hash": "y", "target_hash": "z", "rouge2": 0.0}


def test_samples_files_read_as_predictions(tasks, tmp_path):
    rows = read_jsonl(tasks / "data" / "EE.jsonl")
    model_dir = tmp_path / "org__model"
    date = "2026-01-02T03-04-05.678901"
    samples = model_dir / f"samples_derivlib_ee_5shot_{date}.jsonl"
    write_jsonl(samples, [_sample(r, f"Sure!\n\nDerivation: {r['derivation']}", i) for i, r in enumerate(rows)])
    records = runs.load_predictions(samples)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert {r["set"] for r in records} == {"EE"} and {r["model"] for r in records} == {"org__model+5shot"}
    assert all(r["prediction"] == r["reference"] for r in records)
    assert records[0]["srepr_derivation"] == json.loads(rows[0]["srepr_derivation"])
    (model_dir / f"results_{date}.json").write_text(json.dumps({"model_name": "org/model", "config": {}}))
    assert runs.load_predictions(samples)[0]["model"] == "org/model+5shot"
    assert runs.load_predictions(samples, "mine")[0]["model"] == "mine"
    # the directory the harness wrote: the latest file of each task
    write_jsonl(model_dir / f"samples_derivlib_static_{date}.jsonl",
                [_sample(r, "x = 1") for r in read_jsonl(tasks / "data" / "static.jsonl")[:2]])
    assert {(r["set"], r["model"]) for r in runs.load_predictions(model_dir)} == {
        ("static", "org/model+0shot"), ("EE", "org/model+5shot")}
    bad = model_dir / f"samples_derivlib_ee_{date}.jsonl"
    write_jsonl(bad, [_sample(rows[0], "x"), {"doc_id": 1}])
    with pytest.raises(ValueError, match=r"line 2 is not a harness sample"):
        runs.load_predictions(bad)
    write_jsonl(bad, [_sample(read_jsonl(tasks / "data" / "VR.jsonl")[0], "x")])
    with pytest.raises(ValueError, match=r"line 1: doc of set 'VR' in a file of task 'derivlib_ee'"):
        runs.load_predictions(bad)
    with pytest.raises(ValueError, match="not a derivlib task"):
        harness.parse_task_name("gsm8k")


# ----------------------------------------------------------------------------------- the real harness

def tiny_causal_model(directory: Path, data_dir: Path) -> Path:
    """A random 1-layer GPT-2 whose tokens are whole reference equations followed by " and", so
    that what it samples is a derivation the check can label (built in about a second)."""
    import torch  # heavy: this test only
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1}
    for path in sorted(data_dir.glob("*.jsonl")):
        for row in read_jsonl(path):
            for equation in row["derivation"].split(" and "):
                vocab.setdefault(f"{equation} and", len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>",
                                   pad_token="<eos>", clean_up_tokenization_spaces=False)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=4096, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def assert_harness_agrees_with_derivlib(output: Path, task_names: list[str], model: str,
                                        labelled: bool = True) -> dict:
    """For each task of one ``lm_eval --log_samples`` output directory: two logged samples, read
    as predictions of ``model`` (with its shots); the harness's aggregated paper metrics equal
    derivlib's ``score`` of them to 1e-9, its symbolic metrics equal ``check``; and, if
    ``labelled``, the check labelled real equations. Returns the harness's aggregated results."""
    (results_path,) = output.glob("results_*.json")
    aggregated = json.loads(results_path.read_text())["results"]
    checked_equations = with_wrong_steps = 0
    for task in task_names:
        (samples,) = [p for p in output.glob("samples_*.jsonl") if harness.task_of(p) == task]
        records = runs.load_predictions(samples)
        assert len(records) == 2 and {r["model"] for r in records} == {
            model + ("+5shot" if task.endswith("5shot") else "+0shot")}
        scores = scoring.score_records(records)
        for harness_name, derivlib_name in harness_hooks.PAPER_NAMES.items():
            assert abs(aggregated[task][f"{harness_name},none"] - scores[derivlib_name].mean()) <= 1e-9, task
        checks = check.check_records(records, seed=harness_hooks.CHECK_SEED)
        summary = check.summarize(checks).iloc[0]
        share = summary["incorrect"] / summary["equations"] if summary["equations"] else 0.0
        assert abs(aggregated[task]["incorrect_share,none"] - share) <= 1e-12
        assert abs(aggregated[task]["goal_reached,none"] - summary["goal_reached"] / summary["derivations"]) <= 1e-12
        assert abs(aggregated[task]["with_wrong_step,none"]
                   - summary["with_wrong_step"] / summary["derivations"]) <= 1e-12
        firsts = [c.first_wrong_step for c in checks if c.first_wrong_step is not None]
        expected_first = sum(firsts) / len(firsts) if firsts else math.nan
        assert aggregated[task]["first_wrong_step,none"] == pytest.approx(expected_first, abs=1e-12, nan_ok=True)
        with_wrong_steps += len(firsts)
        checked_equations += int(summary["equations"]) - int(summary["unparseable"])
    if labelled:
        assert checked_equations > 0 and with_wrong_steps > 0  # the symbolic check labelled real equations
    return aggregated


@pytest.mark.slow
def test_lm_eval_runs_the_tasks_and_agrees_with_score_and_check(tasks, tmp_path):
    """The harness itself (its CLI, from another directory, offline) on the exported tasks with a
    tiny local model: its aggregated metrics equal derivlib's score and check of the logged
    samples; the 5-shot prompt it sent is derivlib's. About 30 s."""
    pytest.importorskip("lm_eval", reason="the harness extra: pip install -e '.[harness]' (make setup does)")
    model = tiny_causal_model(tmp_path / "tiny-model", tasks / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TOKENIZERS_PARALLELISM": "false"}
    command = [str(Path(sys.executable).with_name("lm_eval")), "--model", "hf",
               "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu", "--batch_size", "1",
               "--include_path", str(tasks), "--tasks", "derivlib,derivlib_static_5shot", "--limit", "2",
               "--gen_kwargs", "do_sample=True,temperature=1.0,max_gen_toks=6",
               "--log_samples", "--output_path", str(tmp_path / "results")]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    print(f"lm_eval ran {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rouge2" in done.stdout and "incorrect_share" in done.stdout  # the harness's table
    (output,) = (tmp_path / "results").iterdir()
    aggregated = assert_harness_agrees_with_derivlib(
        output, [harness.task_name(s) for s in SETS] + ["derivlib_static_5shot"], model="tiny-model")
    group = aggregated["derivlib"]
    assert abs(group["rouge2,none"] - sum(aggregated[harness.task_name(s)]["rouge2,none"] for s in SETS) / 5) <= 1e-12
    (five,) = [p for p in output.glob("samples_*.jsonl") if harness.task_of(p) == "derivlib_static_5shot"]
    sent = read_jsonl(five)[0]
    assert sent["arguments"]["gen_args_0"]["arg_0"] == sent["doc"]["few_shot"]
    # `score` and `check` take the samples file (and the directory) as they take any predictions
    shown = subprocess.run([sys.executable, "-m", "derivlib", "score", "--results", str(five), "--format", "csv"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].startswith("tiny-model+5shot,static,rouge,")


@pytest.mark.slow
def test_lm_eval_through_derivlib_serve_agrees_with_score_and_check(tasks, tiny_chat_lm, tmp_path):
    """The harness's OpenAI-compatible arm (``local-chat-completions``, chat-formatted requests,
    the tasks' stop strings) against a real ``derivlib serve`` process on loopback serving
    conftest's tiny chat model: every request is answered, and the aggregated metrics equal
    derivlib's ``score`` and ``check`` of the logged samples. (The word-level model of the test
    above cannot be served: transformers' stop-string matching needs a BPE-like vocabulary.)
    About 30 s."""
    pytest.importorskip("lm_eval", reason="the harness extra: pip install -e '.[harness]' (make setup does)")
    served = Served(tiny_chat_lm, tmp_path)
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
               "TOKENIZERS_PARALLELISM": "false", "NO_PROXY": "127.0.0.1,localhost"}
        command = [str(Path(sys.executable).with_name("lm_eval")), "--model", "local-chat-completions",
                   "--model_args", f"model={served.name},base_url={served.url}/chat/completions,num_concurrent=1,"
                                   "max_retries=1,tokenized_requests=False",
                   "--apply_chat_template", "--include_path", str(tasks), "--tasks", "derivlib", "--limit", "2",
                   "--gen_kwargs", "temperature=1.0,max_gen_toks=12",
                   "--log_samples", "--output_path", str(tmp_path / "results")]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        print(f"lm_eval through serve ran {time.perf_counter() - started:.1f} s")
        assert done.returncode == 0, done.stderr[-2000:] + served.log.read_text()[-3000:]
        served_requests = sum("POST /v1/chat/completions" in line and " 200" in line for line in served.lines)
        assert served_requests == 2 * len(SETS), served.lines[-5:]
    finally:
        served.kill()
    (output,) = (tmp_path / "results").iterdir()
    for samples in output.glob("samples_*.jsonl"):
        for sample in read_jsonl(samples):
            (messages,) = sample["arguments"]["gen_args_0"]["arg_0"]
            sent = json.loads(messages)  # chat-formatted: the messages as sent, in JSON
            assert [m["role"] for m in sent] == ["user"] and f"Prompt: {sample['doc']['prompt']}" in sent[0]["content"]
            assert sample["filtered_resps"][0].strip()  # the server answered
    assert_harness_agrees_with_derivlib(output, [harness.task_name(s) for s in SETS], model=served.name,
                                        labelled=False)
