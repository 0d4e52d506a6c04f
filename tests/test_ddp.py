"""Training on several processes: ``accelerate launch`` runs ``derivlib train`` as 2 ranks over
gloo on the CPU; rank 0 alone writes, locks and finishes the run directory."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from derivlib.models import t5
from derivlib.stages import rundir, train_t5
from test_t5 import make_sets_dir  # the same synthetic sets as the T5 tests

TRAIN = ["--d-model", "32", "--d-ff", "64", "--num-layers", "1", "--num-heads", "2", "--vocab-size", "300",
         "--epochs", "2", "--batch-size", "4", "--max-train-items", "16", "--max-dev-items", "2",
         "--sub-derivations", "false", "--log-every", "1", "--workers", "1"]


def _free_port() -> int:
    with socket.socket() as s:  # not accelerate's default 29500, which another job may hold
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_other_ranks_open_the_run_without_writing_it(tmp_path):
    """A rank != 0 opens the run that rank 0 has opened: the same directory, no lock, and its
    log lines, figures and finish write nothing."""
    params = train_t5.Params(sets=str(tmp_path))
    main = rundir.start_run("demo", params, root=tmp_path / "data")
    other = rundir.start_run("demo", params, root=tmp_path / "data", writer=False)
    assert other.dir == main.dir and other.key == main.key and other.lock is None
    before = sorted(p.name for p in main.dir.iterdir())
    other.log("a line")
    other.save_figure(Figure(), "figure")
    other.finish(steps=1)
    assert sorted(p.name for p in main.dir.iterdir()) == before and not other.complete
    main.log("a line")
    main.finish(steps=1)
    assert main.complete and (main.dir / "log.txt").read_text().count("a line") == 1
    done = rundir.start_run("demo", params, root=tmp_path / "data", writer=False)
    assert done.complete and done.dir == main.dir  # a complete run is found as rank 0 finds it


class _Rank:
    """accelerate's state of one rank; ``while_waiting`` is what the main process does while this
    (other) rank waits at ``main_process_first``'s barrier."""

    def __init__(self, main: bool, while_waiting=lambda: None):
        self.is_main_process, self.while_waiting = main, while_waiting

    @contextlib.contextmanager
    def main_process_first(self):
        if not self.is_main_process:
            self.while_waiting()
        yield


def test_resuming_ranks_agree_and_only_the_main_process_removes(tmp_path, monkeypatch):
    """A kill while saving left checkpoint-6 half written. Every rank resumes from checkpoint-4;
    the main process removes checkpoint-6 and the others look only after it has (before, every
    rank listed and removed at once, and one could read a directory another was deleting)."""
    for step, whole in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if whole:
            (tmp_path / f"checkpoint-{step}" / t5.RESUME_STATE).write_bytes(b"state")
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"half")
    monkeypatch.setattr(t5, "distributed_state", lambda: _Rank(main=False))
    assert t5.last_complete_checkpoint(tmp_path).endswith("checkpoint-4")
    assert (tmp_path / "checkpoint-6").is_dir()  # left to the main process
    monkeypatch.setattr(t5, "distributed_state", lambda: _Rank(main=True))
    assert t5.last_complete_checkpoint(tmp_path).endswith("checkpoint-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    (tmp_path / "checkpoint-6").mkdir()
    removed_meanwhile = lambda: shutil.rmtree(tmp_path / "checkpoint-6")  # noqa: E731
    monkeypatch.setattr(t5, "distributed_state", lambda: _Rank(main=False, while_waiting=removed_meanwhile))
    assert t5.last_complete_checkpoint(tmp_path).endswith("checkpoint-4")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
                    reason="needs accelerate's launcher")
def test_accelerate_launch_trains_on_two_processes(tmp_path):
    """Two CPU processes (``--multi_gpu`` on a machine without CUDA is torchrun over gloo;
    ``--cpu`` would start one process without MPI) train a tiny T5 for 4 steps: both finish, one
    model and one loss history are written, by rank 0."""
    sets = make_sets_dir(tmp_path, n_train=16, n_dev=2, n_test=2)
    out = tmp_path / "model-run"
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "derivlib", "train", "--sets", str(sets), *TRAIN, "--out", str(out)]
    env = {**os.environ, "DERIVLIB_DATA": str(tmp_path / "data"), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]  # the launcher fails if either rank fails
    assert done.stdout.count("run directory:") == 1  # rank 0 reports, rank 1 is silent
    summary = json.loads((out / "summary.json").read_text())
    # 16 items, 4 per process and step, 2 epochs: 4 steps on 2 processes (8 on one)
    assert summary["steps"] == 4
    assert (out / rundir.COMPLETE).exists() and (out / "model" / "config.json").exists()
    assert any((out / "model").glob("*.safetensors")) and (out / "model" / "tokenizer.json").exists()
    assert not (out / "checkpoints").exists() and not out.with_name(out.name + ".partial").exists()
    history = json.loads((out / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4 and all(0 < loss < 8 for loss in losses)  # not scaled by the 2 processes
    assert [h["step"] for h in history if "eval_loss" in h] == [2, 4]
    assert (out / "log.txt").read_text().count("training: 4 steps") == 1  # one writer of the log
