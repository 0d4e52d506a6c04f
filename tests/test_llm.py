"""The OpenAI-compatible client, its retries and its cache, against a real HTTP server on 127.0.0.1
(tests/llm_server.py) through the real ``openai`` library. Backoff sleeps are recorded, not slept,
so every test runs in well under a second apart from the two that start a subprocess."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derivlib import config, fewshot
from derivlib.models import llm

sys.path.insert(0, str(Path(__file__).parent))
from llm_server import FakeChatServer  # noqa: E402

FAKE_KEY = "sk-derivlib-FAKE-KEY-7f3a9c1e5b"
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------- fixtures

def make_sets(directory: Path, n_train: int = 12, n_test: int = 5) -> Path:
    """A sets directory in the 02_testsets format: each perturbed item shares its static item's
    id; every prompt's goal is unique, so the fake server's answer names the prompt it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    train = [{"id": f"tr{i}", "prompt": f"Given p_{i} = {i}, then obtain q_{i} = {i}",
              "derivation": f"p_{i} = {i} and q_{i} = {i}", "srepr_derivation": []} for i in range(n_train)]
    config.write_jsonl(directory / "train.jsonl", train)
    for set_name in fewshot.SETS:
        items = [{"id": f"g0-{i}", "prompt": f"Given f_{i} = {i}, then obtain g_{{{set_name}}} = {i}",
                  "derivation": f"f_{i} = {i} and g_{{{set_name}}} = {i}",
                  "srepr_derivation": [["premise", f"Integer({i})"]]} for i in range(n_test)]
        config.write_jsonl(directory / f"{set_name}.jsonl", items)
    config.atomic_write_json(directory / "meta.json", {"key": "testsets-fake"})
    config.atomic_write_text(directory / config.COMPLETE, "done\n")
    return directory


@pytest.fixture
def sets_dir(tmp_path):
    return make_sets(tmp_path / "sets")


@pytest.fixture
def server():
    with FakeChatServer(models=("test-model",), timeout_sleep=0.6) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


class RecordedSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def fast_policy(**kwargs) -> llm.RetryPolicy:
    kwargs.setdefault("base_delay", 0.001)
    return llm.RetryPolicy(rng=random.Random(0), sleep=RecordedSleep(), **kwargs)


def params(server=None, **kwargs) -> fewshot.PromptParams:
    values = dict(sets="unused", model="test-model", base_url=server.base_url if server else "",
                  mode="live" if server else "auto", concurrency=4, timeout=0.25, profile="")
    values.update(kwargs)
    return config.validate(fewshot.PromptParams, values)


N_PROMPTS = 5 * 5  # five sets of five items


# ----------------------------------------------------------------------------------- faults

def test_every_answer_arrives_exactly_once_through_injected_faults(server, sets_dir, tmp_path):
    faults = {"g_{static} = 0": ["429", "500"], "g_{VR} = 1": ["timeout"], "g_{EE} = 2": ["malformed", "503"],
              "g_{AG} = 3": ["429"], "g_{SR} = 4": ["500", "timeout", "malformed"]}
    for marker, kinds in faults.items():
        server.plan(marker, kinds)
    policy = fast_policy()
    result = fewshot.prompt_sets(params(server), sets_dir, tmp_path / "out", tmp_path / "cache", policy=policy)

    assert len(result.predictions) == N_PROMPTS
    assert set(server.answered.values()) == {1} and len(server.answered) == N_PROMPTS
    assert len(llm.ResponseCache(tmp_path / "cache")) == N_PROMPTS
    n_faults = sum(len(k) for k in faults.values())
    assert result.usage["retries"] == n_faults
    assert result.usage["calls"] == server.total_hits() == N_PROMPTS + n_faults
    assert result.usage["retry_reasons"] == {"429": 2, "500": 2, "503": 1, "timeout": 2, "malformed": 2}
    assert sum(1 for d in policy.sleep.delays if d >= 1.0) == 2  # Retry-After: 1, honoured twice
    # Each answer went to its own item: the fake server answers with the prompt's goal.
    for record in result.predictions:
        assert record["prediction"] == record["prompt"].split("then obtain ")[1]
        assert set(record) == {"id", "model", "set", "prompt", "reference", "prediction", "srepr_derivation"}
    on_disk = config.read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert on_disk == result.predictions
    assert json.loads((tmp_path / "out" / "usage.json").read_text())["new_answers"] == N_PROMPTS


def test_clear_error_after_the_last_retry_and_nothing_answered_is_lost(server, sets_dir, tmp_path):
    server.plan("g_{VR} = 2", ["500", "500", "500"])
    with pytest.raises(llm.LLMError, match=r"item g0-2 \(VR\).*gave up after 3 attempts.*500"):
        fewshot.prompt_sets(params(server, concurrency=1), sets_dir, tmp_path / "out", tmp_path / "cache",
                            policy=fast_policy(max_retries=2))
    cache = llm.ResponseCache(tmp_path / "cache")
    answered_before = server.total_answered()
    assert len(cache) == answered_before > 0  # every answer received was cached
    # The fault has passed: the rerun asks only for what is missing.
    hits_before = server.total_hits()
    result = fewshot.prompt_sets(params(server), sets_dir, tmp_path / "out", tmp_path / "cache", policy=fast_policy())
    assert len(result.predictions) == N_PROMPTS
    assert server.total_hits() - hits_before == N_PROMPTS - answered_before
    assert set(server.answered.values()) == {1}


def test_retry_policy_backs_off_exponentially_with_jitter_and_honours_retry_after():
    policy = llm.RetryPolicy(base_delay=1.0, max_delay=8.0, rng=random.Random(1))
    for attempt in range(6):
        full = min(8.0, 2.0 ** attempt)
        delay = policy.delay(attempt)
        assert full / 2 <= delay <= full
    assert policy.delay(0, retry_after=30.0) == 30.0
    assert llm.parse_retry_after("2.5") == 2.5
    assert llm.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert llm.parse_retry_after("soon") is None and llm.parse_retry_after(None) is None


# ----------------------------------------------------------------------------------- resume

class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_from_the_cache_without_asking_again(server, sets_dir, tmp_path):
    server.answer_delay = 0.05  # answers arrive while the run is being interrupted
    seen = []

    def die_after_seven(request, answer):
        seen.append(request.item)
        if len(seen) == 7:
            raise Interrupted

    with pytest.raises(Interrupted):
        fewshot.prompt_sets(params(server, concurrency=2), sets_dir, tmp_path / "out", tmp_path / "cache",
                            policy=fast_policy(), on_answer=die_after_seven)
    cached = len(llm.ResponseCache(tmp_path / "cache"))
    assert 7 <= cached < N_PROMPTS and cached == server.total_answered()
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    hits_before = server.total_hits()
    result = fewshot.prompt_sets(params(server, concurrency=3), sets_dir, tmp_path / "out", tmp_path / "cache",
                                 policy=fast_policy())
    assert server.total_hits() - hits_before == N_PROMPTS - cached
    assert result.usage["cached_answers"] == cached and result.usage["new_answers"] == N_PROMPTS - cached
    assert set(server.answered.values()) == {1} and len(server.answered) == N_PROMPTS
    log = config.read_jsonl(tmp_path / "out" / "usage_log.jsonl")
    assert [entry["status"] for entry in log] == ["interrupted", "finished"]
    assert sum(entry["calls"] for entry in log) == server.total_hits()  # every call on record
    # Same bytes as a run that was never interrupted, with another number of workers.
    fewshot.prompt_sets(params(server, concurrency=1), sets_dir, tmp_path / "clean", tmp_path / "cache2",
                        policy=fast_policy())
    assert (tmp_path / "out" / "predictions.jsonl").read_bytes() == \
        (tmp_path / "clean" / "predictions.jsonl").read_bytes()


def _cli(sets_dir, out, base_url, *extra):
    return [sys.executable, "-m", "derivlib", "prompt", "--model", "test-model", "--base-url", base_url,
            "--sets", str(sets_dir), "--out", str(out), "--timeout", "5", "--backoff", "0.001", *extra]


@pytest.mark.slow
def test_killed_cli_rerun_asks_nothing_twice(sets_dir, tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "DERIVLIB_DATA": str(tmp_path / "data")}
    out = tmp_path / "out"
    with FakeChatServer(answer_delay=0.05) as server:
        proc = subprocess.Popen(_cli(sets_dir, out, server.base_url, "--concurrency", "1"), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        cache = llm.ResponseCache(out / "cache")
        deadline = time.monotonic() + 60
        while len(cache) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()
        cached_prompts = {cache.get(k)["messages"][-1]["content"] for k in cache.keys()}
        assert 5 <= len(cached_prompts) < N_PROMPTS
        assert not list((out / "cache").glob("*/*.json.tmp"))  # no half-written answer was published
        hits_at_kill = dict(server.hits)
        rerun = subprocess.run(_cli(sets_dir, out, server.base_url, "--concurrency", "2"), cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        for prompt in cached_prompts:
            assert server.hits[prompt] == hits_at_kill[prompt]  # never asked again
        assert server.total_hits() - sum(hits_at_kill.values()) == N_PROMPTS - len(cached_prompts)
    assert len(config.read_jsonl(out / "predictions.jsonl")) == N_PROMPTS
    assert len(cache) == N_PROMPTS


# ----------------------------------------------------------------------------------- modes

def test_replay_never_touches_the_network(server, sets_dir, tmp_path):
    fewshot.prompt_sets(params(server, max_items=2), sets_dir, tmp_path / "out", tmp_path / "cache", policy=fast_policy())
    hits = server.total_hits()
    result = fewshot.prompt_sets(params(server, mode="replay", max_items=2), sets_dir, tmp_path / "out2",
                                 tmp_path / "cache")
    assert len(result.predictions) == 10 and server.total_hits() == hits
    with pytest.raises(llm.LLMError, match=r"replay mode: no cached answer for item g0-2 \(static\) \(and 4 more\)"):
        fewshot.prompt_sets(params(server, mode="replay", max_items=3), sets_dir, tmp_path / "out3", tmp_path / "cache")
    assert server.total_hits() == hits


def test_auto_without_endpoint_replays_what_is_cached_and_says_what_it_skipped(server, sets_dir, tmp_path,
                                                                               monkeypatch, capsys):
    fewshot.prompt_sets(params(server, max_items=2), sets_dir, tmp_path / "out", tmp_path / "cache", policy=fast_policy())
    monkeypatch.delenv("OPENAI_API_KEY")
    result = fewshot.prompt_sets(params(None, mode="auto"), sets_dir, tmp_path / "out", tmp_path / "cache")
    assert result.mode == "replay" and len(result.predictions) == 10 and len(result.skipped) == 15
    assert "SKIPPED 15 of 25 prompts" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "usage.json").read_text())["skipped"] == 15
    # Nothing cached at all: still completes, with an empty predictions file.
    empty = fewshot.prompt_sets(params(None, mode="auto"), sets_dir, tmp_path / "empty", tmp_path / "nocache")
    assert empty.predictions == [] and (tmp_path / "empty" / "predictions.jsonl").read_text() == ""


def test_cache_key_covers_model_messages_and_decoding_but_not_the_endpoint(tmp_path):
    messages = llm.user_message("Given a = b, then obtain b = a")
    base = llm.Decoding(model="m", temperature=0.0, max_tokens=10, seed=1)
    key = llm.request_key(messages, base)
    assert len(key) == 64 and key == llm.request_key(list(messages), llm.Decoding("m", 0.0, 10, 1))
    for other in (llm.Decoding("m2", 0.0, 10, 1), llm.Decoding("m", 0.5, 10, 1),
                  llm.Decoding("m", 0.0, 11, 1), llm.Decoding("m", 0.0, 10, 2)):
        assert llm.request_key(messages, other) != key
    assert llm.request_key(llm.user_message("Given a = c, then obtain c = a"), base) != key
    cache = llm.ResponseCache(tmp_path)
    assert cache.put(key, {"answer": "first"}) and not cache.put(key, {"answer": "second"})
    assert cache.get(key)["answer"] == "first"
    (cache.path(key).parent / f".{key}.json.999-1.tmp").write_text('{"answer": "torn')  # a killed writer
    assert cache.keys() == [key]


# ----------------------------------------------------------------------------------- bad input

def _snapshot(directory: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*.json"))}


def test_live_mode_without_endpoint_is_an_error(sets_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(llm.LLMError, match="live mode needs an endpoint"):
        fewshot.prompt_sets(params(None, mode="live"), sets_dir, tmp_path / "out", tmp_path / "cache")


def test_unknown_model_and_empty_answer_name_the_item_and_keep_the_cache(server, sets_dir, tmp_path):
    fewshot.prompt_sets(params(server, max_items=1), sets_dir, tmp_path / "out", tmp_path / "cache", policy=fast_policy())
    before = _snapshot(tmp_path / "cache")
    assert len(before) == 5
    with pytest.raises(llm.LLMError, match=r"item g0-\d \(\w+\): model 'no-such-model'.*404"):
        fewshot.prompt_sets(params(server, model="no-such-model"), sets_dir, tmp_path / "out", tmp_path / "cache",
                            policy=fast_policy())
    server.plan("g_{EE} = 1", ["empty"])
    with pytest.raises(llm.LLMError, match=r"item g0-1 \(EE\).*empty answer"):
        fewshot.prompt_sets(params(server, max_items=2, concurrency=1), sets_dir, tmp_path / "out",
                            tmp_path / "cache", policy=fast_policy())
    after = _snapshot(tmp_path / "cache")
    assert all(after[p] == data for p, data in before.items())  # nothing cached was lost or changed
    assert all(json.loads(d)["answer"].strip() for d in after.values())  # and no empty answer stored


def test_cli_reports_errors_in_one_line(server, sets_dir, tmp_path):
    from derivlib.__main__ import main
    code = main(["prompt", "--model", "no-such-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                 "--out", str(tmp_path / "out"), "--max-items", "1", "--backoff", "0"])
    assert code == 2
    code = main(["prompt", "--model", "test-model", "--sets", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert code == 2


# ----------------------------------------------------------------------------------- the key

def test_the_api_key_is_sent_but_never_written(server, sets_dir, tmp_path, capsys):
    from derivlib.__main__ import main
    server.plan("g_{static} = 1", ["429", "500"])
    out = tmp_path / "cli"
    assert main(["prompt", "--model", "test-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                 "--out", str(out), "--backoff", "0.001", "--max-items", "2"]) == 0
    assert main(["prompt", "--model", "no-such-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                 "--out", str(out), "--max-items", "2"]) == 2
    printed = capsys.readouterr()
    assert server.authorizations and all(a == f"Bearer {FAKE_KEY}" for a in server.authorizations)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in printed.out + printed.err


def test_base_url_parameter_may_not_hold_credentials():
    with pytest.raises(config.ParameterError, match="credentials"):
        params(None, base_url="http://user:secret@127.0.0.1:1/v1")
    assert llm.redact_url("http://user:secret@host:8000/v1") == "http://host:8000/v1"


@pytest.mark.slow
def test_notebook_live_then_offline_never_writes_the_key(server, tmp_path, monkeypatch):
    from derivlib import notebooks
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DERIVLIB_FIGURES", str(tmp_path / "figures"))
    make_sets(tmp_path / "data" / "testsets" / "tiny")
    server.plan("g_{AG} = 0", ["429"])
    server.retry_after = "0"
    live = {"model": "test-model", "base_url": server.base_url, "timeout": 5.0}
    notebooks.execute("05_prompt_llm", "tiny", tmp_path / "build" / "live.ipynb", overrides=live, log_output=False)
    published = tmp_path / "data" / "prompt_llm" / "tiny"
    assert len(config.read_jsonl(published / "predictions.jsonl")) == N_PROMPTS
    assert len(llm.ResponseCache(tmp_path / "data" / "llm" / "cache")) == N_PROMPTS
    hits = server.total_hits()
    # Offline (no endpoint, no key): the same prompts replay from data/llm/cache, asking nothing.
    monkeypatch.delenv("OPENAI_API_KEY")
    notebooks.execute("05_prompt_llm", "tiny", tmp_path / "build" / "offline.ipynb",
                      overrides={"model": "test-model", "timeout": 5.0}, log_output=False)
    assert server.total_hits() == hits
    offline = sorted((tmp_path / "data" / "prompt_llm").glob("[0-9a-f]*"))
    assert len(offline) == 2  # base_url is a parameter, so the offline run has its own directory
    assert all(len(config.read_jsonl(d / "predictions.jsonl")) == N_PROMPTS for d in offline)
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert FAKE_KEY.encode() not in path.read_bytes(), path


def released_sets(directory: Path, gpt4_results: Path, flan_results: Path, n_items: int) -> Path:
    """A sets directory from the authors' released items: the test items are the FLAN file's bare
    prompts, the training set the exemplars parsed out of the GPT file's 5-shot prompts."""
    from derivlib import paper
    gpt, flan = paper.load_items(gpt4_results), paper.load_items(flan_results)
    train = {}
    for item in gpt:
        for exemplar in fewshot.parse_prompt(item["prompt"])[0]:
            train.setdefault(exemplar["prompt"], exemplar)
    directory.mkdir(parents=True)
    config.write_jsonl(directory / "train.jsonl", train.values())
    for set_name in paper.SETS:
        config.write_jsonl(directory / f"{set_name}.jsonl", [
            {"id": f"paper-{i:03d}", "prompt": item[paper.field(set_name, "prompt")],
             "derivation": item[paper.field(set_name, "derivation")],
             "srepr_derivation": item[paper.field(set_name, "srepr_derivation")]}
            for i, item in enumerate(flan[:n_items])])
    return directory


def test_released_items_end_to_end(gpt4_results, flan_results, tmp_path):
    from derivlib import paper
    gpt = paper.load_items(gpt4_results)
    released = {}  # bare prompt -> GPT-4's released answer
    for item in gpt[:8]:
        for set_name in paper.SETS:
            _, query = fewshot.parse_prompt(item[paper.field(set_name, "prompt")])
            released[query] = item[f"{set_name}_gpt-4"]

    def chatty(prompt):
        query = prompt.rsplit("Prompt:", 1)[1].strip()
        return f"Here is the derivation:\n\nDerivation: {released[query]}\n\nLet me know if you need more."

    sets = released_sets(tmp_path / "sets", gpt4_results, flan_results, n_items=8)
    with FakeChatServer(answer=chatty) as server:
        result = fewshot.prompt_sets(params(server), sets, tmp_path / "out", tmp_path / "cache", policy=fast_policy())
        assert len(result.predictions) == 40 and set(server.answered.values()) == {1}
    assert result.usage["new_answers"] == len(server.requests) == len(released)  # identical prompts asked once
    for record in result.predictions:
        assert record["prediction"] == " ".join(released[record["prompt"]].split())
        assert record["reference"] and record["srepr_derivation"]
