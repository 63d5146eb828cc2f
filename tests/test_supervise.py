"""`tokenmill worker` and `tokenmill server` under a supervisor's SIGTERM, against a real server.

One `tokenmill server` (a free port, its own data root) serves the whole module; the last test
stops it with SIGTERM and starts it again. Every process is started in its own session, so that
"nothing outlives it" is checked on whole process groups as well as on the processes seen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow

import flows  # noqa: F401  (no-telemetry environment)
from flows import ops

psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@flow(name="held_stage")
def held_stage(gate: str, raw: str, data_dir: str) -> dict:
    """The real ingest stage, held after its first unit of work until the file `gate` exists.

    The test stops the worker while this run is in progress: units done, nothing published yet.
    Writes `<gate>.held` once it waits.
    """
    from flows.stages import STAGE_FLOWS
    from pipeline import observe
    from pipeline.ingest.config import IngestConfig

    def hold(event: str, data: dict) -> None:
        if event == "progress":
            Path(gate + ".held").touch()
            while not Path(gate).exists():
                time.sleep(0.1)

    remove = observe.add_reporter(hold)
    try:
        config = IngestConfig(sources=[{"path": raw, "format": "jsonl"}])
        return STAGE_FLOWS["ingest"](config=config, data_dir=data_dir)
    finally:
        remove()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_all_gone(procs: list, pgid: int) -> None:
    assert not _group_alive(pgid), f"process group {pgid} outlived its leader"
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"


def _descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class Server:
    """`tokenmill server` on a free port with its own data root; stop() sends SIGTERM."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.data / "server.log").open("a")
        cmd = [
            sys.executable,
            "-m",
            "flows.cli",
            "server",
            "--data-dir",
            str(self.data),
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=ops.client_env(self.url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        ops.wait_for_api(self.url, timeout=180, proc=self.proc)

    def stop(self, timeout: float = 60) -> tuple[int, float, list]:
        """SIGTERM; returns (exit code, seconds to exit, the processes it had)."""
        assert self.proc is not None
        seen = [psutil.Process(self.proc.pid), *_descendants(self.proc.pid)]
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        return code, time.monotonic() - t0, seen

    def tail(self) -> str:
        return (self.data / "server.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("tm-server"))
    try:
        s.start()
    except RuntimeError as e:
        if s.proc and s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s.proc.wait()
        pytest.skip(f"tokenmill server could not start: {e}\n{s.tail()}")
    yield s
    if s.proc and s.proc.poll() is None:
        s.stop()


@pytest.fixture(scope="module")
def held(server, tmp_path_factory):
    """The `held_stage/held` deployment on the `process` pool (its default queue: no limit)."""
    work = tmp_path_factory.mktemp("held")
    spec = {
        "deployments": [
            {
                "name": "held",
                "entrypoint": "tests/test_supervise.py:held_stage",
                "work_pool": {"name": ops.WORK_POOL},
            }
        ]
    }
    (work / "held.yaml").write_text(yaml.safe_dump(spec))
    ops.ensure_work_pool(server.url)
    r = subprocess.run(
        [*ops.prefect_cli(), "--no-prompt", "deploy", "--all", "--prefect-file", str(work / "held.yaml")],
        cwd=REPO,
        env=ops.client_env(server.url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


def _held_run(server, work: Path, name: str) -> tuple:
    """Parameters of a held run over its own small input: (params, gate, data root)."""
    raw = work / name
    raw.mkdir(exist_ok=True)
    (raw / "a.jsonl").write_text("".join(json.dumps({"text": f"doc {name} {i}"}) + "\n" for i in range(20)))
    gate, data = work / f"{name}.gate", work / f"{name}-data"
    return {"gate": str(gate), "raw": str(raw), "data_dir": str(data)}, gate, data


def _trigger(server, params: dict):
    return ops.trigger("held_stage", params, url=server.url, deployment="held").id


def _state(server, run_id):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.url}), get_client(sync_client=True) as c:
        return c.read_flow_run(run_id).state


def _start_worker(server, log: Path, *args: str) -> subprocess.Popen:
    """`tokenmill worker`, in its own session; returns once it polls (its log says so)."""
    env = {**ops.client_env(server.url), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "worker", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while "polling pool" not in log.read_text():
        assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return proc


def _wait_for(what, check, timeout: float, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + (
            log.read_text()[-3000:] if log else ""
        )
        time.sleep(0.2)
    return value


def _exit_code(proc: subprocess.Popen, timeout: float, log: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"worker still running {timeout} s after the signal:\n{log.read_text()[-3000:]}")
    return code, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------


def test_idle_worker_exits_0_within_5_s_of_sigterm(server, tmp_path):
    log = tmp_path / "worker.log"
    worker = _start_worker(server, log)
    seen = [psutil.Process(worker.pid), *_descendants(worker.pid)]
    worker.send_signal(signal.SIGTERM)
    code, took = _exit_code(worker, 30, log)
    assert code == 0, log.read_text()[-3000:]
    assert took < 5, f"took {took:.1f} s"
    _assert_all_gone(seen, worker.pid)


def test_a_run_in_progress_is_cancelled_past_the_grace_and_finishes_within_it(server, held, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.dataset import staging_base
    from pipeline.dataset.staging import unit_markers

    params, gate, data = _held_run(server, held, "stage")
    held_marker = Path(str(gate) + ".held")
    published = lambda: list((data / "datasets" / "ingest").glob("*/_manifest.json"))  # noqa: E731

    # 1. SIGTERM mid-stage with a 1 s grace: the run is cancelled, never left Running.
    run_id = _trigger(server, params)
    log = tmp_path / "worker1.log"
    worker = _start_worker(server, log, "--grace-seconds", "1")
    _wait_for("the run to hold mid-stage", held_marker.exists, 240, log)
    assert _state(server, run_id).is_running()
    seen = [psutil.Process(worker.pid), *_descendants(worker.pid)]
    assert len(seen) > 1, "the flow run should be a process of the worker's"
    worker.send_signal(signal.SIGTERM)
    code, _ = _exit_code(worker, 120, log)
    assert code == 0, log.read_text()[-3000:]
    state = _state(server, run_id)
    assert state.is_cancelled(), (state, log.read_text()[-3000:])
    assert not published(), "a cancelled run published its dataset"
    assert any(unit_markers(d) for d in staging_base(data, "ingest").iterdir()), "finished units were lost"
    _assert_all_gone(seen, worker.pid)

    # 2. The same run re-triggered (it resumes from those units), SIGINT mid-stage with time to
    #    spare: polling stops at once (a run due now is not claimed, though the worker polls every
    #    second) and the run finishes.
    held_marker.unlink()
    again = _trigger(server, params)
    log = tmp_path / "worker2.log"
    worker = _start_worker(server, log, "--grace-seconds", "300")
    _wait_for("the run to hold mid-stage", held_marker.exists, 240, log)
    seen = [psutil.Process(worker.pid), *_descendants(worker.pid)]
    worker.send_signal(signal.SIGINT)
    _wait_for("the stop to be logged", lambda: "polling stopped" in log.read_text(), 30, log)
    later = _trigger(server, _held_run(server, held, "later")[0])
    time.sleep(4)
    assert worker.poll() is None, "the worker must wait for its run in progress"
    gate.touch()
    code, _ = _exit_code(worker, 240, log)
    assert code == 0, log.read_text()[-3000:]
    state = _state(server, again)
    assert state.is_completed(), (state, log.read_text()[-3000:])
    assert published(), "the re-triggered run published nothing"
    assert _state(server, later).is_scheduled(), "a stopping worker claimed a new run"
    _assert_all_gone(seen, worker.pid)
    with temporary_settings({PREFECT_API_URL: server.url}), get_client(sync_client=True) as c:
        c.delete_flow_run(later)


def test_server_stops_on_sigterm_and_restarts_with_its_runs(server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def runs() -> dict:
        with temporary_settings({PREFECT_API_URL: server.url}), get_client(sync_client=True) as c:
            if not c.read_flow_runs():  # run on its own: give it one run to keep
                c.create_flow_run(held_stage, parameters={"gate": "-", "raw": "-", "data_dir": "-"})
            return {r.id: r.state.name for r in c.read_flow_runs()}

    before = runs()
    code, took, seen = server.stop()
    assert code == 0, server.tail()
    assert took < 10, f"took {took:.1f} s"
    _assert_all_gone(seen, seen[0].pid)
    db = server.data / "prefect" / "prefect.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    server.start()
    assert runs() == before
