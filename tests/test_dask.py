"""Where generation runs (derivlib.base.parallel): a Dask cluster gives the loky run's bytes, also
when one of its workers is killed mid-run; killing ``generate`` leaves no process behind."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derivlib.base import parallel
from derivlib.base.params import ParameterError

N = 200  # the size; each CLI run takes 15-50 s on 2 shared cores


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    def default_sigint():  # a background shell ignores SIGINT, and a child would inherit that
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "derivlib", "generate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, env={**os.environ, **(env or {})}, **kwargs)


def _finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def client():
    """A 2-worker LocalCluster in this process: worker processes, loopback only, no dashboard."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local, distributed.Client(local) as client:
        yield client


def test_bad_backend_choices_name_the_parameter():
    for bad, name in ((("ray", ""), "backend"), (("loky", "tcp://127.0.0.1:8786"), "scheduler"),
                      (("dask", 8786), "scheduler")):
        with pytest.raises(ParameterError, match=name):
            parallel.check(*bad)
    with pytest.raises(ParameterError, match="workers"):
        parallel.check("dask", "", 0)


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
    killed, keys = None, []
    deadline = time.monotonic() + 180
    while killed is None and dask.poll() is None and time.monotonic() < deadline:
        busy = {w: k for w, k in client.processing().items() if k}
        if chunks.is_dir() and any(chunks.iterdir()) and busy:
            killed, keys = next(iter(busy.items()))
            os.kill(client.run(os.getpid, workers=[killed])[killed], signal.SIGKILL)
        time.sleep(0.05)
    assert killed is not None, "no worker was seen computing a chunk"
    out = _finish(dask)
    assert "0 failed" in out
    for name in ("derivations.jsonl", "rejections.json"):  # verification.json names its run directory
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "loky" / name).read_bytes(), name

    def times_processing(dask_scheduler, keys):
        return [sum(1 for t in dask_scheduler.story(key) if t[2] == "processing") for key in keys]

    assert max(client.run_on_scheduler(times_processing, keys=list(keys))) >= 2  # rescheduled
    client.wait_for_workers(2, timeout=60)
    assert killed not in client.nthreads()  # a new worker took the killed one's place


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
