"""T5 fine-tuning and decoding on a tiny model (d_model 32, one layer) and a small synthetic sets
directory: tokenizer round trips, the baseline, training end to end, resumption after an
interruption, and bad input rejected before any training step."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from derivlib import baseline, config
from derivlib.__main__ import main
from derivlib.config import ParameterError
from derivlib.models import t5, tokenization

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
    rng = random.Random(0)
    items = [synthetic_item(rng, i) for i in range(n_train + n_dev + n_test)]
    directory = root / "sets"
    splits = {"train": items[:n_train], "dev": items[n_train:n_train + n_dev]}
    test = items[n_train + n_dev:]
    for name in t5.TEST_SETS:
        splits[name] = test
    splits["SR"] = [{**it, "prompt": it["prompt"].split(", then derive ")[0] + ", then obtain "
                     + it["prompt"].rsplit(", then obtain ", 1)[1]} for it in test]
    for name, rows in splits.items():
        config.write_jsonl(directory / f"{name}.jsonl", [mutate(r) if mutate else r for r in rows])
    config.atomic_write_json(directory / "meta.json", {"key": f"synthetic-{n_train}"})
    (directory / config.COMPLETE).write_text("done\n")
    return directory


@pytest.fixture(scope="module")
def sets_dir(tmp_path_factory) -> Path:
    return make_sets_dir(tmp_path_factory.mktemp("t5sets"))


def train_params(sets_dir: Path, **overrides) -> t5.TrainParams:
    return config.validate(t5.TrainParams, {"sets": str(sets_dir), "profile": "test", **TINY, **overrides})


# ----------------------------------------------------------------------------------- tokenizer

def test_latex_tokenizer_keeps_commands_whole_and_round_trips(sets_dir):
    items = t5.load_set(sets_dir, "train")
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
    import re

    identifier = re.compile(r"(?<![A-Za-z0-9\\])[A-Za-z0-9]+(?:_\{[A-Za-z0-9]+\})?")
    items = t5.load_set(sets_dir, "train")
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


# ----------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def trained(sets_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("t5data")
    run = config.start_run("train_t5", train_params(sets_dir), upstream={"sets": sets_dir}, root=root)
    return run, t5.train(run)


def test_training_end_to_end(trained):
    run, result = trained
    assert run.complete and (result.model_dir / "model.safetensors").exists()
    assert not run.path("checkpoints").exists()
    train_losses = [h["loss"] for h in result.history if "loss" in h]
    assert train_losses[-1] < train_losses[0]
    evals = [h for h in result.history if "eval_loss" in h]
    assert len(evals) == 2 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]  # dev loss falls
    assert result.summary["best_checkpoint"].startswith("checkpoint-")
    assert 0 <= result.summary["best_dev_rouge2"] <= 1
    log = run.path("log.txt").read_text()
    assert "tok/s" in log and "dev ROUGE-2" in log
    assert len(result.samples) == 4 and all(isinstance(s["prediction"], str) for s in result.samples)
    again = t5.train(run)  # a complete run loads instead of training
    assert again.summary == result.summary


def test_predict_writes_shared_format_with_baseline(trained, sets_dir, tmp_path):
    train_run, _ = trained
    params = config.validate(t5.PredictParams, {"model": str(train_run.dir), "sets": str(sets_dir),
                                                "profile": "test", "max_new_tokens": 40, "max_items": 3})
    run = config.start_run("predict_t5", params, upstream={"model": train_run.dir, "sets": sets_dir},
                           root=tmp_path)
    frame = t5.predict(run)
    records = config.read_jsonl(run.path("predictions.jsonl"))
    assert len(records) == len(frame) == 2 * 5 * 3
    assert {tuple(sorted(r)) for r in records} == {
        ("id", "model", "prediction", "prompt", "reference", "set", "srepr_derivation")}
    assert {(r["model"], r["set"]) for r in records} == {
        (m, s) for m in ("t5-scratch", "copy-prompt") for s in t5.TEST_SETS}
    copy = [r for r in records if r["model"] == "copy-prompt"]
    assert all(r["prediction"] == baseline.copy_prompt(r["prompt"]) for r in copy)
    # greedy decoding is deterministic: the same model gives the same outputs
    model, tokenizer = t5.load_model(train_run.dir)
    static = [r for r in records if r["model"] == "t5-scratch" and r["set"] == "static"]
    assert t5.generate(model, tokenizer, [r["prompt"] for r in static], max_new_tokens=40) == [
        r["prediction"] for r in static]
    table = t5.summary_table(records)
    assert set(table.columns) >= {"model", "set", "rouge2", "well_formed", "items"}
    row = table[(table.model == "copy-prompt") & (table.set == "static")].iloc[0]
    assert row.well_formed == 100.0 and row.rouge2 > 30


def test_predict_with_balanced_decoding_labels_its_outputs(trained, sets_dir, tmp_path):
    from derivlib.models import syntax

    train_run, _ = trained
    params = config.validate(t5.PredictParams, {"model": str(train_run.dir), "sets": str(sets_dir), "profile": "test",
                                                "max_new_tokens": 40, "max_items": 2, "balanced_decoding": True})
    run = config.start_run("predict_t5", params, upstream={"model": train_run.dir, "sets": sets_dir},
                           root=tmp_path)
    records = t5.predict(run).to_dict("records")
    assert {r["model"] for r in records} == {"t5-scratch+balanced", "copy-prompt"}
    for r in records:
        for equation in r["prediction"].split(t5.JOIN):
            assert syntax._apply(syntax.START, syntax._events(equation)) is not None, r["prediction"]


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_from_last_checkpoint(sets_dir, tmp_path):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise Interrupt

    params = train_params(sets_dir, checkpoint_every=4, epochs=1, max_train_items=48)  # 6 steps
    run = config.start_run("train_t5", params, upstream={"sets": sets_dir}, root=tmp_path)
    with pytest.raises(Interrupt):
        t5.train(run, callbacks=[StopAfter()])
    assert not run.complete and (run.path("checkpoints") / "checkpoint-4").is_dir()
    result = t5.train(config.start_run("train_t5", params, upstream={"sets": sets_dir}, root=tmp_path))
    assert result.summary["resumed_from"] == "checkpoint-4"
    assert result.summary["steps"] == 6
    train_steps = [h["step"] for h in result.history if "loss" in h]
    assert train_steps[-1] == 6
    assert "resuming from checkpoint-4" in run.path("log.txt").read_text()


def test_dev_rouge2_pairs_each_output_with_its_own_reference(sets_dir):
    import numpy as np
    from transformers import EvalPrediction

    items = config.read_jsonl(sets_dir / "dev.jsonl")
    tokenizer = tokenization.train_latex_tokenizer([it["derivation"] for it in items], 300)
    labels = tokenizer(text_target=[it["derivation"] for it in items], padding=True, return_tensors="np")["input_ids"]
    labels = np.where(labels == tokenizer.pad_token_id, -100, labels)
    metric = t5.dev_rouge2_metric(tokenizer)
    # the Trainer evaluates length-grouped batches in its own order, not the dev file's
    order = [3, 1, 4, 0, 5, 2]
    assert metric(EvalPrediction(predictions=labels[order], label_ids=labels[order]))["rouge2"] == 1.0
    assert metric(EvalPrediction(predictions=labels[order], label_ids=labels))["rouge2"] < 0.9


def optimizer_groups(sets_dir, root, **overrides) -> list[tuple[float, set[str]]]:
    """(initial learning rate, parameter names) of each optimizer group of a 2-step tiny run."""
    from transformers import TrainerCallback

    groups = []

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            names = {id(p): name for name, p in model.named_parameters()}
            groups.extend((g["initial_lr"], {names[id(p)] for p in g["params"]})
                          for g in optimizer.param_groups if g["params"])

    params = train_params(sets_dir, epochs=1, max_train_items=16, **overrides)
    t5.train(config.start_run("train_t5", params, upstream={"sets": sets_dir}, root=root),
             callbacks=[Capture()])
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
    assert t5.position_bias_rate(train_params(sets_dir, position_bias_learning_rate=0.05)) == 0.05
    assert t5.position_bias_rate(train_params(sets_dir, model="t5-small", position_bias_learning_rate=0.05)) == 0


# ----------------------------------------------------------------------------------- bad input

def test_unknown_model_is_rejected_before_training(sets_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in ("no-such-org/no-such-t5-model", str(tmp_path / "missing-dir")):
        run = config.start_run("train_t5", train_params(sets_dir, model=model),
                               upstream={"sets": sets_dir}, root=tmp_path)
        with pytest.raises(ParameterError, match="parameter 'model'.*cannot load"):
            t5.train(run)
        assert not run.path("checkpoints").exists()


def test_missing_field_is_rejected(tmp_path):
    broken = make_sets_dir(tmp_path, mutate=lambda r: {k: v for k, v in r.items() if k != "derivation"})
    run = config.start_run("train_t5", train_params(broken), upstream={"sets": broken}, root=tmp_path)
    with pytest.raises(ValueError, match="train.jsonl: item 1 .*lacks field.*derivation"):
        t5.train(run)


def test_max_length_shorter_than_every_example(sets_dir, tmp_path):
    run = config.start_run("train_t5", train_params(sets_dir, max_length=4),
                           upstream={"sets": sets_dir}, root=tmp_path)
    with pytest.raises(ParameterError, match="max_length.*shorter than every training example"):
        t5.train(run)
    assert not run.path("checkpoints").exists()


def test_sub_derivations_need_the_steps(sets_dir, tmp_path):
    # the synthetic items carry no equations list: nothing to cut sub-derivations from
    run = config.start_run("train_t5", train_params(sets_dir, sub_derivations=True),
                           upstream={"sets": sets_dir}, root=tmp_path)
    with pytest.raises(ParameterError, match="sub_derivations.*lacks equations"):
        t5.train(run)
    assert not run.path("checkpoints").exists()


def test_precision(sets_dir):
    with pytest.raises(ParameterError, match="precision.*fp16"):
        train_params(sets_dir, precision="fp16")
    assert t5.use_bf16("bf16") and not t5.use_bf16("fp32")
    import torch
    if not torch.cuda.is_available():  # auto on a CPU: bf16 exactly when oneDNN computes in bf16
        assert t5.use_bf16("auto") == torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_bad_parameters_and_cli_errors(sets_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(ParameterError, match="d_model"):
        train_params(sets_dir, d_model=30, num_heads=4)
    with pytest.raises(ParameterError, match="batch_size"):
        train_params(sets_dir, batch_size=0)
    with pytest.raises(ParameterError, match="position_bias_learning_rate"):
        train_params(sets_dir, position_bias_learning_rate=-0.1)
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path))
    assert main(["train", "--sets", str(tmp_path / "nothing")]) == 2
    assert "not a complete run directory" in capsys.readouterr().err


def test_released_references_are_well_formed(flan_results):
    items = json.loads(Path(flan_results).read_text())
    for key in ("derivation", "VR derivation", "EE derivation", "AG derivation"):
        assert all(t5.is_well_formed(item[key]) for item in items), key
    # the authors' model outputs, split by their tokenizer ("\ frac { d }"), are not printer output
    assert not all(t5.is_well_formed(item["static_flan-t5-large"]) for item in items)
