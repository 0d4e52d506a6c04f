"""Where generation, set building and checking run (derivlib.base.parallel): a Dask cluster gives
the loky run's bytes, also when one of its workers is killed mid-run; killing ``generate`` leaves
no process behind."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from derivlib.base import parallel
from derivlib.base.params import ParameterError
from test_check_bounded import GOOD, HOSTILE, STEPS  # the checker's own hostile and ordinary derivations

N = 200  # the size; each CLI run takes 15-50 s on 2 shared cores


def _cli(*args: str, env: dict | None = None, command: str = "generate", **kwargs) -> subprocess.Popen:
    def default_sigint():  # a background shell ignores SIGINT, and a child would inherit that
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "derivlib", command, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, env={**os.environ, **(env or {})}, **kwargs)


def _finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def client():
    """A 2-worker LocalCluster in this process: worker processes, loopback only, no dashboard, not
    daemonic (as a cluster for ``check`` must be started)."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.worker.daemon": False}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None) as local, distributed.Client(local) as client:
        yield client


def _kill_a_busy_worker(client, process: subprocess.Popen, started: Callable[[], bool]) -> tuple[str, list]:
    """SIGKILL a worker of ``client`` while it computes a task of ``process``, once ``started()``;
    returns (its address, the keys it was computing)."""
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        busy = {w: k for w, k in client.processing().items() if k}
        if started() and busy:
            killed, keys = next(iter(busy.items()))
            os.kill(client.run(os.getpid, workers=[killed])[killed], signal.SIGKILL)
            return killed, list(keys)
        time.sleep(0.05)
    raise AssertionError("no worker was seen computing a task")


def _assert_rescheduled(client, killed: str, keys: list) -> None:
    """Some task of ``keys`` went to a worker twice, and a new worker took ``killed``'s place."""
    def times_processing(dask_scheduler, keys):
        return [sum(1 for t in dask_scheduler.story(key) if t[2] == "processing") for key in keys]

    assert max(client.run_on_scheduler(times_processing, keys=keys)) >= 2
    client.wait_for_workers(2, timeout=60)
    assert killed not in client.nthreads()


def test_bad_backend_choices_name_the_parameter():
    for bad, name in ((("ray", ""), "backend"), (("loky", "tcp://127.0.0.1:8786"), "scheduler"),
                      (("dask", 8786), "scheduler")):
        with pytest.raises(ParameterError, match=name):
            parallel.check(*bad)
    with pytest.raises(ParameterError, match="workers"):
        parallel.check("dask", "", 0)
    with pytest.raises(ParameterError, match="'workers' must be at least 2 with backend 'dask'"):
        parallel.check("dask", "", 1)  # joblib would compute in this process


def test_an_unreachable_scheduler_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 1)
    with pytest.raises(ParameterError, match="parameter 'scheduler': no dask cluster .*127.0.0.1:9"):
        with parallel.backend("dask", scheduler="tcp://127.0.0.1:9"):
            pass


@pytest.mark.slow
def test_dask_cluster_gives_the_loky_bytes_when_a_worker_is_killed(client, tmp_path):
    """``generate --n 200 --seed 0`` on loky (2 workers) and through the cluster, one of whose
    workers is killed while it computes a chunk: the scheduler gives that chunk to a worker again
    (its task goes to ``processing`` twice), the nanny replaces the worker, and the files are
    byte-identical to loky's."""
    env = {"DERIVLIB_DATA": str(tmp_path / "data"), "DERIVLIB_FIGURES": str(tmp_path / "figures")}
    loky = _cli("--n", str(N), "--seed", "0", "--workers", "2", "--out", str(tmp_path / "loky"), env=env)
    _finish(loky)
    address = client.scheduler_info()["address"]
    dask = _cli("--n", str(N), "--seed", "0", "--backend", "dask", "--scheduler", address,
                "--out", str(tmp_path / "dask"), env=env)
    chunks = tmp_path / "dask.partial" / "chunks"
    killed, keys = _kill_a_busy_worker(client, dask, lambda: chunks.is_dir() and any(chunks.iterdir()))
    out = _finish(dask)
    assert "0 failed" in out
    for name in ("derivations.jsonl", "rejections.json"):  # verification.json names its run directory
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "loky" / name).read_bytes(), name
    _assert_rescheduled(client, killed, keys)

    # the sets built from them: the same files on loky and through the cluster
    for backend in ("loky", "dask"):
        cluster = ["--backend", "dask", "--scheduler", address] if backend == "dask" else ["--workers", "2"]
        _finish(_cli("--derivations", str(tmp_path / "loky"), "--n-train", "100", "--n-static", "40",
                     "--n-vr", "30", "--n-ee", "30", "--n-ag", "30", "--n-sr", "10", *cluster,
                     "--out", str(tmp_path / f"sets-{backend}"), env=env, command="build-sets"))
    names = sorted(p.name for p in (tmp_path / "sets-loky").glob("*.jsonl"))
    assert len(names) == 8
    for name in names:
        assert (tmp_path / "sets-dask" / name).read_bytes() == (tmp_path / "sets-loky" / name).read_bytes(), name


def _predictions(path: Path) -> Path:
    """A predictions file of 640 records (8 cluster tasks of 80, a second or two each), among them
    hostile ones and one that runs past a 0.5 s time limit."""
    texts = [GOOD, r"f{(x)} = e^{x} and \frac{d}{d x} f{(x)} = 2 e^{x}", r"$f(x) = e^x$. Thus $f'(x) = e^x = f(x)$.",
             "garbage {{", "", *(f"{GOOD} and {text}" for text in HOSTILE)]
    slow = rf"{GOOD} and \int e^{{x}} \cos{{(e^{{x}})}} dx = \sin{{(e^{{x}})}} + C and f{{(x)}} = 2"
    predictions = [*texts * (639 // len(texts)), *texts[:639 % len(texts)], slow]
    with path.open("w") as handle:
        for i, text in enumerate(predictions):
            handle.write(json.dumps({"id": f"r{i}", "model": "m", "set": "static", "reference": GOOD,
                                     "prediction": text, "srepr_derivation": STEPS}) + "\n")
    return path


@pytest.mark.slow
def test_check_on_the_cluster_gives_the_loky_labels_when_a_worker_is_killed(client, tmp_path):
    """``check`` with 2 local workers and through the cluster, one of whose workers is killed while
    it checks a chunk: the same table and the same per-derivation details, byte for byte; the
    time limit holds inside the cluster's workers (label ``timeout``)."""
    predictions = _predictions(tmp_path / "predictions.jsonl")
    common = ["--results", str(predictions), "--time-limit", "0.5", "--format", "csv"]
    loky = _finish(_cli(*common, "--workers", "2", "--details", str(tmp_path / "loky.jsonl"), command="check"))
    address = client.scheduler_info()["address"]
    dask = _cli(*common, "--backend", "dask", "--scheduler", address, "--details", str(tmp_path / "dask.jsonl"),
                command="check")
    killed, keys = _kill_a_busy_worker(client, dask, lambda: True)
    assert _finish(dask) == loky
    assert (tmp_path / "dask.jsonl").read_bytes() == (tmp_path / "loky.jsonl").read_bytes()
    last = json.loads((tmp_path / "dask.jsonl").read_text().splitlines()[-1])
    assert [e["label"] for e in last["equations"]] == ["reference", "reference", "timeout", "incorrect"]
    _assert_rescheduled(client, killed, keys)


def test_check_refuses_a_cluster_of_daemonic_workers(tmp_path):
    """dask's default workers are daemonic, and may not start the checker's own process: one line
    says how to start them."""
    distributed = pytest.importorskip("distributed")
    import dask

    predictions = _predictions(tmp_path / "predictions.jsonl")
    with dask.config.set({"distributed.worker.daemon": True}), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        run = _cli("--results", str(predictions), "--backend", "dask", "--scheduler", local.scheduler_address,
                   command="check")
        out, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "Traceback" not in err
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------------- orphans

def _session(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("backend, sig", [("loky", signal.SIGINT), ("loky", signal.SIGTERM),
                                          ("loky", signal.SIGKILL), ("dask", signal.SIGKILL)],
                         ids=["loky-SIGINT", "loky-SIGTERM", "loky-SIGKILL", "dask-SIGKILL"])
def test_killing_generate_leaves_no_process_behind(tmp_path, backend, sig):
    """A run is killed once its workers compute: within seconds no process of it is left (loky's
    workers and resource trackers used to run on for minutes), and its chunks are kept."""
    out = tmp_path / "run"
    run = _cli("--n", "400", "--workers", "2", "--backend", backend, "--out", str(out),
               env={"DERIVLIB_DATA": str(tmp_path / "data")}, start_new_session=True)
    worker = "LokyProcess" if backend == "loky" else "spawn_main"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            workers = [c for c in _session(run.pid).values() if worker in c]
            if len(workers) >= 2 and (out.with_name("run.partial") / "chunks").is_dir():
                break
            time.sleep(0.1)
        assert run.poll() is None and len(workers) >= 2, "the workers did not start"
        os.kill(run.pid, sig)
        run.communicate(timeout=30)
        deadline = time.monotonic() + 15
        while _session(run.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _session(run.pid) == {}
        assert run.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
        assert any((out.with_name("run.partial") / "chunks").iterdir())  # kept for a rerun
    finally:
        for pid in _session(run.pid):  # only this test's processes, by id
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
