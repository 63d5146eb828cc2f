"""One Prefect flow per registered stage, and the end-to-end flow that chains them as subflows.

The stage flows are generated from the stage registry (`pipeline.stages`): ``<name>_flow`` is a
flow named after the stage, documented by its description, whose ``config`` parameter is typed by
the stage's config model (so the Prefect UI renders that form). Each only wires: it resolves its
input datasets, runs the stage with a mapper that turns every unit of work into a Prefect task,
records the result in the catalog, publishes artifacts and emits a completion event. All logic
lives in `pipeline/`.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Completed

from pipeline import catalog, observe, storage
from pipeline.config import PipelineConfig
from pipeline.dataset import Dataset, is_published, version_dir
from pipeline.errors import ConfigError, DataError
from pipeline.report import build_run_report
from pipeline.stage import Stage, StageResult, run_stage
from pipeline.stages import BY_NAME, ORDER, STAGES, upstream

from .artifacts import publish_stage_artifacts
from .engines import shared_cluster, task_runner
from .events import COMPLETED_EVENT
from .failures import record_failure
from .runtime import ProgressReporter, prefect_mapper


def resolve_inputs(stage_name: str, root: Path, given: dict[str, str] | None) -> dict[str, Dataset]:
    """Input datasets by upstream stage: a given path or fingerprint, else the latest published."""
    out = {}
    for up in BY_NAME[stage_name].inputs:
        ref = (given or {}).get(up)
        if ref:
            p = storage.local_path(ref)
            if not is_published(p) and not is_published(p.parent):
                p = version_dir(root, up, ref)
            if not is_published(p) and not is_published(p.parent):
                raise ConfigError(f"{stage_name}: input {up}={ref!r} is not a published dataset")
            out[up] = Dataset(p)
        else:
            found = catalog.latest(root, up)
            if found is None:
                raise DataError(
                    f"{stage_name}: no published {up} dataset under {root}; run `tokenmill run {up}` first"
                )
            out[up] = found
    return out


def run_stage_flow(
    stage_name: str, config: Any, data_dir: str, inputs: dict[str, str] | None
) -> dict[str, Any]:
    """The body shared by every stage flow."""
    logger = get_run_logger()
    root = storage.resolve_root(data_dir)
    stage = BY_NAME[stage_name]
    run_id = str(flow_run.get_id() or "local")
    t0 = time.perf_counter()
    remove = observe.add_reporter(ProgressReporter())
    try:
        datasets = resolve_inputs(stage_name, root, inputs)
        result = run_stage(stage, config, root, datasets, mapper=prefect_mapper)
    except Exception as e:
        catalog.record_stage_run(
            root, run_id, stage_name, None, False, "failed", time.perf_counter() - t0, str(e)
        )
        raise
    finally:
        remove()
    for version in result.dataset.chain():
        catalog.record_dataset(root, version)
    catalog.record_stage_run(
        root, run_id, stage_name, result.fingerprint, result.cached, "completed", result.seconds
    )
    publish_stage_artifacts(result)
    emit_event(
        event=COMPLETED_EVENT,
        resource={
            "prefect.resource.id": f"tokenmill.dataset.{result.fingerprint}",
            "tokenmill.stage": stage_name,
        },
        payload=result.summary(),
    )
    summary = result.summary()
    logger.info(
        "%s %s: %s rows in, %s out, %s rejected -> %s",
        stage_name,
        "cached" if result.cached else "done",
        summary["rows_in"],
        summary["rows_out"],
        summary["rows_rejected"],
        summary["path"],
    )
    if result.cached:
        # A returned state becomes the flow run's final state; callers of the flow get its data.
        return Completed(  # type: ignore[return-value]
            name="Cached", message=f"{stage_name} output {result.fingerprint} already published", data=summary
        )
    return summary


def stage_flow(stage: Stage) -> Flow[..., dict[str, Any]]:
    """The Prefect flow of one stage: ``(config, data_dir, inputs) -> summary``."""

    def run(config: Any, data_dir: str = "data", inputs: dict[str, str] | None = None) -> dict:
        return run_stage_flow(stage.name, config, data_dir, inputs)

    model = stage.config_model
    run.__name__ = run.__qualname__ = f"{stage.name}_flow"
    run.__module__ = __name__
    run.__doc__ = stage.description
    # The signature Prefect reads for the parameter schema (the UI's form) and for validation.
    params = [
        inspect.Parameter(
            "config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=model(), annotation=model
        ),
        inspect.Parameter(
            "data_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="data", annotation=str
        ),
        inspect.Parameter(
            "inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=dict[str, str] | None
        ),
    ]
    run.__signature__ = inspect.Signature(params, return_annotation=dict)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params} | {"return": dict}
    return flow(name=stage.name, log_prints=True, on_failure=[record_failure])(run)


STAGE_FLOWS: dict[str, Flow[..., dict[str, Any]]] = {s.name: stage_flow(s) for s in STAGES}
# Module attributes `<stage>_flow`: the deployments' entrypoints (flows.stages.<stage>_flow).
globals().update({f.fn.__name__: f for f in STAGE_FLOWS.values()})


@flow(name="end_to_end", log_prints=True, on_failure=[record_failure])
def end_to_end(
    config: PipelineConfig = PipelineConfig(),
    data_dir: str = "data",
    stages: list[str] | None = None,
) -> list[dict]:
    """Run the named stages (default: all) and everything they depend on, in pipeline order."""
    root = storage.resolve_root(data_dir)
    wanted = stages or ORDER
    unknown = [s for s in wanted if s not in BY_NAME]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {ORDER}")
    run_id = str(flow_run.get_id() or "local")
    todo = upstream(list(wanted))
    catalog.start_run(root, run_id, todo, config.model_dump(mode="json"))
    summaries: dict[str, dict] = {}
    try:
        with shared_cluster(config.engine) as engine:
            for name in todo:
                inputs = {up: summaries[up]["path"] for up in BY_NAME[name].inputs}
                sub = STAGE_FLOWS[name].with_options(task_runner=task_runner(engine))
                summaries[name] = sub(config=config.stage_config(name), data_dir=str(root), inputs=inputs)
    except Exception as e:
        catalog.finish_run(root, run_id, "failed", str(e))
        raise
    report = build_run_report(root, [StageResult.from_summary(summaries[n]) for n in todo])
    create_markdown_artifact(report.read_text(), key="run-report", description="tokenmill run report")
    get_run_logger().info("run report: %s", report)
    catalog.finish_run(root, run_id, "completed")
    return [summaries[n] for n in todo]
