"""Faults, provoked: a worker killed in the middle of a deployed run, the Prefect server restarted
under a running stage, two triggers of one stage at once, a full disk in the middle of a stage.

The deployment tests run against a real `prefect server start` process (restartable, on a free
port of 127.0.0.1, its own SQLite database) and real `tokenmill worker` processes, controlled
from outside through Prefect's API and signals, as an operator would. Every data outcome is
compared shard by shard (sha256) with the same stages run in this process without any fault.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import web_sample

import flows  # noqa: F401  (no-telemetry environment)
from flows import ops

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DOCS = 240
SHARD_ROWS = 20


# ---------------------------------------------------------------------------------------------
# Helpers


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`prefect server start` in a subprocess that can be stopped and started again in place."""

    def __init__(self, home: Path):
        self.home, self.port = home, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.home / f"server-{self.starts}.log").open("w")
        self.proc = subprocess.Popen(
            ops.server_command(self.port),
            env=ops.server_env(self.home, self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ops.wait_for_api(self.url, timeout=240, proc=self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("prefect-server"))
    try:
        s.start()
    except RuntimeError as e:
        s.stop()
        pytest.skip(f"prefect server could not start: {e}")
    yield s
    s.stop()


def env_for(url: str) -> dict[str, str]:
    # Workers poll often, so a test does not wait for the default 10 s query interval.
    return {**ops.client_env(url), "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "INFO"}


def tm(url: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flows.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env_for(url), capture_output=True, text=True, timeout=timeout)


def start_worker(url: str, log: Path) -> subprocess.Popen:
    out = log.open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "worker"],
        cwd=REPO,
        env=env_for(url),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL a process and everything under it at once, as a lost node loses them."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        victims = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    return [p.pid for p in victims]


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        kill_tree(proc)


def client(url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: url})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


def runs_of(url: str, deployment: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with client(url) as c:
        dep = c.read_deployment_by_name(deployment)
        return c.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def read_run(url: str, run_id):
    with client(url) as c:
        return c.read_flow_run(run_id)


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_final(url: str, run_id, timeout: float = 600):
    return wait_for(
        lambda: (r := read_run(url, run_id)).state and r.state.is_final() and r,
        timeout,
        f"flow run {run_id} to finish",
        every=2,
    )


def unit_markers(root: Path, stage: str) -> list[Path]:
    return list((root / "datasets" / stage / ".staging").glob("*/_unit.*.json"))


def published(root: Path, stage: str) -> dict[str, dict]:
    """Every published version of a stage: fingerprint -> its views' shard lists (file, sha256)."""
    out = {}
    for m in sorted((root / "datasets" / stage).glob("*/_manifest.json")):
        man = json.loads(m.read_text())
        out[man["fingerprint"]] = {
            v: [(s["file"], s["sha256"]) for s in e["shards"]] for v, e in man["views"].items()
        }
    return out


def reference(cfg, root: Path, stages: list[str]) -> dict[str, dict]:
    """The same stages run here, serially, without a fault: what every faulty run must publish."""
    from pipeline.stage import run_stage
    from pipeline.stages import BY_NAME

    done = {}
    for name in stages:
        stage = BY_NAME[name]
        done[name] = run_stage(
            stage, cfg.stage_config(name), root, {u: done[u].dataset for u in stage.inputs}
        )
    return {name: published(root, name) for name in stages}


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory) -> Path:
    """The first DOCS pages of the web sample, as four files (four ingest units)."""
    sample = web_sample(tmp_path_factory, DOCS)
    d = tmp_path_factory.mktemp("web-split")
    lines = sample.read_text().splitlines(keepends=True)
    for k in range(4):
        (d / f"part-{k}.jsonl").write_text("".join(lines[k::4]))
    return d


def settings(web: Path) -> list[str]:
    src = json.dumps([{"path": str(web), "format": "jsonl", "id_field": "id"}])
    return [f"ingest.sources={src}", f"ingest.shard_rows={SHARD_ROWS}", "annotate.batch_rows=16"]


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory):
    """Deployments registered once; each test triggers them with a data root of its own."""
    data = tmp_path_factory.mktemp("deployed-root")
    r = tm(server.url, "deploy", "--data-dir", data)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # No chained runs: each test triggers exactly what it measures.
    with client(server.url) as c:
        for d in c.read_deployments():
            c.delete_resource_owned_automations(f"prefect.deployment.{d.id}")
        (crash,) = c.read_automations_by_name(ops.CRASH_AUTOMATION)
        assert crash.trigger.within.total_seconds() == ops.CRASH_AFTER_SECONDS
        pool = c.read_work_pool(ops.WORK_POOL)
        env = pool.base_job_template["variables"]["properties"]["env"]["default"]
        assert env[ops.HEARTBEAT_ENV] == str(ops.HEARTBEAT_SECONDS)  # flow runs send heartbeats
    return server


# ---------------------------------------------------------------------------------------------
# A worker killed in the middle of a deployed end_to_end run


def test_killed_worker_run_is_crashed_and_a_new_worker_finishes_it_identically(deployed, web_dir, tmp_path):
    from pipeline.config import load_config

    url = deployed.url
    root = tmp_path / "root"
    sets = settings(web_dir)
    stages = ["ingest", "dedup", "annotate"]
    # Crash a silent run 45 s after its last heartbeat (heartbeats every 30 s), not 300 s.
    ops.ensure_crash_automation(url, after_seconds=45)
    try:
        r = tm(
            url,
            "trigger",
            "end_to_end",
            "--stage",
            "annotate",
            "--data-dir",
            root,
            *[a for s in sets for a in ("--set", s)],
        )
        assert r.returncode == 0, r.stderr[-3000:]
        worker = start_worker(url, tmp_path / "worker-1.log")
        try:
            # In the middle of annotate: some of its shards done, not all.
            wait_for(
                lambda: unit_markers(root, "annotate"), 600, "annotate's first finished shard", every=0.2
            )
        finally:
            killed = kill_tree(worker)
        assert len(killed) >= 2, "the worker and the flow-run process under it were killed"
        done_before = len(unit_markers(root, "annotate"))
        assert not published(root, "annotate"), "annotate finished before the kill; nothing was interrupted"
        # Shards on disk at the kill, by (inode, mtime): a resumed run leaves finished ones alone.
        staged = {
            p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (root / "datasets" / "annotate" / ".staging").glob("*/data/*.parquet")
        }

        (killed_run,) = runs_of(url, "end_to_end/tokenmill")
        crashed = wait_for(
            lambda: (s := read_run(url, killed_run.id).state) and s.is_crashed() and s,
            240,
            "the Crashed state",
        )
        assert "heartbeat" in (crashed.message or "")
        # The stage subflow that was running (annotate) is Crashed too, not left Running.
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        def subflows():
            with client(url) as c:
                return c.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[killed_run.id])
                    )
                )

        subs = wait_for(
            lambda: (got := subflows()) and not any(r.state.is_running() for r in got) and got,
            240,
            "the running subflow to be Crashed",
        )
        assert sorted(r.state.type.value for r in subs) == ["COMPLETED", "COMPLETED", "CRASHED"]

        # A new worker, the same trigger: the run completes, resuming annotate's finished shards.
        worker = start_worker(url, tmp_path / "worker-2.log")
        try:
            r = tm(
                url,
                "trigger",
                "end_to_end",
                "--stage",
                "annotate",
                "--data-dir",
                root,
                *[a for s in sets for a in ("--set", s)],
            )
            assert r.returncode == 0, r.stderr[-3000:]
            runs = runs_of(url, "end_to_end/tokenmill")
            assert len(runs) == 2
            final = wait_final(url, runs[-1].id)
            assert final.state.is_completed(), final.state
        finally:
            stop_worker(worker)
    finally:
        ops.ensure_crash_automation(url)  # back to the default for the other tests
    final_files = (root / "datasets" / "annotate").glob("*/data/*.parquet")
    kept = [p.name for p in final_files if staged.get(p.name) == (p.stat().st_ino, p.stat().st_mtime_ns)]
    assert len(kept) >= done_before >= 1, (kept, done_before)  # finished shards were not redone

    expected = reference(load_config(None, sets), tmp_path / "clean", stages)
    for name in stages:
        assert published(root, name) == expected[name], f"{name} differs from an uninterrupted run"
    assert not list((root / "datasets" / "annotate" / ".staging").glob("*/"))


# ---------------------------------------------------------------------------------------------
# The Prefect server restarted while a worker runs a stage


def test_server_restart_under_a_running_stage_leaves_its_data_unaffected(deployed, web_dir, tmp_path):
    from pipeline.config import load_config

    url = deployed.url
    root = tmp_path / "root"
    sets = settings(web_dir)
    cfg = load_config(None, sets)
    expected = reference(cfg, tmp_path / "clean", ["ingest", "dedup"])
    reference(cfg, root, ["ingest"])  # dedup's input, published in the triggered root

    r = tm(url, "trigger", "dedup", "--data-dir", root)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = runs_of(url, "dedup/tokenmill")
    worker = start_worker(url, tmp_path / "worker.log")
    try:
        wait_for(lambda: unit_markers(root, "dedup"), 600, "dedup's first finished unit", every=0.2)
        deployed.stop()
        time.sleep(5)  # the worker and the flow run see the API gone
        deployed.start()
        final = wait_final(url, run.id)
        outcome = final.state.type.value
        # Whatever state the interrupted run reached, the data is the same as without a restart.
        if not final.state.is_completed():
            r = tm(url, "trigger", "dedup", "--data-dir", root)
            assert r.returncode == 0, r.stderr[-3000:]
            final = wait_final(url, runs_of(url, "dedup/tokenmill")[-1].id)
            assert final.state.is_completed(), final.state
        assert published(root, "dedup") == expected["dedup"], f"dedup data changed (run ended {outcome})"
        # The next trigger works: the same parameters are a cache hit.
        r = tm(url, "trigger", "dedup", "--data-dir", root)
        assert r.returncode == 0, r.stderr[-3000:]
        again = wait_final(url, runs_of(url, "dedup/tokenmill")[-1].id)
        assert again.state.is_completed() and again.state.name == "Cached", again.state
    finally:
        stop_worker(worker)
    print(f"run under the restart ended {outcome}")
    assert outcome == "COMPLETED", f"the run under the restart ended {outcome}"


# ---------------------------------------------------------------------------------------------
# Two triggers of the same stage with different parameters at once


def test_two_triggers_of_one_stage_at_once_run_in_turn_and_never_share_staging(deployed, web_dir, tmp_path):
    from pipeline.config import load_config

    url = deployed.url
    root = tmp_path / "root"
    src = settings(web_dir)[0]
    variants = [[src, "ingest.shard_rows=15"], [src, "ingest.shard_rows=25"]]
    for v in variants:
        r = tm(url, "trigger", "ingest", "--data-dir", root, *[a for s in v for a in ("--set", s)])
        assert r.returncode == 0, r.stderr[-3000:]
    worker = start_worker(url, tmp_path / "worker.log")
    try:
        runs = runs_of(url, "ingest/tokenmill")
        assert len(runs) == 2
        finals = [wait_final(url, r.id) for r in runs]
    finally:
        stop_worker(worker)
    assert all(f.state.is_completed() and f.state.name == "Completed" for f in finals), [
        f.state for f in finals
    ]
    first, second = sorted(finals, key=lambda f: f.start_time)
    assert first.end_time <= second.start_time, "the two runs of one deployment overlapped"
    got = published(root, "ingest")
    assert len(got) == 2
    for i, v in enumerate(variants):
        expected = reference(load_config(None, v), tmp_path / f"clean-{i}", ["ingest"])["ingest"]
        (fp,) = expected
        assert got[fp] == expected[fp], "a version holds shards it did not write"
    assert not list((root / "datasets" / "ingest" / ".staging").glob("*/"))


# ---------------------------------------------------------------------------------------------
# A full disk in the middle of a stage (flows in this process, the session's Prefect API)


# The `tokenmill` CLI, with the disk made full under dedup's shard writer after two shards.
DISK_FULL_CLI = """
import errno, os, sys
import pyarrow.parquet as pq

real = pq.ParquetWriter.write_table
writes = []

def disk_full_on_third_dedup_shard(self, *a, **kw):
    where = str(self.where)
    if os.sep.join(["", "dedup", ".staging", ""]) in where and os.sep.join(["", "data", ""]) in where:
        writes.append(where)
        with open(os.environ["TM_WRITES"], "a") as log:
            print(where, file=log)
        if len(writes) >= 3:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    return real(self, *a, **kw)

pq.ParquetWriter.write_table = disk_full_on_third_dedup_shard
from flows.cli import main
sys.argv = ["tokenmill", *sys.argv[1:]]
main()
"""


def test_disk_full_mid_stage_is_one_line_naming_the_file_and_the_next_run_completes(
    cli_env, web_dir, tmp_path
):
    from pipeline.config import load_config

    root = tmp_path / "root"
    sets = settings(web_dir)
    args = ["run", "dedup", "--data-dir", str(root), *[a for s in sets for a in ("--set", s)]]

    log = tmp_path / "writes.txt"

    def tokenmill(*argv):
        env = {**cli_env, "TM_WRITES": str(log)}
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)

    failed = tokenmill(sys.executable, "-c", DISK_FULL_CLI, *args)
    assert failed.returncode == 1, failed.stderr[-3000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr[-3000:]
    writes = log.read_text().splitlines()
    assert "No space left on device" in errors[0], errors[0]
    assert any(f"error: {path}: " in errors[0] for path in writes[2:]), (errors[0], writes)  # the file
    assert not published(root, "dedup"), "nothing is published by a stage that ran out of space"
    staged = [p for p in (root / "datasets" / "dedup" / ".staging").iterdir() if p.is_dir()]
    assert len(staged) == 1 and unit_markers(root, "dedup"), "finished units stay for the next run"

    again = tokenmill(sys.executable, "-m", "flows.cli", *args)  # space freed
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p for p in (root / "datasets" / "dedup" / ".staging").iterdir() if p.is_dir()]
    expected = reference(load_config(None, sets), tmp_path / "clean", ["ingest", "dedup"])
    assert published(root, "dedup") == expected["dedup"]
