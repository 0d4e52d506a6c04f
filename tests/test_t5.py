"""T5 fine-tuning and decoding on a tiny model (d_model 32, one layer) and a small synthetic sets
directory: tokenizer round trips, the baseline, training end to end, resumption after an
interruption, bad input rejected before any training step, and the stages train_t5 and
predict_t5 with their commands."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from derivlib import baseline
from derivlib.__main__ import main
from derivlib.base.files import atomic_write_json, read_jsonl, write_jsonl
from derivlib.base.params import ParameterError, validate
from derivlib.base.vocabulary import PREDICTION_FIELDS, SETS
from derivlib.models import syntax, t5, tokenization
from derivlib.readers.runs import load_set
from derivlib.stages import predict_t5, rundir, train_t5

# The tests below train: passive OpenMP waiting must be chosen before torch loads (see the function)
t5.prefer_passive_threads()

FUNCTIONS = [r"\eta", r"\phi", r"\psi", "f"]
SYMBOLS = ["x", "t", r"\theta", r"\mathbf{E}", "E_{n}", "a"]
TINY = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, vocab_size=300, epochs=2,
            batch_size=8, max_dev_items=4, log_every=2, learning_rate=3e-3, sub_derivations=False)


def synthetic_item(rng: random.Random, index: int) -> dict:
    """A derivation-shaped item: a premise, its derivative, and a product with it."""
    fn, sym = rng.choice(FUNCTIONS), rng.choice(SYMBOLS)
    power = rng.randint(2, 5)
    lhs = f"{fn}{{({sym})}}"
    equations = [f"{lhs} = {sym}^{{{power}}}",
                 rf"\frac{{d}}{{d {sym}}} {lhs} = {power} {sym}^{{{power - 1}}}",
                 rf"{lhs} \frac{{d}}{{d {sym}}} {lhs} = {power} {sym}^{{{2 * power - 1}}}"]
    prompt = f"Given {equations[0]}, then derive {equations[1]}, then obtain {equations[2]}"
    return {"id": f"s-{index}", "prompt": prompt, "derivation": " and ".join(equations),
            "srepr_derivation": [["premise", "Equality(...)"]]}


def make_sets_dir(root: Path, n_train: int = 48, n_dev: int = 6, n_test: int = 4, mutate=None) -> Path:
    """A complete sets run directory (as 02_testsets writes one) of synthetic items."""
    rng = random.Random(0)
    items = [synthetic_item(rng, i) for i in range(n_train + n_dev + n_test)]
    directory = root / "sets"
    splits = {"train": items[:n_train], "dev": items[n_train:n_train + n_dev]}
    test = items[n_train + n_dev:]
    for name in SETS:
        splits[name] = test
    splits["SR"] = [{**it, "prompt": it["prompt"].split(", then derive ")[0] + ", then obtain "
                     + it["prompt"].rsplit(", then obtain ", 1)[1]} for it in test]
    for name, rows in splits.items():
        write_jsonl(directory / f"{name}.jsonl", [mutate(r) if mutate else r for r in rows])
    atomic_write_json(directory / "meta.json", {"key": f"synthetic-{n_train}"})
    (directory / rundir.COMPLETE).write_text("done\n")
    return directory


@pytest.fixture(scope="module")
def sets_dir(tmp_path_factory) -> Path:
    return make_sets_dir(tmp_path_factory.mktemp("t5sets"))


def tiny_config(**overrides) -> t5.TrainConfig:
    return validate(t5.TrainConfig, {**TINY, **overrides})


def train_dev(sets_dir: Path) -> tuple[list[dict], list[dict]]:
    return load_set(sets_dir, "train"), load_set(sets_dir, "dev")


def stage_values(sets_dir: Path, **overrides) -> dict:
    """03's parameters as a notebook or a command gives them to train_t5.open_run."""
    return {"sets": str(sets_dir), "profile": "test", **TINY, **overrides}


# ----------------------------------------------------------------------------------- environment

def test_passive_threads_are_chosen_on_request_not_at_import():
    """Importing derivlib changes no environment variable and loads no torch, so the stages can
    choose passive OpenMP waiting before torch loads; an explicit setting wins."""
    script = ("import os, sys\n"
              "before = os.environ.get('OMP_WAIT_POLICY')\n"
              "from derivlib.models import t5\n"
              "from derivlib.stages import predict_t5, train_t5\n"
              "from derivlib.cli import predict, train\n"
              "assert os.environ.get('OMP_WAIT_POLICY') == before and 'torch' not in sys.modules\n"
              "t5.prefer_passive_threads()\n"
              "print(os.environ['OMP_WAIT_POLICY'])\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for explicit, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env={**env, "OMP_WAIT_POLICY": explicit} if explicit else env)
        assert out.returncode == 0 and out.stdout.strip() == expected, out.stderr


# ----------------------------------------------------------------------------------- tokenizer

def test_latex_tokenizer_keeps_commands_whole_and_round_trips(sets_dir):
    items = load_set(sets_dir, "train")
    texts = [t for it in items for t in (it["prompt"], it["derivation"])]
    tokenizer = tokenization.train_latex_tokenizer(texts, vocab_size=300)
    tokens = tokenizer.tokenize(r"y = \frac{d}{d x} \eta{(x)} + x^{2}")
    # commands stay units (with the space before them, byte-level "Ġ")
    assert "Ġ\\frac" in tokens and "Ġ\\eta" in tokens
    unseen = r"\omicron{(\upsilon)} = \frac{\kappa}{2}  and  \Xi_{7}"
    for text in texts[:20] + [unseen]:
        assert tokenization.round_trips(tokenizer, text)
    assert tokenizer("a")["input_ids"][-1] == tokenizer.eos_token_id == 1
    assert tokenizer.pad_token_id == 0
    again = tokenization.train_latex_tokenizer(texts, vocab_size=300)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_latex_tokenizer_cuts_each_identifier_the_same_way_everywhere(sets_dir):
    """Merges stay inside a LaTeX unit (a command, an identifier with its subscript, one of four
    bracket pairs), so a symbol is the same tokens wherever it stands and the model can copy it
    from the prompt; the merges still make sequences much shorter than one token per character."""
    identifier = re.compile(r"(?<![A-Za-z0-9\\])[A-Za-z0-9]+(?:_\{[A-Za-z0-9]+\})?")
    items = load_set(sets_dir, "train")
    texts = [t for it in items for t in (it["prompt"], it["derivation"])]
    tokenizer = tokenization.train_latex_tokenizer(texts, vocab_size=300)
    cuts: dict[str, set] = {}
    n_tokens = n_characters = 0
    for text in texts:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(start + (text[start] == " "), end) for start, end in encoding["offset_mapping"]]
        for match in identifier.finditer(text):
            inside = [(a, b) for a, b in spans if match.start() <= a < b <= match.end()]
            assert sum(b - a for a, b in inside) == len(match.group()), (match.group(), text)
            cuts.setdefault(match.group(), set()).add(tuple(text[a:b] for a, b in inside))
        n_tokens += len(spans)
        n_characters += len(text.replace(" ", ""))
    assert "E_{n}" in cuts and all(len(ways) == 1 for ways in cuts.values()), \
        {k: v for k, v in cuts.items() if len(v) > 1}
    assert cuts["E_{n}"] == {("E_{n}",)}  # frequent: one token
    assert n_tokens < 0.6 * n_characters  # 0.54 here; about 0.4 on the smoke training set (vocabulary 1000)
    assert tokenizer.tokenize(r"x = \eta{(E_{n})}")[-3:] == ["{(", "E_{n}", ")}"]
    # closing several levels is several tokens, never one rare run such as ")})}}{"
    assert tokenizer.tokenize(r"\frac{\cos{(\log{(b)})}}{b}")[-5:] == [")}", ")}", "}{", "b", "}"]
    brackets = re.compile(r"[{}()\[\]]")
    assert max(len(brackets.findall(token)) for token in tokenizer.get_vocab()) == 2


# ----------------------------------------------------------------------------------- baseline

def test_copy_prompt_baseline():
    prompt = r"Given \eta{(a)} = e^{a} and b = c, then derive \frac{d}{d a} \eta{(a)} = e^{a}, then derive x = 1, then obtain y = 2"
    assert baseline.copy_prompt(prompt) == (
        r"\eta{(a)} = e^{a} and b = c and \frac{d}{d a} \eta{(a)} = e^{a} and x = 1 and y = 2")
    assert baseline.copy_prompt(r"Given f{(a, b)} = a, then obtain g = 1") == "f{(a, b)} = a and g = 1"
    with pytest.raises(ValueError, match="not a derivation prompt"):
        baseline.copy_prompt("derive something")


def test_copy_prompt_baseline_on_released_prompts(flan_results):
    items = json.loads(Path(flan_results).read_text())
    for item in items:
        for key in ("prompt", "SR prompt", "VR prompt"):
            equations = baseline.prompt_equations(item[key])
            reference = item[key.replace("prompt", "derivation")].split(" and ")
            # premises come first and the goal last, exactly as in the reference derivation
            assert equations[-1] == reference[-1]
            assert equations[0] == reference[0]


def test_well_formed_check():
    assert t5.is_well_formed(r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = e^{a}")
    assert not t5.is_well_formed(r"\eta{(a)} = e^{a} and \frac{d}{d a")  # truncated
    assert not t5.is_well_formed(r"\eta{(a)} = e^{a} = b")
    assert not t5.is_well_formed(r"x and y = 1")
    assert not t5.is_well_formed("")


def test_top_level_equals_counts_outside_brackets_only():
    assert t5.top_level_equals(r"f{(x = 1)} = \frac{a}{b}") == 1
    assert t5.top_level_equals(r"a = b = c") == 2
    assert t5.top_level_equals(r"\{x = 1\} = y") == 2  # escaped braces do not group
    assert t5.top_level_equals(r"f{(x)} = \frac{a") is None  # unbalanced
    assert t5.top_level_equals(r"x) = (y") is None  # closed before opened


# ----------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def trained(sets_dir, tmp_path_factory):
    """A tiny model trained by t5.train into a plain directory (no run directory), and its log."""
    out = tmp_path_factory.mktemp("t5model")
    lines: list[str] = []
    train_items, dev_items = train_dev(sets_dir)
    return out, t5.train(train_items, dev_items, out, tiny_config(), log=lines.append), lines


def test_training_end_to_end(trained):
    out, result, lines = trained
    assert result.model_dir == out / "model" and (result.model_dir / "model.safetensors").exists()
    assert all((result.model_dir / name).exists() for name in t5.TOKENIZER_FILES)
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "history.json").read_text()) == result.history
    train_losses = [h["loss"] for h in result.history if "loss" in h]
    assert train_losses[-1] < train_losses[0]
    evals = [h for h in result.history if "eval_loss" in h]
    assert len(evals) == 2 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]  # dev loss falls
    summary = result.summary
    assert summary["best_checkpoint"].startswith("checkpoint-")
    assert 0 <= summary["best_dev_rouge2"] <= 1
    assert summary["precision"] in ("bf16", "fp32") and summary["bf16"] == (summary["precision"] == "bf16")
    assert summary["torch_threads"] >= 1 and summary["device"] in ("cpu", "cuda", "cuda:0")
    log = "\n".join(lines)
    assert "tok/s" in log and "dev ROUGE-2" in log and "done: best dev ROUGE-2" in log
    assert len(result.samples) == 4 and all(isinstance(s["prediction"], str) for s in result.samples)


def test_predictions_are_shared_records_and_deterministic(trained, sets_dir, monkeypatch):
    _, result, _ = trained
    model, tokenizer = t5.load_model(result.model_dir)
    items = load_set(sets_dir, "static")[:3]
    records = t5.predictions(model, tokenizer, items, "static", "t5-scratch", t5.DecodeConfig(max_new_tokens=40))
    assert [tuple(r) for r in records] == [PREDICTION_FIELDS] * 3
    assert [(r["id"], r["model"], r["set"], r["reference"]) for r in records] == [
        (it["id"], "t5-scratch", "static", it["derivation"]) for it in items]
    # greedy decoding is deterministic: the same model gives the same outputs
    assert t5.generate(model, tokenizer, [it["prompt"] for it in items], max_new_tokens=40) == [
        r["prediction"] for r in records]
    # progress lines between batches (here after each, at any interval) change nothing decoded
    monkeypatch.setattr(t5, "PROGRESS_EVERY_S", 0.0)
    lines = []
    again = t5.predictions(model, tokenizer, items, "static", "t5-scratch",
                           t5.DecodeConfig(max_new_tokens=40, batch_size=1), log=lines.append)
    assert again == records
    assert [line.split(" (")[0] for line in lines] == ["static: 1/3 items decoded", "static: 2/3 items decoded"]
    assert all(" items/s, ETA " in line for line in lines)
    table = t5.summary_table(records + baseline.predictions(items, "static"))
    assert set(table.columns) >= {"model", "set", "rouge2", "well_formed", "items"}
    row = table[(table.model == baseline.MODEL_NAME) & (table.set == "static")].iloc[0]
    assert row.well_formed == 100.0 and row.rouge2 > 30 and row["items"] == 3


def test_balanced_decoding_labels_its_outputs(trained, sets_dir):
    _, result, _ = trained
    model, tokenizer = t5.load_model(result.model_dir)
    items = load_set(sets_dir, "static")[:2]
    records = t5.predictions(model, tokenizer, items, "static", "t5-scratch",
                             t5.DecodeConfig(max_new_tokens=40, balanced_decoding=True))
    assert {r["model"] for r in records} == {"t5-scratch+balanced"}
    assert all(syntax.valid_prefix(r["prediction"]) for r in records), records


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_from_last_checkpoint(sets_dir, tmp_path):
    from transformers import TrainerCallback  # why: optional heavy dependency, loaded after the thread policy

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise Interrupt

    config = tiny_config(checkpoint_every=4, epochs=1, max_train_items=48)  # 6 steps
    train_items, dev_items = train_dev(sets_dir)
    with pytest.raises(Interrupt):
        t5.train(train_items, dev_items, tmp_path, config, log=lambda line: None, callbacks=[StopAfter()])
    assert (tmp_path / "checkpoints" / "checkpoint-4").is_dir() and not (tmp_path / "model").exists()
    lines: list[str] = []
    result = t5.train(train_items, dev_items, tmp_path, config, log=lines.append)
    assert result.summary["resumed_from"] == "checkpoint-4"
    assert result.summary["steps"] == 6
    train_steps = [h["step"] for h in result.history if "loss" in h]
    assert train_steps[-1] == 6
    assert "resuming from checkpoint-4" in lines


def test_dev_rouge2_pairs_each_output_with_its_own_reference(sets_dir):
    from transformers import EvalPrediction  # why: optional heavy dependency, loaded after the thread policy

    items = read_jsonl(sets_dir / "dev.jsonl")
    tokenizer = tokenization.train_latex_tokenizer([it["derivation"] for it in items], 300)
    labels = tokenizer(text_target=[it["derivation"] for it in items], padding=True, return_tensors="np")["input_ids"]
    labels = np.where(labels == tokenizer.pad_token_id, -100, labels)
    metric = t5.dev_rouge2_metric(tokenizer)
    # the Trainer evaluates length-grouped batches in its own order, not the dev file's
    order = [3, 1, 4, 0, 5, 2]
    assert metric(EvalPrediction(predictions=labels[order], label_ids=labels[order]))["rouge2"] == 1.0
    assert metric(EvalPrediction(predictions=labels[order], label_ids=labels))["rouge2"] < 0.9


def optimizer_groups(sets_dir, out, **overrides) -> list[tuple[float, set[str]]]:
    """(initial learning rate, parameter names) of each optimizer group of a 2-step tiny run."""
    from transformers import TrainerCallback  # why: optional heavy dependency, loaded after the thread policy

    groups = []

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            names = {id(p): name for name, p in model.named_parameters()}
            groups.extend((g["initial_lr"], {names[id(p)] for p in g["params"]})
                          for g in optimizer.param_groups if g["params"])

    train_items, dev_items = train_dev(sets_dir)
    t5.train(train_items, dev_items, out, tiny_config(epochs=1, max_train_items=16, **overrides),
             log=lambda line: None, callbacks=[Capture()])
    return groups


def test_position_bias_tables_get_their_own_learning_rate(sets_dir, tmp_path):
    groups = optimizer_groups(sets_dir, tmp_path / "own", learning_rate=3e-3,
                              position_bias_learning_rate=0.05)
    tables = {name for rate, names in groups if rate == 0.05 for name in names}
    assert tables == {"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"}
    others = [names for rate, names in groups if rate != 0.05]
    assert others and all(rate == 3e-3 for rate, _ in groups if rate != 0.05)
    assert not any(t5.POSITION_BIAS in name for names in others for name in names)
    # 0 keeps the Trainer's optimizer as it is: every parameter at the one learning rate
    same = optimizer_groups(sets_dir, tmp_path / "same", learning_rate=3e-3, position_bias_learning_rate=0)
    assert {rate for rate, _ in same} == {3e-3}
    assert {n for _, names in same for n in names} == {n for _, names in groups for n in names}
    # a pretrained model's tables are trained already: they keep the common rate
    assert t5.position_bias_rate(tiny_config(position_bias_learning_rate=0.05)) == 0.05
    assert t5.position_bias_rate(tiny_config(model="t5-small", position_bias_learning_rate=0.05)) == 0


# ----------------------------------------------------------------------------------- stages

def test_stages_train_and_predict_then_load(sets_dir, isolated_data):
    train_run = train_t5.open_run(stage_values(sets_dir, epochs=1, max_train_items=16))
    trained = train_t5.run(train_run)
    final = train_run.final
    assert train_run.complete and train_run.dir == final
    for name in ("params.json", "meta.json", "COMPLETE", "history.json", "summary.json", "dev_samples.jsonl"):
        assert (final / name).exists(), name
    assert trained.model_dir == final / "model" and (trained.model_dir / "model.safetensors").exists()
    assert trained.figures == {train_t5.LOSS_FIGURE: final / "figures" / "train_t5_loss.png"}
    assert trained.figures["train_t5_loss"].exists()
    assert (isolated_data / "figures" / "test" / "train_t5_loss.png").exists()  # published
    assert (isolated_data / "data" / "train_t5" / "test").resolve() == final.resolve()
    meta = json.loads((final / "meta.json").read_text())
    assert meta["counts"] == {"train_items": 16, "dev_items": trained.summary["dev_items"],
                              "steps": trained.summary["steps"]}
    assert json.loads((final / "summary.json").read_text())["precision"] == trained.summary["precision"]
    hardware = meta["hardware"]  # what the numbers depend on, in the file every run has
    assert hardware["precision"] == trained.summary["precision"] in ("bf16", "fp32")
    assert hardware["torch_threads"] == trained.summary["torch_threads"] >= 1 and hardware["device"] == "cpu"
    assert hardware["cpu"] and isinstance(hardware["cpu_bf16"], list) and "omp_num_threads" in hardware
    assert "tok/s" in (final / "log.txt").read_text() and " steps/s, ETA " in (final / "log.txt").read_text()
    again = train_t5.open_run(stage_values(sets_dir, epochs=1, max_train_items=16))
    assert again.complete  # a complete run loads instead of training
    loaded = train_t5.run(again)
    assert (loaded.summary, loaded.history, loaded.samples) == (trained.summary, trained.history, trained.samples)
    assert loaded.figures == trained.figures and loaded.model_dir == trained.model_dir

    values = {"model": str(final), "sets": str(sets_dir), "profile": "test", "max_new_tokens": 40, "max_items": 3}
    predict_run = predict_t5.open_run(values)
    result = predict_t5.run(predict_run)
    records = read_jsonl(predict_run.path("predictions.jsonl"))
    assert len(records) == len(result.predictions) == 2 * 5 * 3
    assert {tuple(r) for r in records} == {PREDICTION_FIELDS}
    assert {(r["model"], r["set"]) for r in records} == {
        (m, s) for m in ("t5-scratch", baseline.MODEL_NAME) for s in SETS}
    copy = [r for r in records if r["model"] == baseline.MODEL_NAME]
    assert all(r["prediction"] == baseline.copy_prompt(r["prompt"]) for r in copy)
    assert [s["id"] for s in result.samples] == [r["id"] for r in records if r["set"] == "static"][:3]
    assert result.figures["predict_t5_vs_copy_prompt"].exists()
    assert set(result.summary.columns) >= {"model", "set", "rouge2", "well_formed", "items"}
    loaded = predict_t5.run(predict_t5.open_run(values))
    pd.testing.assert_frame_equal(loaded.predictions, result.predictions)
    pd.testing.assert_frame_equal(loaded.summary, result.summary)
    assert loaded.samples == result.samples and loaded.figures == result.figures


def test_commands_write_complete_run_directories(sets_dir, tmp_path, isolated_data, capsys):
    options = ["--d-model", "32", "--d-ff", "64", "--num-layers", "1", "--num-heads", "2", "--vocab-size", "300",
               "--epochs", "1", "--batch-size", "8", "--max-dev-items", "2", "--max-train-items", "8",
               "--sub-derivations", "false", "--log-every", "1"]
    model_run = tmp_path / "my-model"
    assert main(["train", "--sets", str(sets_dir), *options, "--out", str(model_run)]) == 0
    assert f"run directory: {model_run}" in capsys.readouterr().out
    for name in ("params.json", "meta.json", "COMPLETE", "model", "summary.json"):
        assert (model_run / name).exists(), name
    assert json.loads((model_run / "params.json").read_text())["max_train_items"] == 8
    assert not (isolated_data / "data" / "train_t5").exists()  # --out only
    # the same parameters at the same --out are the complete run, loaded
    values = {"sets": str(sets_dir), "d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "vocab_size": 300,
              "epochs": 1, "batch_size": 8, "max_dev_items": 2, "max_train_items": 8, "sub_derivations": False,
              "log_every": 1}
    assert train_t5.open_run(values, out=model_run).complete

    predictions = tmp_path / "my-predictions"
    assert main(["predict", "--model", str(model_run), "--sets", str(sets_dir), "--max-new-tokens", "20",
                 "--max-items", "2", "--balanced-decoding", "true", "--out", str(predictions)]) == 0
    assert "t5-scratch+balanced" in capsys.readouterr().out
    assert (predictions / "COMPLETE").exists() and len(read_jsonl(predictions / "predictions.jsonl")) == 2 * 5 * 2

    # an --out over an input would replace it when the run finishes: refused
    assert main(["predict", "--model", str(model_run), "--sets", str(sets_dir), "--out", str(model_run)]) == 2
    assert "holds the input" in capsys.readouterr().err and (model_run / "model").is_dir()

    # a model directory without its tokenizer: one line naming the directory and the files
    broken = tmp_path / "broken-model"
    shutil.copytree(model_run, broken)
    (broken / "model" / "tokenizer.json").unlink()
    assert main(["predict", "--model", str(broken), "--sets", str(sets_dir), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(broken / "model") in err and "tokenizer.json" in err
    assert not (tmp_path / "p2").exists()


# ----------------------------------------------------------------------------------- bad input

def test_unknown_model_is_rejected_before_training(sets_dir, tmp_path, isolated_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train_items, dev_items = train_dev(sets_dir)
    for model in ("no-such-org/no-such-t5-model", str(tmp_path / "missing-dir")):
        with pytest.raises(ParameterError, match="parameter 'model'.*cannot load"):
            t5.train(train_items, dev_items, tmp_path / "out", tiny_config(model=model))
        assert not (tmp_path / "out" / "checkpoints").exists()
        with pytest.raises(ParameterError, match="parameter 'model'.*cannot load"):
            train_t5.open_run(stage_values(sets_dir, model=model))
    assert not (isolated_data / "data" / "train_t5").exists()  # refused before any run directory


def test_missing_field_is_rejected(tmp_path, isolated_data):
    broken = make_sets_dir(tmp_path, mutate=lambda r: {k: v for k, v in r.items() if k != "derivation"})
    run = train_t5.open_run(stage_values(broken))
    with pytest.raises(ValueError, match="train.jsonl: item 1 .*lacks field.*derivation"):
        train_t5.run(run)


def test_max_length_shorter_than_every_example(sets_dir, tmp_path):
    with pytest.raises(ParameterError, match="max_length.*shorter than every training example"):
        t5.train(*train_dev(sets_dir), tmp_path, tiny_config(max_length=4))
    assert not (tmp_path / "checkpoints").exists()


def test_sub_derivations_need_the_steps(sets_dir, tmp_path):
    # the synthetic items carry no equations list: nothing to cut sub-derivations from
    with pytest.raises(ParameterError, match="sub_derivations.*lacks equations"):
        t5.train(*train_dev(sets_dir), tmp_path, tiny_config(sub_derivations=True))
    assert not (tmp_path / "checkpoints").exists()


def test_precision():
    with pytest.raises(ParameterError, match="precision.*fp16"):
        tiny_config(precision="fp16")
    assert t5.use_bf16("bf16") and not t5.use_bf16("fp32")
    import torch  # why: only to ask whether this machine has a CUDA GPU
    if not torch.cuda.is_available():  # auto on a CPU: bf16 exactly when the CPU computes in bf16
        assert t5.use_bf16("auto") == t5.cpu_computes_bf16()


def test_bad_parameters_and_cli_errors(sets_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(ParameterError, match="d_model"):
        validate(train_t5.Params, stage_values(sets_dir, d_model=30, num_heads=4))
    with pytest.raises(ParameterError, match="batch_size"):
        validate(train_t5.Params, stage_values(sets_dir, batch_size=0))
    with pytest.raises(ParameterError, match="position_bias_learning_rate"):
        validate(train_t5.Params, stage_values(sets_dir, position_bias_learning_rate=-0.1))
    with pytest.raises(ParameterError, match="workers"):
        validate(train_t5.Params, stage_values(sets_dir, workers=0))
    with pytest.raises(ParameterError, match="max_items"):
        validate(predict_t5.Params, {"max_items": -1})
    # the stage parameters are the configuration plus their own fields, derived, not repeated
    params = validate(train_t5.Params, stage_values(sets_dir))
    assert params.train_config() == tiny_config()
    assert validate(predict_t5.Params, {"num_beams": 2}).decode_config() == t5.DecodeConfig(num_beams=2)
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path))
    assert main(["train", "--sets", str(tmp_path / "nothing")]) == 2
    assert "not a complete run directory" in capsys.readouterr().err


def test_released_references_are_well_formed(flan_results):
    items = json.loads(Path(flan_results).read_text())
    for key in ("derivation", "VR derivation", "EE derivation", "AG derivation"):
        assert all(t5.is_well_formed(item[key]) for item in items), key
    # the authors' model outputs, split by their tokenizer ("\ frac { d }"), are not printer output
    assert not all(t5.is_well_formed(item["static_flan-t5-large"]) for item in items)
