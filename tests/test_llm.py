"""The OpenAI-compatible client, its retries and its cache, and the prompt_llm stage and command,
against a real HTTP server on 127.0.0.1 (tests/llm_server.py) through the real ``openai`` library.
Backoff sleeps are recorded, not slept, so every test runs in well under a second apart from the
two that start a subprocess."""
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

from derivlib import __main__ as cli
from derivlib import fewshot
from derivlib.base.files import read_jsonl, write_jsonl
from derivlib.base.params import ParameterError, validate
from derivlib.base.vocabulary import SETS, field
from derivlib.cli import notebook as notebooks
from derivlib.models import llm
from derivlib.readers import released
from derivlib.stages import prompt_llm, rundir

sys.path.insert(0, str(Path(__file__).parent))
from llm_server import FakeChatServer  # noqa: E402
from llm_support import FAKE_KEY, N_PROMPTS, REPO, cli_command, fast_policy, make_sets, prompt, values  # noqa: E402


# ----------------------------------------------------------------------------------- fixtures

@pytest.fixture
def sets_dir(tmp_path):
    return make_sets(tmp_path / "sets")


@pytest.fixture
def server():
    with FakeChatServer(models=("test-model",), timeout_sleep=1.2) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake_key(monkeypatch, isolated_data):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# ----------------------------------------------------------------------------------- faults

def test_every_answer_arrives_exactly_once_through_injected_faults(server, sets_dir, tmp_path):
    faults = {"g_{static} = 0": ["429", "500"], "g_{VR} = 1": ["timeout"], "g_{EE} = 2": ["malformed", "503"],
              "g_{AG} = 3": ["429"], "g_{SR} = 4": ["500", "timeout", "malformed"]}
    for marker, kinds in faults.items():
        server.plan(marker, kinds)
    policy = fast_policy()
    result = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, policy=policy)

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
    on_disk = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert on_disk == result.predictions
    assert json.loads((tmp_path / "out" / "usage.json").read_text())["new_answers"] == N_PROMPTS


def test_clear_error_after_the_last_retry_and_nothing_answered_is_lost(server, sets_dir, tmp_path):
    server.plan("g_{VR} = 2", ["500", "500", "500"])
    with pytest.raises(llm.LLMError, match=r"item g0-2 \(VR\).*gave up after 3 attempts.*500"):
        prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, concurrency=1,
               policy=fast_policy(max_retries=2))
    cache = llm.ResponseCache(tmp_path / "cache")
    answered_before = server.total_answered()
    assert len(cache) == answered_before > 0  # every answer received was cached
    assert not (tmp_path / "out").exists()  # a failed run is not a complete run directory
    # The fault has passed: the rerun asks only for what is missing.
    hits_before = server.total_hits()
    result = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, policy=fast_policy())
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


# ----------------------------------------------------------------------------------- the stage

def test_stage_writes_a_complete_run_and_a_rerun_asks_nothing(server, sets_dir, isolated_data):
    namespace = {**values(server), "sets": str(sets_dir), "profile": "tiny"}
    run = prompt_llm.open_run(namespace)
    result = prompt_llm.run(run, fast_policy())
    assert run.complete and run.dir == run.final == rundir.data_root() / "prompt_llm" / run.key
    for name in ("params.json", "meta.json", "predictions.jsonl", "usage.json", rundir.COMPLETE):
        assert (run.dir / name).exists(), name
    assert (rundir.data_root() / "prompt_llm" / "tiny").resolve() == run.dir.resolve()  # published
    meta = json.loads((run.dir / "meta.json").read_text())
    assert meta["upstream"] == {"sets": str(sets_dir.resolve())}
    assert meta["counts"] == result.counts and result.counts["new_answers"] == N_PROMPTS and result.mode == "live"
    # answers went to the shared cache outside the run directory
    assert len(llm.ResponseCache(prompt_llm.default_cache_dir())) == N_PROMPTS
    assert not list(run.dir.rglob("??/*.json"))
    assert result.summary_table().loc["static", "predictions"] == 5
    assert result.usage_table().loc["new answers", "count"] == N_PROMPTS
    assert list(result.examples_table(2)["id"]) == ["g0-0", "g0-1"]
    hits = server.total_hits()
    again = prompt_llm.open_run(namespace)
    assert again.complete and again.final == run.final
    loaded = prompt_llm.run(again, fast_policy())
    assert loaded.predictions == result.predictions and server.total_hits() == hits  # asked nothing
    # Another run of the same prompts (another --out) is answered from the cache alone.
    elsewhere = prompt_llm.run(prompt_llm.open_run(namespace, out=isolated_data / "elsewhere"), fast_policy())
    assert elsewhere.usage["cached_answers"] == N_PROMPTS and server.total_hits() == hits
    assert (isolated_data / "elsewhere" / "predictions.jsonl").read_bytes() == \
        (run.dir / "predictions.jsonl").read_bytes()


def test_stage_takes_a_directory_of_set_files_by_their_digest(server, tmp_path):
    plain = make_sets(tmp_path / "plain")
    (plain / rundir.COMPLETE).unlink()  # a directory of set files, not a run
    first = prompt_llm.open_run({**values(server), "sets": str(plain)})
    assert first.upstream == {} and set(first.inputs) >= {"sets/train", "sets/static", "sets/SR"}
    prompt_llm.run(first, fast_policy())
    write_jsonl(plain / "SR.jsonl", read_jsonl(plain / "SR.jsonl")[:2])
    second = prompt_llm.open_run({**values(server), "sets": str(plain)})
    assert second.key != first.key and not second.complete  # other content, other run
    with pytest.raises(ParameterError, match="'sets'.*not a complete run directory"):
        prompt_llm.open_run({**values(server), "sets": str(tmp_path / "nowhere")})


def test_prompt_refuses_an_out_that_holds_its_sets(server, sets_dir):
    with pytest.raises(ParameterError, match="holds the input"):
        prompt(sets_dir, sets_dir, sets_dir / "cache", server)
    assert sorted(p.name for p in sets_dir.iterdir()) == sorted(
        [f"{n}.jsonl" for n in ("train", *SETS)] + ["meta.json", rundir.COMPLETE])


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
        prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, concurrency=2,
               policy=fast_policy(), on_answer=die_after_seven)
    cached = len(llm.ResponseCache(tmp_path / "cache"))
    assert 7 <= cached < N_PROMPTS and cached == server.total_answered()
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    hits_before = server.total_hits()
    result = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, concurrency=2, policy=fast_policy())
    assert server.total_hits() - hits_before == N_PROMPTS - cached
    assert result.usage["cached_answers"] == cached and result.usage["new_answers"] == N_PROMPTS - cached
    assert set(server.answered.values()) == {1} and len(server.answered) == N_PROMPTS
    log = read_jsonl(tmp_path / "out" / "usage_log.jsonl")
    assert [entry["status"] for entry in log] == ["interrupted", "finished"]
    assert sum(entry["calls"] for entry in log) == server.total_hits()  # every call on record
    # Same bytes as a run that was never interrupted, with another number of workers.
    prompt(sets_dir, tmp_path / "clean", tmp_path / "cache2", server, concurrency=1, policy=fast_policy())
    assert (tmp_path / "out" / "predictions.jsonl").read_bytes() == \
        (tmp_path / "clean" / "predictions.jsonl").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [5, 15])
def test_killed_cli_rerun_asks_nothing_twice_and_gives_the_uninterrupted_bytes(sets_dir, tmp_path, kill_after):
    """``prompt`` SIGKILLed once ``kill_after`` answers are cached, then rerun: nothing cached is
    asked again, and its predictions.jsonl equals, byte for byte, that of an uninterrupted run
    with a cache of its own."""
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "DERIVLIB_DATA": str(tmp_path / "data")}
    out = tmp_path / "out"
    with FakeChatServer(answer_delay=0.05) as server:
        proc = subprocess.Popen(cli_command(sets_dir, out, server.base_url, "--concurrency", "1"), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        cache = llm.ResponseCache(tmp_path / "data" / "llm" / "cache")  # the default: <data root>/llm/cache
        deadline = time.monotonic() + 60
        while len(cache) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()
        cached_prompts = {cache.get(k)["messages"][-1]["content"] for k in cache.keys()}
        assert kill_after <= len(cached_prompts) < N_PROMPTS
        assert not list(cache.directory.glob("*/*.json.tmp"))  # no half-written answer was published
        assert not out.exists()  # the killed run never became a complete run directory
        hits_at_kill = dict(server.hits)
        rerun = subprocess.run(cli_command(sets_dir, out, server.base_url, "--concurrency", "2"), cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        for prompt_text in cached_prompts:
            assert server.hits[prompt_text] == hits_at_kill[prompt_text]  # never asked again
        assert server.total_hits() - sum(hits_at_kill.values()) == N_PROMPTS - len(cached_prompts)
        uninterrupted = tmp_path / "uninterrupted"
        whole = subprocess.run(cli_command(sets_dir, uninterrupted, server.base_url, "--cache",
                                           str(tmp_path / "own-cache")), cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
        assert whole.returncode == 0, whole.stderr
    assert len(read_jsonl(out / "predictions.jsonl")) == N_PROMPTS
    assert (out / "predictions.jsonl").read_bytes() == (uninterrupted / "predictions.jsonl").read_bytes()
    assert (out / rundir.COMPLETE).exists() and not out.with_name("out.partial").exists()
    assert len(cache) == N_PROMPTS


# ----------------------------------------------------------------------------------- modes

def test_replay_never_touches_the_network(server, sets_dir, tmp_path):
    prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=2, policy=fast_policy())
    hits = server.total_hits()
    result = prompt(sets_dir, tmp_path / "out2", tmp_path / "cache", server, mode="replay", max_items=2)
    assert len(result.predictions) == 10 and server.total_hits() == hits
    with pytest.raises(llm.LLMError, match=r"replay mode: no cached answer for item g0-2 \(static\) \(and 4 more\)"):
        prompt(sets_dir, tmp_path / "out3", tmp_path / "cache", server, mode="replay", max_items=3)
    assert server.total_hits() == hits


def test_auto_without_endpoint_replays_what_is_cached_and_says_what_it_skipped(server, sets_dir, tmp_path,
                                                                               monkeypatch, capsys):
    prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=2, policy=fast_policy())
    monkeypatch.delenv("OPENAI_API_KEY")
    result = prompt(sets_dir, tmp_path / "offline", tmp_path / "cache", mode="auto")
    assert result.mode == "replay" and len(result.predictions) == 10 and len(result.skipped) == 15
    assert "SKIPPED 15 of 25 prompts" in capsys.readouterr().out
    assert json.loads((tmp_path / "offline" / "usage.json").read_text())["skipped"] == 15
    # A complete run that skipped prompts is redone from the cache: answers fetched since count.
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    prompt(sets_dir, tmp_path / "all", tmp_path / "cache", server, policy=fast_policy())
    monkeypatch.delenv("OPENAI_API_KEY")
    hits = server.total_hits()
    redone = prompt(sets_dir, tmp_path / "offline", tmp_path / "cache", mode="auto")
    assert len(redone.predictions) == N_PROMPTS and not redone.skipped and server.total_hits() == hits
    assert json.loads((tmp_path / "offline" / "meta.json").read_text())["counts"]["skipped"] == 0
    # Nothing cached at all: still completes, with an empty predictions file.
    empty = prompt(sets_dir, tmp_path / "empty", tmp_path / "nocache", mode="auto")
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
        prompt(sets_dir, tmp_path / "out", tmp_path / "cache", mode="live")


def test_unknown_model_names_the_item_and_keeps_the_cache(server, sets_dir, tmp_path):
    prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=1, policy=fast_policy())
    before = _snapshot(tmp_path / "cache")
    assert len(before) == 5
    with pytest.raises(llm.LLMError, match=r"item g0-\d \(\w+\): model 'no-such-model'.*404"):
        prompt(sets_dir, tmp_path / "out404", tmp_path / "cache", server, model="no-such-model",
               policy=fast_policy())
    after = _snapshot(tmp_path / "cache")
    assert after == before  # nothing cached was lost or changed, and nothing added


def test_cli_reports_errors_in_one_line(server, sets_dir, tmp_path):
    code = cli.main(["prompt", "--model", "no-such-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(tmp_path / "out"), "--max-items", "1", "--backoff", "0"])
    assert code == 2
    code = cli.main(["prompt", "--model", "test-model", "--sets", str(tmp_path / "nowhere"),
                     "--out", str(tmp_path / "o")])
    assert code == 2


# ----------------------------------------------------------------------------------- the key

def test_the_api_key_is_sent_but_never_written(server, sets_dir, tmp_path, capsys):
    server.plan("g_{static} = 1", ["429", "500"])
    out = tmp_path / "cli"
    assert cli.main(["prompt", "--model", "test-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(out), "--backoff", "0.001", "--max-items", "2"]) == 0
    assert cli.main(["prompt", "--model", "no-such-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(tmp_path / "cli404"), "--max-items", "2"]) == 2
    printed = capsys.readouterr()
    assert "404" in printed.err
    assert server.authorizations and all(a == f"Bearer {FAKE_KEY}" for a in server.authorizations)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY not in printed.out + printed.err


def test_base_url_parameter_may_not_hold_credentials():
    for url in ("http://user:secret@127.0.0.1:1/v1", "http://127.0.0.1:1/v1?api-key=secret"):
        with pytest.raises(ParameterError, match="credentials.*OPENAI_BASE_URL"):
            validate(prompt_llm.Params, values(None, base_url=url))
    assert llm.redact_url("http://user:secret@host:8000/v1") == "http://host:8000/v1"
    # Its redacted form is what the prompt command puts in params.json: accepted.
    validate(prompt_llm.Params, values(None, base_url=llm.redact_url("http://127.0.0.1:1/v1?api-key=secret")))


@pytest.mark.slow
def test_notebook_live_then_offline_never_writes_the_key(server, isolated_data, monkeypatch):
    tmp_path = isolated_data
    make_sets(tmp_path / "data" / "testsets" / "tiny")
    server.plan("g_{AG} = 0", ["429"])
    server.retry_after = "0"
    # the tiny profile prompts the embedded model in process; this is the endpoint arm
    endpoint_arm = {"backend": "openai", "model": "test-model", "timeout": 5.0, "max_items": 5, "n_shots": 5,
                    "max_tokens": 512}
    live = {**endpoint_arm, "base_url": server.base_url}
    notebooks.execute("05_prompt_llm", "tiny", tmp_path / "build" / "live.ipynb", overrides=live, log_output=False)
    published = tmp_path / "data" / "prompt_llm" / "tiny"
    assert len(read_jsonl(published / "predictions.jsonl")) == N_PROMPTS
    assert len(llm.ResponseCache(tmp_path / "data" / "llm" / "cache")) == N_PROMPTS
    hits = server.total_hits()
    # Offline (no endpoint, no key): the same prompts replay from data/llm/cache, asking nothing.
    monkeypatch.delenv("OPENAI_API_KEY")
    notebooks.execute("05_prompt_llm", "tiny", tmp_path / "build" / "offline.ipynb",
                      overrides=endpoint_arm, log_output=False)
    assert server.total_hits() == hits
    offline = sorted((tmp_path / "data" / "prompt_llm").glob("[0-9a-f]*"))
    assert len(offline) == 2  # base_url is a parameter, so the offline run has its own directory
    assert all(len(read_jsonl(d / "predictions.jsonl")) == N_PROMPTS for d in offline)
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert FAKE_KEY.encode() not in path.read_bytes(), path


def released_sets(directory: Path, gpt4_results: Path, flan_results: Path, n_items: int) -> Path:
    """A sets directory from the authors' released items: the test items are the FLAN file's bare
    prompts, the training set the exemplars parsed out of the GPT file's 5-shot prompts."""
    gpt, flan = released.load_items(gpt4_results), released.load_items(flan_results)
    train = {}
    for item in gpt:
        for exemplar in fewshot.parse_prompt(item["prompt"])[0]:
            train.setdefault(exemplar["prompt"], exemplar)
    directory.mkdir(parents=True)
    write_jsonl(directory / "train.jsonl", train.values())
    for set_name in SETS:
        write_jsonl(directory / f"{set_name}.jsonl", [
            {"id": f"paper-{i:03d}", "prompt": item[field(set_name, "prompt")],
             "derivation": item[field(set_name, "derivation")],
             "srepr_derivation": item[field(set_name, "srepr_derivation")]}
            for i, item in enumerate(flan[:n_items])])
    return directory


def test_released_items_end_to_end(gpt4_results, flan_results, tmp_path):
    gpt = released.load_items(gpt4_results)
    answers = {}  # bare prompt -> GPT-4's released answer
    for item in gpt[:8]:
        for set_name in SETS:
            _, query = fewshot.parse_prompt(item[field(set_name, "prompt")])
            answers[query] = item[f"{set_name}_gpt-4"]

    def chatty(prompt_text):
        query = prompt_text.rsplit("Prompt:", 1)[1].strip()
        return f"Here is the derivation:\n\nDerivation: {answers[query]}\n\nLet me know if you need more."

    sets = released_sets(tmp_path / "sets", gpt4_results, flan_results, n_items=8)
    with FakeChatServer(answer=chatty) as server:
        result = prompt(sets, tmp_path / "out", tmp_path / "cache", server, policy=fast_policy())
        assert len(result.predictions) == 40 and set(server.answered.values()) == {1}
    assert result.usage["new_answers"] == len(server.requests) == len(answers)  # identical prompts asked once
    for record in result.predictions:
        assert record["prediction"] == " ".join(answers[record["prompt"]].split())
        assert record["reference"] and record["srepr_derivation"]
