"""The LLM client under careless and hostile use (issue 18): a server that drips its answer, one
that asks to wait a day, a cache that cannot be written, two processes sharing one cache,
credentials in the base URL, empty answers, a 60 MB body, Ctrl-C. Every server is the loopback
one of tests/llm_server.py; every wait in it is bounded, and every loop here is bounded in count
and time."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from derivlib import __main__ as cli
from derivlib import fewshot
from derivlib.base.files import read_jsonl
from derivlib.models import llm
from derivlib.readers import runs
from derivlib.stages import prompt_llm, rundir

sys.path.insert(0, str(Path(__file__).parent))
from llm_server import FakeChatServer  # noqa: E402
from llm_support import FAKE_KEY, N_PROMPTS, REPO, cli_command, fast_policy, make_sets, prompt  # noqa: E402

SECRET = "Q-URL-SECRET-93b1e0d7"


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


def subprocess_env(tmp_path: Path) -> dict:
    return {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "DERIVLIB_DATA": str(tmp_path / "data")}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------------------- 1. deadline

@pytest.mark.parametrize("kind", ["drip", "drip-headers"])
def test_a_dripping_server_is_cut_off_by_the_deadline_of_the_whole_request(sets_dir, tmp_path, kind):
    # One byte a second: every single read is well within the timeout, so only a deadline for
    # the whole request stops it.
    with FakeChatServer(drip_interval=1.0) as server:
        server.plan("g_{VR} = 0", [kind])
        started = time.monotonic()
        result = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=1, timeout=1.5,
                        policy=fast_policy())
        elapsed = time.monotonic() - started
        assert server.sent_bytes[kind] <= 4  # cut off after a couple of bytes, not 120 s later
    assert elapsed < 1.5 + 4.5, elapsed  # the drip alone would take 120 s
    assert result.usage["retry_reasons"] == {"timeout": 1}  # counted as a timeout, and retried
    assert len(result.predictions) == 5 and set(server.answered.values()) == {1}


# ----------------------------------------------------------------------------------- 2. waits

def test_a_wait_over_the_ceiling_fails_naming_the_servers_wait(server, sets_dir, tmp_path):
    server.retry_after = "100000"
    server.plan("g_{static} = 0", ["429"])
    policy = fast_policy(max_wait=60.0)
    with pytest.raises(llm.LLMError, match=r"item g0-0 \(static\).*429.*asks to wait 100000 s "
                                           r"\(Retry-After: 100000\), over the ceiling of 60 s"):
        prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=1, concurrency=1, policy=policy)
    assert policy.sleep.delays == []  # it never slept on it
    # The command: one line, exit 2, and --max-wait is the ceiling it names.
    server.plan("g_{static} = 0", ["429"])
    code = cli.main(["prompt", "--model", "test-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(tmp_path / "cli"), "--max-items", "1", "--concurrency", "1", "--max-wait", "5"])
    assert code == 2


def test_every_long_wait_is_printed_and_short_ones_are_not(server, sets_dir, tmp_path, capsys):
    server.plan("g_{static} = 0", ["429", "429"])
    server.retry_after = "12"
    policy = fast_policy()
    prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=1, concurrency=1, policy=policy)
    out = capsys.readouterr().out
    assert out.count("item g0-0 (static): 429; waiting 12 s before retrying, as the server's Retry-After asks") == 2
    assert policy.sleep.delays == [12.0, 12.0]
    server.retry_after = "1"
    server.plan("g_{VR} = 0", ["429"])
    prompt(sets_dir, tmp_path / "out2", tmp_path / "cache2", server, max_items=1, policy=fast_policy())
    assert "waiting" not in capsys.readouterr().out  # 1 s is under announce_wait (5 s)


def test_retry_policy_caps_every_wait_at_max_wait():
    policy = llm.RetryPolicy(base_delay=10.0, max_delay=1000.0, max_wait=60.0)
    assert all(policy.delay(attempt) <= 60.0 for attempt in range(10))
    assert policy.delay(0, retry_after=45.0) == 45.0


# ----------------------------------------------------------------------------------- 3. cache

def test_a_cache_that_cannot_be_written_fails_before_any_request(server, sets_dir, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory\n")
    with pytest.raises(llm.CacheError, match=r"response cache .*a-file.* cannot be written.*nothing was asked"):
        prompt(sets_dir, tmp_path / "out", blocked, server, policy=fast_policy())
    assert server.total_hits() == 0
    code = cli.main(["prompt", "--model", "test-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(tmp_path / "cli"), "--cache", str(blocked / "cache")])
    assert code == 2 and server.total_hits() == 0
    assert "cannot be written" in one_line(capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_cache_fails_before_any_request(server, sets_dir, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(llm.CacheError, match="cannot be written"):
            prompt(sets_dir, tmp_path / "out", cache, server, policy=fast_policy())
    finally:
        cache.chmod(0o755)
    assert server.total_hits() == 0


def _full_disk(limit: int):
    def preexec():  # in the child: files may not grow past `limit` bytes, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_cache_fails_before_any_request_in_one_line(server, sets_dir, tmp_path):
    # The child may write no file over 16 KiB (its run directory's files are smaller); the cache's
    # probe of 64 KiB fails with EFBIG, as an answer would on a full disk.
    proc = subprocess.run(cli_command(sets_dir, tmp_path / "out", server.base_url, "--cache", str(tmp_path / "c")),
                          cwd=REPO, env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=120,
                          preexec_fn=_full_disk(16 * 1024))
    assert proc.returncode == 2, proc.stderr
    assert "cannot be written (File too large); nothing was asked" in one_line(proc.stderr)
    assert server.total_hits() == 0


def test_a_cache_that_breaks_mid_run_keeps_what_it_stored(server, sets_dir, tmp_path):
    # One prompt's shard of the cache is a file: that prompt cannot be locked or stored. The run
    # stops with a line naming the cache; nothing was asked for it, and the answers stored are intact.
    train, tests = runs.load_prompting_sets(sets_dir, 0)
    decoding = llm.Decoding(model="test-model", seed=42)
    keys = [q.request.key(decoding) for q in fewshot.build_queries(train, tests, 5, 42)]
    cache = llm.ResponseCache(tmp_path / "cache")
    cache.directory.mkdir()
    shard = cache.path(keys[3]).parent
    shard.write_text("in the way\n")
    with pytest.raises(llm.CacheError, match="cannot be written"):
        prompt(sets_dir, tmp_path / "out", cache.directory, server, concurrency=1, policy=fast_policy())
    stored = cache.keys()
    assert stored and len(stored) == server.total_answered()  # every answer received is on disk
    assert all(cache.get(k)["answer"] for k in stored)
    shard.unlink()
    hits = server.total_hits()
    result = prompt(sets_dir, tmp_path / "out", cache.directory, server, policy=fast_policy())
    assert len(result.predictions) == N_PROMPTS and server.total_hits() - hits == N_PROMPTS - len(stored)


# ----------------------------------------------------------------------------------- 4. sharing

def test_two_clients_sharing_a_cache_ask_each_prompt_once(sets_dir, tmp_path):
    # Two runs at once in this process: each takes the prompts' file locks as a process would.
    with FakeChatServer(answer_delay=0.02) as server:
        results, errors = {}, []

        def run(name):
            try:
                results[name] = prompt(sets_dir, tmp_path / name, tmp_path / "cache", server, concurrency=3,
                                       timeout=5.0, policy=fast_policy())
            except Exception as err:  # noqa: BLE001 -- reported below
                errors.append(err)

        threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors and len(results) == 2
        assert len(server.answered) == N_PROMPTS and set(server.answered.values()) == {1}
        assert server.total_hits() == N_PROMPTS  # each prompt asked once, by one of the two
    assert results["a"].usage["new_answers"] + results["b"].usage["new_answers"] == N_PROMPTS
    assert (tmp_path / "a" / "predictions.jsonl").read_bytes() == (tmp_path / "b" / "predictions.jsonl").read_bytes()
    assert not list((tmp_path / "cache").glob("*/.*.lock"))  # answered prompts leave no lock file


@pytest.mark.slow
def test_two_prompt_processes_sharing_a_cache_ask_each_prompt_once(sets_dir, tmp_path):
    env = subprocess_env(tmp_path)
    with FakeChatServer(answer_delay=0.05) as server:
        procs = [subprocess.Popen(cli_command(sets_dir, tmp_path / name, server.base_url, "--cache",
                                              str(tmp_path / "cache"), "--concurrency", "2"),
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        assert len(server.answered) == N_PROMPTS and set(server.answered.values()) == {1}
        assert server.total_hits() == N_PROMPTS
    usages = [json.loads((tmp_path / name / "usage.json").read_text()) for name in ("a", "b")]
    assert sum(u["new_answers"] for u in usages) == N_PROMPTS
    assert all(u["new_answers"] + u["cached_answers"] == N_PROMPTS for u in usages)
    assert (tmp_path / "a" / "predictions.jsonl").read_bytes() == (tmp_path / "b" / "predictions.jsonl").read_bytes()


# ----------------------------------------------------------------------------------- 5. secrets

def test_redact_url_hides_credentials_and_keeps_the_rest():
    url = f"https://u:pw@host:8443/openai/v1?api-version=2024-06-01&api-key={SECRET}&token=t0&x=1"
    redacted = llm.redact_url(url)
    assert redacted == ("https://host:8443/openai/v1?api-version=2024-06-01&api-key=REDACTED"
                        "&token=REDACTED&x=1")
    assert llm.redact_url(redacted) == redacted  # idempotent
    assert set(llm.url_secrets(url)) == {"u", "pw", SECRET, "t0"} and llm.url_secrets(redacted) == []
    for name in ("key", "api_key", "apikey", "access_token", "client_secret", "sig", "password", "auth"):
        assert llm.redact_url(f"http://h/v1?{name}=s3") == f"http://h/v1?{name}=REDACTED"
    assert llm.redact_url("http://h/v1?model=m&stream=1") == "http://h/v1?model=m&stream=1"


def test_a_key_in_the_base_urls_query_is_sent_but_redacted_everywhere(sets_dir, tmp_path, capsys, monkeypatch):
    with FakeChatServer(required_query={"api-key": SECRET}) as server:
        url = f"{server.base_url}?api-key={SECRET}"
        server.plan("g_{AG} = 1", ["429"])
        server.retry_after = "0"
        code = cli.main(["prompt", "--model", "test-model", "--base-url", url, "--sets", str(sets_dir),
                         "--out", str(tmp_path / "cli"), "--max-items", "2", "--backoff", "0.001"])
        assert code == 0
        assert server.paths and all(p.endswith(f"/v1/chat/completions?api-key={SECRET}") for p in server.paths)
        params = json.loads((tmp_path / "cli" / "params.json").read_text())
        assert params["base_url"] == f"{server.base_url}?api-key=REDACTED"
        # The same run from OPENAI_BASE_URL, with a wrong key: the server's error echoes its URL.
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.base_url}?api-key={SECRET}x&token={SECRET}")
        assert cli.main(["prompt", "--model", "test-model", "--sets", str(sets_dir), "--cache", str(tmp_path / "c1"),
                         "--out", str(tmp_path / "env"), "--max-items", "1"]) == 2
        # And the stage itself with a redacted parameter and the real URL beside it.
        run = prompt_llm.open_run({"model": "test-model", "sets": str(sets_dir), "max_items": 1, "profile": "",
                                   "base_url": llm.redact_url(url)}, out=tmp_path / "stage")
        monkeypatch.delenv("OPENAI_BASE_URL")
        assert len(prompt_llm.run(run, fast_policy(), cache_dir=tmp_path / "c2", base_url=url).predictions) == 5
    printed = capsys.readouterr()
    assert "REDACTED" in printed.out and "REDACTED" in printed.err
    assert SECRET not in printed.out + printed.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
        assert FAKE_KEY.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------------- 6. empty

def test_empty_and_null_answers_are_retried_then_the_item_fails_alone(server, sets_dir, tmp_path):
    server.plan("g_{EE} = 1", ["empty", "null"])  # the third attempt answers
    server.plan("g_{VR} = 2", ["null", "empty", "null"])  # never answers: failed after 3 attempts
    result = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, policy=fast_policy(empty_retries=2))
    assert len(result.predictions) == N_PROMPTS - 1
    assert [f["item"] for f in result.failed] == ["g0-2 (VR)"]
    assert "empty answer 3 times" in result.failed[0]["reason"]
    assert result.usage["failed"] == 1 and result.usage["retry_reasons"] == {"empty": 4}
    assert json.loads((tmp_path / "out" / "usage.json").read_text())["failed_items"] == result.failed
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["counts"]["failed"] == 1
    assert (tmp_path / "out" / rundir.COMPLETE).exists()  # the others were not stopped
    cache = llm.ResponseCache(tmp_path / "cache")
    assert len(cache) == N_PROMPTS - 1 and all(cache.get(k)["answer"].strip() for k in cache.keys())
    # A complete run with failures is redone: only the failed item is asked again.
    hits = server.total_hits()
    again = prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, policy=fast_policy())
    assert len(again.predictions) == N_PROMPTS and again.failed == [] and server.total_hits() - hits == 1
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["counts"]["failed"] == 0


# ----------------------------------------------------------------------------------- 7. size

@pytest.mark.parametrize("kind, message", [("huge", "announced 60000000 bytes, over the cap of 1000000"),
                                           ("huge-unannounced", "exceeded 1000000 bytes")])
def test_a_60_mb_response_is_refused_unread_and_nothing_is_stored(server, sets_dir, tmp_path, kind, message):
    server.plan("g_{SR} = 0", [kind])
    with pytest.raises(llm.ResponseTooLarge, match=rf"item g0-0 \(SR\).*{message}"):
        prompt(sets_dir, tmp_path / "out", tmp_path / "cache", server, max_items=1, timeout=5.0,
               policy=fast_policy())
    assert server.sent_bytes[kind] < 30_000_000  # the client stopped reading (the rest is socket buffers)
    stored = list((tmp_path / "cache").rglob("*.json"))
    assert len(stored) == 4 and max(p.stat().st_size for p in stored) < 10_000
    assert not (tmp_path / "out").exists()


def test_the_cap_is_a_parameter(server, sets_dir, tmp_path, capsys):
    code = cli.main(["prompt", "--model", "test-model", "--base-url", server.base_url, "--sets", str(sets_dir),
                     "--out", str(tmp_path / "cli"), "--max-items", "1", "--max-response-bytes", "100"])
    assert code == 2
    assert "over the cap of 100" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------- 8. Ctrl-C

@pytest.mark.slow
def test_ctrl_c_stops_at_once_and_says_what_was_kept(sets_dir, tmp_path):
    out = tmp_path / "out"
    cache = llm.ResponseCache(tmp_path / "data" / "llm" / "cache")
    with FakeChatServer(slow_sleep=30.0) as server:
        server.plan("g_{static} = 2", ["slow"])
        server.plan("g_{static} = 3", ["slow"])
        argv = cli_command(sets_dir, out, server.base_url, "--concurrency", "2", "--timeout", "60")
        proc = subprocess.Popen(argv,
                                cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while (len(cache) < 2 or server.total_hits() < 4) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and len(cache) == 2  # two answered, two asked and hanging
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        stopped = time.monotonic() - sent
        assert proc.returncode == 130, stderr
        assert stopped < llm.INTERRUPT_GRACE + 5.0, stopped  # not the 30 s the server would take
        line = one_line(stderr)
        assert line.startswith("interrupted: 2 new answers received this run are cached in ")
        assert "(2 of 25 prompts answered)" in line and "rerun the same command" in line
        assert all(cache.get(k)["answer"] for k in cache.keys())
        assert not list(cache.directory.glob("*/.*.tmp"))
        assert not out.exists()
        # The same command again asks only for the rest, each once, and resumes the same run.
        rerun = subprocess.run(argv, cwd=REPO, env=subprocess_env(tmp_path),
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert set(server.answered.values()) == {1} and len(server.answered) == N_PROMPTS
    assert len(read_jsonl(out / "predictions.jsonl")) == N_PROMPTS
    log = read_jsonl(out / "usage_log.jsonl")
    assert [entry["status"] for entry in log] == ["interrupted", "finished"]
