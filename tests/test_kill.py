"""Commands killed at a few points and rerun: the rerun gives the same bytes as an uninterrupted
run, no process outlives a killed command by more than a few seconds, a complete run that was
there stays as it was, and two writers of one run directory give one consistent result.

Every process a test starts carries a marker in its environment (inherited by its workers and
kernels), so that what is left behind is found by the marker, whoever its parent is now; the
fixture kills, by pid, whatever a failing test leaves. Resumed training is exact: the last test
checks it in this process, on a run resumed in a later epoch than its first."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from derivlib import __main__ as cli
from derivlib.base.files import write_jsonl
from derivlib.models import t5
from derivlib.readers import runs
from derivlib.stages import rundir

import handmade

t5.prefer_passive_threads()  # before torch loads: spinning OpenMP threads train 6-10x slower here

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")

REPO = Path(__file__).resolve().parent.parent
MARK = "DERIVLIB_KILL_TEST"
#: Seconds a killed command's workers and kernels may take to follow it.
GRACE = 10
BUILD_SETS = ["--seed", "3", "--n-train", "30", "--n-static", "6", "--n-vr", "6", "--n-ee", "6", "--n-ag", "4",
              "--n-sr", "6"]
TRAIN = ["--vocab-size", "300", "--d-model", "16", "--d-ff", "32", "--num-layers", "1", "--num-heads", "2",
         "--epochs", "3", "--batch-size", "8", "--max-train-items", "20", "--max-dev-items", "2",
         "--sub-derivations", "false", "--checkpoint-every", "2", "--log-every", "1", "--workers", "1"]
PREDICT = ["--max-new-tokens", "24", "--max-items", "3", "--num-beams", "2", "--workers", "1"]


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (zombies have none left to read)."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Commands:
    """Starts ``python -m derivlib`` processes with one marker; kills what is left at the end."""

    def __init__(self, tmp_path: Path, env: dict):
        self.mark = uuid.uuid4().hex
        self.tmp_path, self.env, self.count = tmp_path, env, 0

    def start(self, *args: str) -> subprocess.Popen:
        self.count += 1
        log = self.tmp_path / f"command-{self.count}"
        proc = subprocess.Popen([sys.executable, "-m", "derivlib", *map(str, args)], cwd=REPO,
                                env={**os.environ, **self.env, MARK: self.mark},
                                stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"))
        proc.log = log
        return proc

    def run(self, *args: str, timeout: float = 300) -> subprocess.Popen:
        proc = self.start(*args)
        proc.wait(timeout=timeout)
        assert proc.returncode == 0, Path(f"{proc.log}.err").read_text()[-3000:]
        return proc

    def kill_when(self, proc: subprocess.Popen, ready, sig=signal.SIGKILL, timeout: float = 300) -> None:
        """Send ``sig`` to the command (its own process only) as soon as ``ready()`` holds."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, "the command ended before the kill point: " + \
                Path(f"{proc.log}.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def left_behind(self) -> list[int]:
        """The marked processes still alive ``GRACE`` seconds after the last kill."""
        deadline = time.monotonic() + GRACE
        while marked(self.mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        return marked(self.mark)

    def cleanup(self) -> None:
        for pid in marked(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def commands(tmp_path):
    env = {"DERIVLIB_DATA": str(tmp_path / "data"), "DERIVLIB_FIGURES": str(tmp_path / "figures")}
    made = Commands(tmp_path, env)
    yield made
    made.cleanup()


def exists(path: Path):
    return lambda: path.exists()


def logged(log: Path, text: str):
    return lambda: log.exists() and text in log.read_text(errors="replace")


def payload(directory: Path, names) -> dict:
    return {name: (directory / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def derivations(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kill_inputs") / "derivations.jsonl"
    write_jsonl(path, handmade.records(40) + handmade.records(30, handmade.no_evaluation_chain, prefix="p"))
    return path


@pytest.fixture(scope="module")
def sets(derivations, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill_sets") / "sets"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(out.parent / "data"))
        assert cli.main(["build-sets", "--derivations", str(derivations), "--out", str(out), *BUILD_SETS]) == 0
    return out


SET_FILES = [f"{name}.jsonl" for name in ("train", "dev", "static", "VR", "EE", "AG", "SR", "test_combined")]


# ----------------------------------------------------------------------------------- generate

@pytest.mark.slow
def test_generate_killed_twice_then_rerun_gives_the_same_file(commands, tmp_path):
    reference = tmp_path / "reference"
    commands.run("generate", "--n", "16", "--seed", "4", "--workers", "1", "--out", reference)
    out = tmp_path / "out"
    partial = out.with_name("out.partial")
    # SIGKILL of the parent once its first chunk is stored: its two workers must follow it
    first = commands.start("generate", "--n", "16", "--seed", "4", "--workers", "2", "--out", out)
    commands.kill_when(first, lambda: any((partial / "chunks").glob("chunk-*.jsonl")))
    assert commands.left_behind() == [], "workers outlived a killed generate"
    # SIGTERM while the resumed run verifies what it generated
    second = commands.start("generate", "--n", "16", "--seed", "4", "--workers", "2", "--out", out)
    commands.kill_when(second, logged(partial / "log.txt", "verifying"), signal.SIGTERM)
    assert commands.left_behind() == []
    assert not out.exists()
    commands.run("generate", "--n", "16", "--seed", "4", "--workers", "2", "--out", out)
    assert (out / "derivations.jsonl").read_bytes() == (reference / "derivations.jsonl").read_bytes()
    assert commands.left_behind() == []


@pytest.mark.slow
def test_generate_with_a_length_it_never_reaches_stops_with_one_line(commands, tmp_path):
    # round(Normal(55, 1.5)) lies in [50, 60] (GeneratorConfig.check accepts it), but no derivation
    # grows to 50 equations before its rejections abandon it
    proc = commands.start("generate", "--n", "2", "--min-length", "50", "--max-length", "60", "--length-mean", "55",
                          "--out", tmp_path / "g")
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("generate still running after 20 s")
    errors = Path(f"{proc.log}.err").read_text().strip().splitlines()
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: ")


# ----------------------------------------------------------------------------------- build-sets

@pytest.mark.slow
def test_build_sets_killed_twice_then_rerun_gives_the_same_files(commands, derivations, sets, tmp_path):
    out = tmp_path / "out"
    partial = out.with_name("out.partial")
    args = ("build-sets", "--derivations", derivations, "--out", out, *BUILD_SETS, "--workers", "2")
    first = commands.start(*args)
    commands.kill_when(first, exists(partial / "params.json"))
    second = commands.start(*args)
    commands.kill_when(second, logged(partial / "log.txt", "static:"), signal.SIGTERM)
    assert commands.left_behind() == [], "workers outlived a killed build-sets"
    assert not out.exists()
    commands.run(*args)
    assert payload(out, SET_FILES) == payload(sets, SET_FILES)
    # a rerun with other parameters into the complete run is refused at once, and changes nothing
    other = commands.start("build-sets", "--derivations", derivations, "--out", out, *BUILD_SETS[2:], "--seed", "4")
    other.wait(timeout=120)
    assert other.returncode == 2 and "other parameters" in Path(f"{other.log}.err").read_text()
    assert payload(out, SET_FILES) == payload(sets, SET_FILES) and (out / rundir.COMPLETE).exists()


@pytest.mark.slow
def test_two_writers_of_one_out_give_one_consistent_run(commands, derivations, sets, tmp_path):
    out = tmp_path / "shared"
    same = [commands.start("build-sets", "--derivations", derivations, "--out", out, *BUILD_SETS) for _ in range(2)]
    for proc in same:
        proc.wait(timeout=300)
    assert [p.returncode for p in same] == [0, 0]  # the second waited for the first, then loaded its run
    assert payload(out, SET_FILES) == payload(sets, SET_FILES)

    contested = tmp_path / "contested"
    seeds = ("3", "4")
    writers = [commands.start("build-sets", "--derivations", derivations, "--out", contested, *BUILD_SETS[2:],
                              "--seed", seed) for seed in seeds]
    for proc in writers:
        proc.wait(timeout=300)
    codes = [p.returncode for p in writers]
    assert sorted(codes) == [0, 2], codes
    loser = writers[codes.index(2)]
    assert "other parameters" in Path(f"{loser.log}.err").read_text()
    # the directory is the whole of the winner's run: its parameters, its key, its payload
    winner_seed = seeds[codes.index(0)]
    params = json.loads((contested / "params.json").read_text())
    meta = json.loads((contested / "meta.json").read_text())
    assert str(params["seed"]) == winner_seed and (contested / rundir.COMPLETE).exists()
    if winner_seed == "3":
        assert payload(contested, SET_FILES) == payload(sets, SET_FILES)
    alone = tmp_path / "alone"
    commands.run("build-sets", "--derivations", derivations, "--out", alone, *BUILD_SETS[2:], "--seed", winner_seed)
    assert payload(contested, SET_FILES) == payload(alone, SET_FILES)
    assert json.loads((alone / "meta.json").read_text())["key"] == meta["key"]
    assert not contested.with_name("contested.partial").exists()


# ----------------------------------------------------------------------------------- train, predict

@pytest.fixture(scope="module")
def trained(sets, tmp_path_factory) -> Path:
    """The uninterrupted reference run of the training the test below kills."""
    out = tmp_path_factory.mktemp("kill_train") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(out.parent / "data"))
        assert cli.main(["train", "--sets", str(sets), *TRAIN, "--out", str(out)]) == 0
    return out


def losses(run_dir: Path) -> list:
    history = json.loads((run_dir / "history.json").read_text())
    return [(h["step"], h.get("loss"), h.get("eval_loss"), h.get("eval_rouge2")) for h in history
            if "loss" in h or "eval_loss" in h]


@pytest.mark.slow
def test_train_killed_twice_then_resumed_gives_the_same_model(commands, sets, trained, tmp_path):
    out = tmp_path / "model"
    checkpoints = out.with_name("model.partial") / "checkpoints"
    steps_per_epoch = -(-20 // 8)
    assert 4 % steps_per_epoch, "checkpoint-4 must lie inside an epoch, where resuming used to go wrong"
    first = commands.start("train", "--sets", sets, *TRAIN, "--out", out)
    commands.kill_when(first, exists(checkpoints / "checkpoint-2" / "derivlib_resume.pt"), signal.SIGTERM)
    second = commands.start("train", "--sets", sets, *TRAIN, "--out", out)
    commands.kill_when(second, exists(checkpoints / "checkpoint-4" / "derivlib_resume.pt"))
    assert commands.left_behind() == []
    commands.run("train", "--sets", sets, *TRAIN, "--out", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] in ("checkpoint-4", "checkpoint-6")
    assert losses(out) == losses(trained)
    assert (out / "model" / "model.safetensors").read_bytes() == (trained / "model" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_predict_killed_then_rerun_gives_the_same_predictions(commands, sets, trained, tmp_path):
    reference = tmp_path / "reference"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(tmp_path / "data"))
        assert cli.main(["predict", "--model", str(trained), "--sets", str(sets), *PREDICT, "--out", str(reference)]) == 0
    out = tmp_path / "out"
    first = commands.start("predict", "--model", trained, "--sets", sets, *PREDICT, "--out", out)
    commands.kill_when(first, logged(out.with_name("out.partial") / "log.txt", "static:"))
    assert commands.left_behind() == [] and not out.exists()
    commands.run("predict", "--model", trained, "--sets", sets, *PREDICT, "--out", out)
    assert (out / "predictions.jsonl").read_bytes() == (reference / "predictions.jsonl").read_bytes()


# ----------------------------------------------------------------------------------- notebook

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_notebook_killed_while_drawing_keeps_the_published_run(commands, tmp_path, monkeypatch, sig):
    """01_generate killed while it draws its figures, over a complete run of other parameters:
    the published run and its figures stay as they were, and the kernel goes with the command;
    the rerun publishes the new run whole, with the bytes of an uninterrupted run. (Before the
    command killed its kernel in the signal handler, the kernel finished drawing and published
    during papermill's clean-up, in about one run in ten under load, and in every run once the
    command caught SIGTERM without killing it.)"""
    from derivlib.stages import generate as stage  # why: the earlier runs are made in this process

    monkeypatch.setenv("DERIVLIB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "data"))
    stage.run(stage.open_run({"n_derivations": 4, "seed": 0, "profile": "tiny"}))  # published as generate/tiny
    monkeypatch.setenv("DERIVLIB_FIGURES", str(tmp_path / "reference_figures"))
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "reference"))
    stage.run(stage.open_run({"n_derivations": 8, "seed": 0, "profile": "tiny"}))  # uninterrupted, elsewhere
    published = tmp_path / "data" / "generate" / "tiny"
    figures = tmp_path / "figures" / "tiny"
    before = {p.name: p.read_bytes() for p in figures.glob("*.png")}
    assert len(before) == 4, sorted(before)

    out = tmp_path / "01.ipynb"
    notebook = ("notebook", "01_generate", "--profile", "tiny", "-p", "n_derivations=8", "--out", out)
    drawing = lambda: any((tmp_path / "data" / "generate").glob("*.partial/figures/*.png"))  # noqa: E731
    temporary = tmp_path / "tmp"  # where the kernel's connection file and sockets go
    temporary.mkdir()
    commands.env["TMPDIR"] = str(temporary)
    commands.kill_when(commands.start(*notebook), drawing, sig)
    assert commands.left_behind() == [], "the kernel outlived a killed notebook command"
    assert list(temporary.iterdir()) == [], "a killed notebook command left its kernel's files"
    assert json.loads((published / "params.json").read_text())["n_derivations"] == 4
    assert (published / rundir.COMPLETE).exists()
    assert {p.name: p.read_bytes() for p in figures.glob("*.png")} == before
    assert not out.exists()

    commands.run(*notebook)
    assert json.loads((published / "params.json").read_text())["n_derivations"] == 8
    assert {p.name: p.read_bytes() for p in figures.glob("*.png")} == {
        p.name: p.read_bytes() for p in (published / "figures").glob("*.png")}
    assert ((published / "derivations.jsonl").read_bytes()
            == (tmp_path / "reference" / "generate" / "tiny" / "derivations.jsonl").read_bytes())
    assert out.exists() and commands.left_behind() == []


# ----------------------------------------------------------------------------------- exact resume

@pytest.mark.slow
def test_training_resumed_in_a_later_epoch_is_exact(sets, tmp_path):
    """Interrupted at step 5 of 9 (3 steps an epoch) and resumed from checkpoint-4, inside the
    second epoch: the same losses and weights as an uninterrupted run. Before each checkpoint
    kept its epoch's generator state, the resumed epoch drew another batch order (transformers'
    length-grouped sampler draws it from the generator the Trainer had just reseeded). A
    checkpoint half written by a kill is passed over and removed."""
    from transformers import TrainerCallback  # why: optional heavy dependency

    from derivlib.base.params import validate

    class Interrupt(Exception):
        pass

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise Interrupt

    config = validate(t5.TrainConfig, {"vocab_size": 300, "d_model": 16, "d_ff": 32, "num_layers": 1, "num_heads": 2,
                                       "epochs": 3, "batch_size": 8, "max_train_items": 20, "max_dev_items": 2,
                                       "sub_derivations": False, "checkpoint_every": 2, "log_every": 1})
    train, dev = runs.load_set(sets, "train"), runs.load_set(sets, "dev")
    whole = t5.train(train, dev, tmp_path / "whole", config, log=lambda line: None)
    with pytest.raises(Interrupt):
        t5.train(train, dev, tmp_path / "cut", config, log=lambda line: None, callbacks=[StopAt()])
    half_written = tmp_path / "cut" / "checkpoints" / "checkpoint-5"
    half_written.mkdir()  # as when a kill comes while a checkpoint is saved: no resume state yet
    assert t5.last_complete_checkpoint(tmp_path / "cut" / "checkpoints").endswith("checkpoint-4")
    assert not half_written.exists()
    resumed = t5.train(train, dev, tmp_path / "cut", config, log=lambda line: None)
    assert resumed.summary["resumed_from"] == "checkpoint-4"
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert ((tmp_path / "cut" / "model" / "model.safetensors").read_bytes()
            == (tmp_path / "whole" / "model" / "model.safetensors").read_bytes())
    assert whole.summary["steps"] == resumed.summary["steps"] == 9
