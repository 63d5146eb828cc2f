"""Deployments, workers, triggers and failure handling against a real `prefect server` process.

The server runs on a free port of 127.0.0.1 with its own PREFECT_HOME and SQLite database,
started once for this module (~30 s on a loaded box); the tests skip if it cannot start.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow

import flows  # noqa: F401  (no-telemetry environment)
from flows import ops

REPO = Path(__file__).resolve().parents[1]


@flow(name="chain_probe")
def chain_probe(inputs: dict[str, str] | None = None) -> dict | None:
    """Stands in for a downstream stage: the chaining test only checks the run it is given."""
    return inputs


# ---------------------------------------------------------------------------------------------
# prefect.yaml (no server needed)


def test_prefect_yaml_is_generated_current_and_covers_every_stage_flow():
    from flows.stages import STAGE_FLOWS

    text = ops.PREFECT_YAML.read_text()
    assert text == ops.render_prefect_yaml(), (
        "deployments/prefect.yaml is stale: run `tokenmill deploy --write-yaml`"
    )
    deployments = yaml.safe_load(text)["deployments"]
    entrypoints = {d["entrypoint"] for d in deployments}
    for name, fn in STAGE_FLOWS.items():
        assert f"flows/stages.py:{fn.__name__}" in entrypoints, f"stage flow {name} has no deployment"
        assert ops.record_failure in fn.on_failure_hooks, (
            f"stage flow {name} lacks on_failure=[record_failure]"
        )
    for d in deployments:
        assert d["work_pool"] == {"name": "process", "work_queue_name": "tokenmill"}
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert d["parameters"]["data_dir"] == "{{ $TOKENMILL_DATA_DIR }}"
    by_name = {d["name"]: d for d in deployments}
    nightly = by_name["nightly-data"]
    assert (
        nightly["entrypoint"].endswith(":end_to_end") and nightly["schedules"][0]["cron"] == ops.NIGHTLY_CRON
    )
    assert nightly["parameters"]["stages"] == [[s for s in ops.DATA_PATH if s in STAGE_FLOWS][-1]]
    if any(s in STAGE_FLOWS for s in ops.TRAINING):
        assert by_name["weekly-training"]["schedules"][0]["cron"] == ops.WEEKLY_CRON
    if {"decontaminate", "tokenize"} <= set(STAGE_FLOWS):
        (tok,) = [d for d in deployments if d["entrypoint"].endswith(f":{STAGE_FLOWS['tokenize'].__name__}")]
        assert [t["match"]["tokenmill.stage"] for t in tok["triggers"]] == ["decontaminate"]
        # Decontamination waits for both the filtered documents and the labeled eval splits.
        (dec,) = [
            d for d in deployments if d["entrypoint"].endswith(f":{STAGE_FLOWS['decontaminate'].__name__}")
        ]
        assert [t["match"]["tokenmill.stage"] for t in dec["triggers"]] == ["filter", "labeled"]


def test_trigger_parameters_take_stage_relative_and_dotted_keys(tmp_path):
    from pipeline.errors import ConfigError

    p = ops.trigger_parameters(
        "ingest", ["max_doc_chars=7", "ingest.shard_rows=3"], {"x": "y"}, str(tmp_path)
    )
    assert p["config"]["max_doc_chars"] == 7 and p["config"]["shard_rows"] == 3
    assert p["inputs"] == {"x": "y"} and p["data_dir"] == str(tmp_path.resolve())
    e2e = ops.trigger_parameters("end_to_end", ["ingest.max_doc_chars=9"], stages=["ingest"])
    assert e2e["config"]["ingest"]["max_doc_chars"] == 9 and e2e["stages"] == ["ingest"]
    with pytest.raises(ConfigError):
        ops.trigger_parameters("nosuchstage", [])
    with pytest.raises(ConfigError):
        ops.trigger_parameters("ingest", ["max_doc_chars=notanumber"])


# ---------------------------------------------------------------------------------------------
# A real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """`prefect server start` in a subprocess; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        ops.server_command(port),
        env=ops.server_env(home, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ops.wait_for_api(url, timeout=180, proc=proc)
    except RuntimeError as e:
        proc.kill()
        proc.wait()
        tail = (home / "server.log").read_text()[-1500:]
        pytest.skip(f"prefect server could not start: {e}\n{tail}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def api(live_server):
    """In-process Prefect calls (client, flows) go to the live server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: live_server}):
        yield live_server
        # Send what is queued now, while the server is up (else exit retries a dead server).
        APILogWorker.drain_all(timeout=30, at_exit=False)
        EventsWorker.drain_all(timeout=30, at_exit=False)


def run(cmd, url, timeout=300, **env):
    return subprocess.run(
        cmd,
        cwd=REPO,
        env={**ops.client_env(url), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tm(url, *args, timeout=300):
    return run([sys.executable, "-m", "flows.cli", *map(str, args)], url, timeout)


def flow_runs(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def test_deploy_trigger_worker_completed_with_artifacts_then_cached_and_chained(api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    data = tmp_path / "data"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_text('{"text": "alpha doc"}\n{"oops": 1}\n{"text": "beta doc"}\n')

    r = tm(api, "deploy", "--data-dir", data)
    assert r.returncode == 0, r.stdout + r.stderr
    # A stand-in downstream deployment, chained to ingest exactly as tokenize is to filter; on its
    # own pool, so no worker runs it: the test only reads the run the trigger creates.
    probe_yaml = tmp_path / "probe.yaml"
    probe_yaml.write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {
                        "name": "probe",
                        "entrypoint": "tests/test_deployments.py:chain_probe",
                        "work_pool": {"name": "probe"},
                        "triggers": [ops.chain_trigger("ingest")],
                    }
                ]
            }
        )
    )
    ops.ensure_work_pool(api, pool="probe")
    r = run([*ops.prefect_cli(), "--no-prompt", "deploy", "--all", "--prefect-file", probe_yaml], api)
    assert r.returncode == 0, r.stdout + r.stderr

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("ingest/tokenmill")
        assert dep.work_pool_name == "process" and dep.work_queue_name == "tokenmill"
        assert dep.global_concurrency_limit.limit == 1
        assert dep.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert dep.parameters["data_dir"] == str(data.resolve())
        form = dep.parameter_openapi_schema
        assert {"config", "data_dir", "inputs"} <= set(form["properties"])  # the UI's form
        assert "IngestConfig" in json.dumps(form)
        nightly = client.read_deployment_by_name("end_to_end/nightly-data")
        assert [s.schedule.cron for s in nightly.schedules] == [ops.NIGHTLY_CRON]
        queue = client.read_work_queue_by_name("tokenmill", work_pool_name="process")
        assert queue.concurrency_limit == 1
        probe = client.read_deployment_by_name("chain_probe/probe")
        # The real chains (dedup after ingest, ...) would queue runs for the worker below;
        # the probe stands in for them, so their triggers are removed here.
        for d in client.read_deployments():
            if d.id not in (dep.id, probe.id):
                client.delete_resource_owned_automations(f"prefect.deployment.{d.id}")

    # 1. `tokenmill trigger` with a parameter, a worker runs it, it completes with artifacts
    src = f'sources=[{{"path": "{raw}", "format": "jsonl"}}]'
    r = tm(api, "trigger", "ingest", "--set", src)
    assert r.returncode == 0, r.stderr
    worker = tm(api, "worker", "--run-once", timeout=400)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    with get_client(sync_client=True) as client:
        (first,) = flow_runs(client, dep.id)
        assert first.state.type.value == "COMPLETED" and first.state.name == "Completed", first.state
        assert first.parameters["config"]["sources"][0]["path"] == str(raw)
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[first.id]))
        )
        keys = {a.key for a in arts}
        assert {"ingest-counts", "ingest-summary"} <= keys, keys
        counts = next(a for a in arts if a.key == "ingest-counts").data
        assert "rows_in" in str(counts) and "ingest.missing_text_field" in str(counts)
    (dataset,) = (data / "datasets" / "ingest").glob("*/_manifest.json")

    # 2. the same parameters through `prefect deployment run`: a cache hit
    params = json.dumps({"config": ops.trigger_parameters("ingest", [src])["config"]})
    r = run([*ops.prefect_cli(), "deployment", "run", "ingest/tokenmill", "--params", params], api)
    assert r.returncode == 0, r.stdout + r.stderr
    worker = tm(api, "worker", "--run-once", timeout=400)
    assert worker.returncode == 0, worker.stderr[-3000:]
    with get_client(sync_client=True) as client:
        runs = sorted(flow_runs(client, dep.id), key=lambda fr: fr.created)
        assert len(runs) == 2
        assert runs[1].state.type.value == "COMPLETED" and runs[1].state.name == "Cached", runs[1].state
    assert list((data / "datasets" / "ingest").glob("*/_manifest.json")) == [dataset]

    # 3. the completion event of a deployment run started the chained deployment, given the dataset
    expected = str(dataset.parent / "data")
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            chained = flow_runs(client, probe.id)
            if chained:
                break
            time.sleep(2)
        assert chained, "the deployment trigger did not start the chained deployment"
        got = chained[0].parameters["inputs"]["ingest"]
        assert Path(got).resolve() == Path(expected).resolve() or Path(got).resolve().parent == dataset.parent


# ---------------------------------------------------------------------------------------------
# Retries and the failure hook (flows in this process, reported to the live server)


def _ingest_config(raw: Path):
    from pipeline.ingest.config import IngestConfig

    return IngestConfig(sources=[{"path": str(raw), "format": "jsonl"}])


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_transient_io_error_is_retried_and_the_flow_completes(api, tmp_path, monkeypatch):
    import pipeline.ingest.stage as ingest_stage
    from flows.stages import ingest_flow

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_text('{"text": "alpha doc"}\n')
    real_read, calls = ingest_stage.read_file, []

    def flaky_read(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection reset by peer (injected)")
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ingest_stage, "read_file", flaky_read)
    state = ingest_flow(config=_ingest_config(raw), data_dir=str(tmp_path / "data"), return_state=True)
    assert state.is_completed(), state
    assert state.result()["rows_out"] == 1
    (unit,) = [t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("ingest.read")]
    assert unit.run_count == 2 and unit.state.is_completed()  # failed once, retried, succeeded
    assert not (tmp_path / "data" / "reports" / "failures.md").exists()


def test_data_error_is_not_retried_and_the_hook_records_the_reason(api, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    import pipeline.ingest.stage as ingest_stage
    from flows.stages import ingest_flow
    from pipeline.errors import DataError

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_text('{"text": "alpha doc"}\n')

    def broken_read(*args, **kwargs):
        raise DataError("unreadable record (injected)", path="a.jsonl", record=1)

    monkeypatch.setattr(ingest_stage, "read_file", broken_read)
    data = tmp_path / "data"
    state = ingest_flow(config=_ingest_config(raw), data_dir=str(data), return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    (unit,) = [t for t in _task_runs(flow_run_id) if t.name.startswith("ingest.read")]
    assert unit.run_count == 1 and unit.state.is_failed()  # a data error fails at once
    report = (data / "reports" / "failures.md").read_text()
    assert "unreadable record (injected)" in report and str(flow_run_id) in report
    assert not list((data / "datasets").glob("ingest/*/_manifest.json"))  # nothing published
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-failure"]))
        )
    assert any(a.flow_run_id == flow_run_id and "unreadable record (injected)" in a.data for a in arts)


def test_deploy_config_points_the_schedules_at_a_crawl():
    """`tokenmill deploy --set ingest.sources=[...]`: the nightly schedule reads the crawl."""
    from pipeline.config import load_config

    crawl = '[{"path": "s3://bucket/crawl/*.warc.gz", "extractor": "resiliparse"}]'
    cfg = load_config(None, [f"ingest.sources={crawl}"])
    params = ops.configured_parameters(cfg)
    nightly = params["end_to_end/nightly-data"]["config"]
    assert nightly["ingest"]["sources"][0]["path"] == "s3://bucket/crawl/*.warc.gz"
    assert nightly["ingest"]["sources"][0]["format"] == "auto"  # .warc.gz: read as WARC
    assert params["end_to_end/weekly-training"]["config"] == nightly  # training reads the same data
    assert params["ingest/tokenmill"]["config"] == nightly["ingest"]
    assert params["dedup/tokenmill"]["config"] == nightly["dedup"]
