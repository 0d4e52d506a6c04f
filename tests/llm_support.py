"""What the LLM tests share (tests/test_llm.py, tests/test_llm_hostile.py): a sets directory in
the 02_testsets format, retry policies whose sleeps are recorded rather than slept, the
prompt_llm stage run as the prompt command runs it, and a real ``derivlib serve`` process
(tests/test_serve.py, tests/test_export_lmeval.py)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from derivlib.base.files import atomic_write_json, atomic_write_text, write_jsonl
from derivlib.base.vocabulary import SETS
from derivlib.models import llm
from derivlib.stages import prompt_llm, rundir

FAKE_KEY = "sk-derivlib-FAKE-KEY-7f3a9c1e5b"
REPO = Path(__file__).resolve().parent.parent
N_PROMPTS = 5 * 5  # five sets of five items


def make_sets(directory: Path, n_train: int = 12, n_test: int = 5) -> Path:
    """A sets directory in the 02_testsets format: each perturbed item shares its static item's
    id; every prompt's goal is unique, so the fake server's answer names the prompt it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    train = [{"id": f"tr{i}", "prompt": f"Given p_{i} = {i}, then obtain q_{i} = {i}",
              "derivation": f"p_{i} = {i} and q_{i} = {i}", "srepr_derivation": []} for i in range(n_train)]
    write_jsonl(directory / "train.jsonl", train)
    for set_name in SETS:
        items = [{"id": f"g0-{i}", "prompt": f"Given f_{i} = {i}, then obtain g_{{{set_name}}} = {i}",
                  "derivation": f"f_{i} = {i} and g_{{{set_name}}} = {i}",
                  "srepr_derivation": [["premise", f"Integer({i})"]]} for i in range(n_test)]
        write_jsonl(directory / f"{set_name}.jsonl", items)
    atomic_write_json(directory / "meta.json", {"key": "testsets-fake"})
    atomic_write_text(directory / rundir.COMPLETE, "done\n")
    return directory


class RecordedSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def fast_policy(**kwargs) -> llm.RetryPolicy:
    kwargs.setdefault("base_delay", 0.001)
    return llm.RetryPolicy(rng=random.Random(0), sleep=RecordedSleep(), **kwargs)


def values(server=None, **kwargs) -> dict:
    # timeout bounds each whole request: a second, so that a loaded machine does not trip it.
    out = dict(model="test-model", base_url=server.base_url if server else "",
               mode="live" if server else "auto", concurrency=4, timeout=1.0, profile="")
    out.update(kwargs)
    return out


def prompt(sets_dir: Path, out: Path, cache: Path, server=None, *, policy=None, on_answer=None,
           **kwargs) -> prompt_llm.Result:
    """The stage as the prompt command runs it: a run directory at ``out``, answers cached in ``cache``."""
    run = prompt_llm.open_run({**values(server, **kwargs), "sets": str(sets_dir)}, out=out)
    return prompt_llm.run(run, policy, cache_dir=cache, on_answer=on_answer)


def cli_command(sets_dir: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    """``python -m derivlib prompt`` against ``base_url``, as a subprocess argv."""
    return [sys.executable, "-m", "derivlib", "prompt", "--model", "test-model", "--base-url", base_url,
            "--sets", str(sets_dir), "--out", str(out), "--timeout", "5", "--backoff", "0.001", *extra]


# ------------------------------------------------ a real `derivlib serve` process (test_serve, test_export_lmeval)

START_TIMEOUT_S = 180


def environment(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false",
            "DERIVLIB_DATA": str(tmp_path / "data"), "NO_PROXY": "127.0.0.1,localhost"}


class Served:
    """A ``serve`` process on a free port; its stdout is read as it comes (the access log goes
    there), its stderr to a file."""

    def __init__(self, model: Path, tmp_path: Path):
        self.log = tmp_path / "serve.stderr"
        self.lines: list[str] = []
        self.started = time.perf_counter()
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "derivlib", "serve", "--model", str(model),
                                          "--port", "0"], cwd=REPO, env=environment(tmp_path), text=True,
                                         stdout=subprocess.PIPE, stderr=err)
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(line.startswith("serving ") for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.1)
        # "serving NAME (DIRECTORY, loaded in S s) at URL"
        first = next(line for line in self.lines if line.startswith("serving "))
        self.name = first.split()[1]
        self.url = first.split()[-1]
        self.start_s = time.perf_counter() - self.started

    def get(self, path: str):
        import httpx  # what the openai client uses too

        return httpx.get(self.url.removesuffix("/v1") + path, timeout=10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
