"""``python -m derivlib serve``: transformers' OpenAI-compatible server around a local model, met
as ``prompt --base-url`` meets it. The model is a tiny random Llama with a ChatML template, saved
by the test; the server is a real ``serve`` process on a free loopback port. Bad input is refused
in one line before anything loads."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derivlib import __main__ as cli
from derivlib.base.files import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from llm_support import REPO, Served, environment, make_sets  # noqa: E402


def greedy(directory: Path, user: str, max_new_tokens: int) -> str:
    """The model's greedy answer, decoded here without the server."""
    import torch  # optional heavy dependency
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def prompt_command(served: Served, sets: Path, cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "derivlib", "prompt", "--model", served.name, "--sets", str(sets),
            "--base-url", served.url, "--cache", str(cache), "--out", str(out), "--max-items", "2",
            "--n-shots", "0", "--max-tokens", "16"]


@pytest.mark.slow
def test_serve_answers_openai_clients_and_prompt_asks_nothing_twice(tiny_chat_lm, tmp_path):
    """The whole flow, about 40 s: start, /health, /v1/models, greedy chat completions, two
    ``prompt`` runs through the cache (the second makes no HTTP call), Ctrl-C (exit status 130)."""
    import openai

    model = tiny_chat_lm
    sets = make_sets(tmp_path / "sets")
    served = Served(model, tmp_path)
    try:
        assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/v1")
        assert served.get("/health").json() == {"status": "ok"}
        listed = served.get("/v1/models").json()
        assert [entry["id"] for entry in listed["data"]] == [served.name]

        client = openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)
        user = "Given f = 1, then obtain g = 1"
        started = time.perf_counter()
        answers = [client.chat.completions.create(model=served.name, messages=[{"role": "user", "content": user}],
                                                  temperature=0.0, max_tokens=12, seed=seed)
                   for seed in (1, 2)]
        latency = (time.perf_counter() - started) / len(answers)
        print(f"serve: started in {served.start_s:.1f} s, {latency:.2f} s per 12-token answer")
        # temperature 0 is greedy whatever the seed, though the model's own config samples.
        assert answers[0].choices[0].message.content == answers[1].choices[0].message.content
        assert answers[0].choices[0].message.content == greedy(model, user, max_new_tokens=12)
        assert answers[0].model == served.name and answers[0].usage.completion_tokens == 12
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="another-model", messages=[{"role": "user", "content": user}])
        assert refused.value.response.json() == {
            "detail": f"Server is pinned to '{served.name}'; requested 'another-model'."}

        cache = tmp_path / "cache"
        env = environment(tmp_path)
        for out in (tmp_path / "first", tmp_path / "second"):
            done = subprocess.run(prompt_command(served, sets, cache, out), cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
        first = json.loads((tmp_path / "first" / "usage.json").read_text())
        second = json.loads((tmp_path / "second" / "usage.json").read_text())
        assert first["prompts"] == 10 and first["new_answers"] == 10 and first["calls"] >= 10
        assert not first["failed_items"]
        assert second["calls"] == 0 and second["cached_answers"] == 10 and second["new_answers"] == 0
        assert read_jsonl(tmp_path / "first" / "predictions.jsonl") == read_jsonl(
            tmp_path / "second" / "predictions.jsonl")
        assert {row["model"] for row in read_jsonl(tmp_path / "second" / "predictions.jsonl")} == {served.name}

        assert served.stop() == 130
        assert f"stopped serving {served.name}" in served.log.read_text()
    finally:
        served.kill()


def serve(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["serve", *args])
    return code, capsys.readouterr().err


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "data"))


def test_bad_input_is_one_line_before_anything_loads(tiny_causal_lm, tmp_path, capsys, offline):
    model = tiny_causal_lm
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = serve(capsys, "--model", str(model), "--port", port)
        assert code == 2 and err == f"error: port {port} on 127.0.0.1 is in use (another server?); choose " \
                                     "another --port, or --port 0 for a free one\n"
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 not a GGUF file")
    cases = [
        (("--model", str(fake)), "weights.gguf"),
        (("--model", "no-such-org/no-such-model"), "no-such-org/no-such-model"),
        (("--model", str(model), "--port", "70000"), "--port must be between 0 and 65535, got 70000"),
        (("--model", str(model), "--served-model-name", "a@b"), "served model name must be one word"),
        (("--model", str(model), "--dtype", "float99"), "--dtype must be auto or a torch dtype"),
        (("--model", str(model), "--host", "no-such-host.invalid"), "--host 'no-such-host.invalid' is not an"),
    ]
    for args, named in cases:
        code, err = serve(capsys, *args)
        assert code == 2 and err.startswith("error: ") and named in err and err.count("\n") == 1, (args, err)
        assert "Loading" not in err


def test_a_model_without_a_chat_template_is_refused(tiny_causal_lm, tmp_path, capsys, offline):
    model = shutil.copytree(tiny_causal_lm, tmp_path / "plain")
    (model / "chat_template.jinja").unlink()
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    code, err = serve(capsys, "--model", str(model), "--port", "0")
    assert code == 2 and "has no chat template" in err and "--backend transformers" in err
