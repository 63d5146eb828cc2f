"""Running tokenmill like production: a Prefect server, deployments, a worker, triggers.

Plain functions behind `tokenmill server | deploy | worker | trigger`. The deployments are
derived, here (`deployment_specs`), from the stage registry (`pipeline.stages`) through the flows
generated from it (`flows.stages.STAGE_FLOWS`); `deployments/prefect.yaml` is generated from
them (`tokenmill deploy --write-yaml`), checked in, and registered with `prefect deploy --all`,
so the file, the CLI and the tests can never disagree.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from pipeline import storage
from pipeline.stages import scheduled

from .events import COMPLETED_EVENT
from .failures import record_failure as record_failure  # the stage flows' on_failure hook

# The directory holding the `flows` package: the repository root in a checkout, site-packages
# when installed. Deployment entrypoints (flows/stages.py:...) are relative to it.
REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = Path(str(files("deployments") / "prefect.yaml"))  # package data

WORK_POOL = "process"
# Every deployment runs from this queue, and it runs one flow run at a time: two runs (a
# nightly run and a manual trigger, say) can then never write the same dataset at once.
WORK_QUEUE = "tokenmill"
DEPLOYMENT = "tokenmill"  # each stage flow's deployment: `prefect deployment run filter/tokenmill`
DEFAULT_PORT = 4200
DATA_DIR_ENV = "TOKENMILL_DATA_DIR"  # what prefect.yaml's `{{ $TOKENMILL_DATA_DIR }}` reads at deploy time

# A flow run whose process dies (a killed worker, a lost node) cannot report it: its run would
# stay Running in the API and hold its deployment's one concurrency slot. Flow runs on the pool
# send a heartbeat every HEARTBEAT_SECONDS (Prefect's minimum), and the automation `tokenmill
# deploy` creates marks a run Crashed when CRASH_AFTER_SECONDS pass without one (Prefect's
# "zombie flow" recipe), which frees the slot for a re-trigger.
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
HEARTBEAT_SECONDS = 30
CRASH_AUTOMATION = "tokenmill: crash runs without heartbeat"
CRASH_AFTER_SECONDS = 300  # longer than Prefect's default 180 s heartbeat, for other pools' runs

# The incremental data path runs nightly; training weekly (each stage declares its `schedule`).
# Each list is in pipeline order, and a schedule asks end_to_end for the last stage (it runs
# everything upstream, cached).
DATA_PATH = tuple(scheduled("data"))
TRAINING = tuple(scheduled("training"))
NIGHTLY_CRON = "0 2 * * *"
WEEKLY_CRON = "0 4 * * 6"
TIMEZONE = "UTC"

# ---------------------------------------------------------------------------------------------
# Deployments, declared once


def _entrypoint(flow_fn: Any) -> str:
    return f"flows/stages.py:{flow_fn.__name__}"


def chain_trigger(upstream: str) -> dict[str, Any]:
    """Start a stage when its upstream stage's *deployment* run publishes a dataset.

    Matching only deployment runs keeps an end_to_end run (whose stages are subflows, with no
    deployment) from starting a second copy of the stage it is about to run itself.
    """
    return {
        "type": "event",
        "enabled": True,
        "expect": [COMPLETED_EVENT],
        "match": {"prefect.resource.id": "tokenmill.dataset.*", "tokenmill.stage": upstream},
        "match_related": {"prefect.resource.role": "deployment", "prefect.resource.name": DEPLOYMENT},
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        # the dataset the upstream run just published, by path (from the event payload)
        "parameters": {"inputs": {upstream: "{{ event.payload.path }}"}},
    }


def deployment_specs() -> list[dict[str, Any]]:
    """One deployment per stage flow, one on-demand end_to_end, and the two schedules."""
    from flows.stages import STAGE_FLOWS, end_to_end
    from pipeline.stages import BY_NAME

    common = {
        "work_pool": {"name": WORK_POOL, "work_queue_name": WORK_QUEUE},
        "concurrency_limit": {"limit": 1, "collision_strategy": "ENQUEUE"},
    }
    data_dir = {"data_dir": "{{ $" + DATA_DIR_ENV + " }}"}
    specs: list[dict[str, Any]] = []
    for name, fn in STAGE_FLOWS.items():
        spec: dict[str, Any] = {
            "name": DEPLOYMENT,
            "entrypoint": _entrypoint(fn),
            "description": f"The {name} stage on its own; inputs default to the latest published upstream datasets.",
            "tags": ["tokenmill", f"stage:{name}"],
            "parameters": dict(data_dir),
            **common,
        }
        ups = [u for u in BY_NAME[name].inputs if u in STAGE_FLOWS] if name in BY_NAME else []
        if name in DATA_PATH and ups:
            spec["triggers"] = [chain_trigger(u) for u in ups]
        specs.append(spec)
    e2e = _entrypoint(end_to_end)
    specs.append(
        {
            "name": DEPLOYMENT,
            "entrypoint": e2e,
            "description": "Named stages and everything upstream of them; unchanged stages are cache hits.",
            "tags": ["tokenmill", "end_to_end"],
            "parameters": dict(data_dir),
            **common,
        }
    )
    for deployment, group, cron, what in (
        ("nightly-data", DATA_PATH, NIGHTLY_CRON, "Nightly incremental data path"),
        ("weekly-training", TRAINING, WEEKLY_CRON, "Weekly training"),
    ):
        present = [s for s in group if s in STAGE_FLOWS]
        if not present:
            continue
        specs.append(
            {
                "name": deployment,
                "entrypoint": e2e,
                "description": f"{what}: end_to_end up to {present[-1]}; upstream stages are cache hits when unchanged.",
                "tags": ["tokenmill", "scheduled"],
                "parameters": {**data_dir, "stages": [present[-1]]},
                "schedules": [{"cron": cron, "timezone": TIMEZONE, "active": True}],
                **common,
            }
        )
    return [copy.deepcopy(s) for s in specs]  # no dict shared between specs: no YAML anchors


YAML_HEADER = """\
# GENERATED by `tokenmill deploy --write-yaml` from flows/ops.py (deployment_specs) and
# flows/stages.py (STAGE_FLOWS); edit those, not this file. tests/test_deployments.py fails when
# this file is stale.
#
# Register everything (from the repository root, with a server running):
#   tokenmill deploy                       # creates the work pool/queue, then runs the line below
#   TOKENMILL_DATA_DIR=$PWD/data prefect deploy --all --prefect-file deployments/prefect.yaml
# TOKENMILL_DATA_DIR is the data root every deployment writes to (read at deploy time).
# To run the schedules on other data, e.g. a WARC crawl on S3, register with a config:
#   tokenmill deploy --set 'ingest.sources=[{"path": "s3://bucket/crawl/*.warc.gz"}]'
# No pull step is given, so `prefect deploy` records the repository root as the working directory.
"""


def render_prefect_yaml() -> str:
    doc = {"name": "tokenmill", "prefect-version": _prefect_version(), "deployments": deployment_specs()}
    return YAML_HEADER + yaml.safe_dump(doc, sort_keys=False, width=110)


def write_prefect_yaml(path: Path = PREFECT_YAML) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_prefect_yaml())
    return path


def _prefect_version() -> str:
    import prefect

    return prefect.__version__.split("+")[0]


def full_name(target: str, deployment: str | None = None) -> str:
    """`filter` -> `filter/tokenmill`; `end_to_end` -> `end_to_end/tokenmill`."""
    if "/" in target:
        return target
    return f"{target}/{deployment or DEPLOYMENT}"


# ---------------------------------------------------------------------------------------------
# Server, worker and clients


def prefect_cli() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def api_url(port: int = DEFAULT_PORT) -> str:
    """The API the commands talk to: PREFECT_API_URL (env or profile), else `tokenmill server`'s."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or f"http://127.0.0.1:{port}/api"


def server_env(data_dir: Path, port: int = DEFAULT_PORT) -> dict[str, str]:
    """Environment for `prefect server start`: home and SQLite database under the data root.

    Postgres instead: set the standard PREFECT_API_DATABASE_CONNECTION_URL
    (postgresql+asyncpg://user:pass@host:5432/prefect); it is left alone when set.
    """
    home = storage.resolve_root(data_dir) / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    env.setdefault("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home / 'prefect.db'}")
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_API_PORT"] = str(port)
    # The UI must call the API on the same address it is served from.
    env.setdefault("PREFECT_UI_API_URL", f"http://127.0.0.1:{port}/api")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return env


def server_command(port: int = DEFAULT_PORT) -> list[str]:
    return [*prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def client_env(url: str | None = None) -> dict[str, str]:
    """Environment for subprocesses that talk to the server (deploy, worker, flow runs)."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = url or api_url()
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{path}" if path else str(REPO)
    return env


def wait_for_api(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    """Block until `url`/health answers; raise RuntimeError if the server died or timed out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no Prefect API at {url} after {timeout:.0f} s")


def pool_job_template(current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The process pool's job template: Prefect's, with flow runs heartbeating every HEARTBEAT_SECONDS."""
    from prefect.workers.process import ProcessWorker

    template = copy.deepcopy(current or ProcessWorker.get_default_base_job_template())
    env = template["variables"]["properties"]["env"]
    env["default"] = {**(env.get("default") or {}), HEARTBEAT_ENV: str(HEARTBEAT_SECONDS)}
    return template


def ensure_work_pool(url: str | None = None, pool: str = WORK_POOL, queue: str = WORK_QUEUE) -> None:
    """Create the `process` work pool (flow runs send heartbeats) and its one-at-a-time queue."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate, WorkQueueUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url or api_url()}), get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
            template = pool_job_template(existing.base_job_template)
            if template != existing.base_job_template:
                client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        except ObjectNotFound:
            template = pool_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
        try:
            q = client.read_work_queue_by_name(queue, work_pool_name=pool)
            if q.concurrency_limit != 1:
                client.update_work_queue(
                    q.id, **WorkQueueUpdate(concurrency_limit=1).model_dump(exclude_unset=True)
                )
        except ObjectNotFound:
            client.create_work_queue(
                name=queue,
                work_pool_name=pool,
                concurrency_limit=1,
                description="tokenmill runs, one at a time",
            )


def ensure_crash_automation(url: str | None = None, after_seconds: float = CRASH_AFTER_SECONDS) -> None:
    """Create (or update) the automation that marks a flow run Crashed once its heartbeats stop.

    Prefect's server does not notice a flow run whose process died; each run sends heartbeat
    events, and this proactive trigger fires for a run that sent one and then neither another
    heartbeat nor a final state within ``after_seconds``.
    """
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ends = ("Completed", "Cached", "Failed", "Cancelled", "Crashed")
    automation = AutomationCore(
        name=CRASH_AUTOMATION,
        description="Marks a flow run Crashed when its process stops sending heartbeats (killed "
        "worker, lost node), which also frees its deployment's concurrency slot.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{e}" for e in ends)},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {after_seconds:g} s: the process running this flow run "
                "is gone (killed worker, lost node). Trigger it again: finished shards resume.",
            )
        ],
    )
    with temporary_settings({PREFECT_API_URL: url or api_url()}), get_client(sync_client=True) as client:
        found = client.read_automations_by_name(CRASH_AUTOMATION)
        if found:
            client.update_automation(found[0].id, automation)
        else:
            client.create_automation(automation)


def deploy(
    data_dir: str | Path, url: str | None = None, prefect_file: Path = PREFECT_YAML
) -> subprocess.CompletedProcess:
    """Create the work pool if missing and the crash automation, then `prefect deploy --all` the
    checked-in prefect.yaml."""
    url = url or api_url()
    ensure_work_pool(url)
    ensure_crash_automation(url)
    env = client_env(url)
    env[DATA_DIR_ENV] = _root_param(data_dir)
    cmd = [*prefect_cli(), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)


def configured_parameters(config: Any) -> dict[str, dict[str, Any]]:
    """The ``config`` default of every deployment for a pipeline config: the whole config for
    the end_to_end deployments (the nightly and weekly schedules among them), its section for
    each stage's. With it a schedule runs on the data the config names (e.g. a crawl:
    ``ingest.sources=[{"path": "s3://bucket/crawl/*.warc.gz"}]``) instead of the defaults."""
    out: dict[str, dict[str, Any]] = {}
    for spec in deployment_specs():
        flow_name = spec["entrypoint"].rsplit(":", 1)[1].removesuffix("_flow")
        section = config if flow_name == "end_to_end" else config.stage_config(flow_name)
        out[f"{flow_name}/{spec['name']}"] = {"config": section.model_dump(mode="json")}
    return out


def apply_config(config: Any, url: str | None = None) -> list[str]:
    """Set the registered deployments' ``config`` parameter (after `prefect deploy`); their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    done = []
    with temporary_settings({PREFECT_API_URL: url or api_url()}), get_client(sync_client=True) as client:
        for name, params in configured_parameters(config).items():
            dep = client.read_deployment_by_name(name)
            client.update_deployment(
                dep.id, DeploymentUpdate(parameters={**(dep.parameters or {}), **params})
            )
            done.append(name)
    return done


# ---------------------------------------------------------------------------------------------
# Triggering one stage's deployment


def _root_param(data_dir: str | Path) -> str:
    """A data root as a deployment parameter: a store URL as given, a directory made absolute."""
    return str(data_dir) if storage.is_url(str(data_dir)) else str(Path(data_dir).resolve())


def trigger_parameters(
    target: str,
    sets: list[str] | tuple[str, ...] = (),
    inputs: dict[str, str] | None = None,
    data_dir: str | None = None,
    stages: list[str] | None = None,
) -> dict[str, Any]:
    """Flow parameters for `tokenmill trigger`: `--set key=value` is relative to the stage's config
    (`filter.min_words=50` works too); for end_to_end the keys are the whole pipeline config's."""
    from pipeline.config import PipelineConfig, load_config
    from pipeline.errors import ConfigError

    if target == "end_to_end":
        cfg = load_config(None, list(sets))
        params: dict[str, Any] = {"config": cfg.model_dump(mode="json")}
        if stages:
            params["stages"] = list(stages)
    else:
        if target not in PipelineConfig.model_fields:
            raise ConfigError(
                f"unknown stage {target!r}; stages are {', '.join(PipelineConfig.model_fields)}"
            )
        prefix = f"{target}."
        cfg = load_config(None, [s if s.startswith(prefix) else prefix + s for s in sets])
        params = {"config": getattr(cfg, target).model_dump(mode="json")}
        if inputs:
            params["inputs"] = dict(inputs)
    if data_dir:
        params["data_dir"] = _root_param(data_dir)
    return params


def trigger(
    target: str,
    parameters: dict[str, Any],
    url: str | None = None,
    wait: float | None = None,
    deployment: str | None = None,
):
    """Create a flow run of a stage's deployment (as `prefect deployment run` does); returns it.

    With `wait` (seconds), block until the run is final or the time is up.
    """
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url or api_url()}):
        return run_deployment(
            full_name(target, deployment),
            parameters=parameters,
            timeout=wait or 0,
            poll_interval=2,
            tags=["tokenmill", "trigger"],
        )


def ui_url(flow_run_id: Any, url: str | None = None) -> str:
    base = (url or api_url()).rstrip("/")
    base = base.removesuffix("/api")
    return f"{base}/runs/flow-run/{flow_run_id}"
