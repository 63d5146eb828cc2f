"""Data iteration flows: `diff` (two versions of a stage) and `ablate` (proxy models per data variant).

`ablate` only wires `pipeline.ablate`: the stage instances every run shares run once, in
pipeline order, as stage subflows; then each run's own stages run as one `ablation-run` subflow
per run, submitted side by side (a task each on a thread pool of ``parallel``). Trainings in
one process take turns on torch's process state (`pipeline.models.torch_exclusive`); their data
stages overlap, and a process-based engine (Dask, Ray) runs their units side by side. Finally
the held-out set is chosen, every model scored, and the comparison published as artifacts and
written under ``<data root>/reports/ablations/<id>/``.
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import catalog, storage
from pipeline.config import EngineConfig
from pipeline.dataset import Dataset
from pipeline.diff import diff_versions, render_markdown
from pipeline.stages import BY_NAME

from .engines import shared_cluster, task_runner
from .failures import record_failure
from .stages import STAGE_FLOWS


def _key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


@flow(name="diff", log_prints=True, on_failure=[record_failure])
def diff_flow(a: str, b: str, data_dir: str = "data", samples: int = 3) -> dict:
    """Compare two versions of one stage; publish the comparison as a markdown artifact."""
    root = storage.resolve_root(data_dir)
    result = diff_versions(catalog.find(root, a), catalog.find(root, b), samples=samples)
    create_markdown_artifact(
        render_markdown(result),
        key=_key(f"diff-{result['stage']}"),
        description=f"{result['stage']}: {result['a']['fingerprint'][:12]} vs {result['b']['fingerprint'][:12]}",
    )
    return result


def _as_params(inst: Any) -> dict[str, Any]:
    """A stage instance as plain flow parameters (shown in the UI, serialisable)."""
    return {
        "key": inst.key,
        "stage": inst.stage,
        "config": inst.config.model_dump(mode="json"),
        "inputs": inst.inputs,
    }


def _run_instance(inst: dict[str, Any], root: str, summaries: dict[str, dict], engine: EngineConfig) -> dict:
    stage = BY_NAME[inst["stage"]]
    inputs = {up: summaries[key]["path"] for up, key in inst["inputs"].items()}
    sub = STAGE_FLOWS[stage.name].with_options(task_runner=task_runner(engine))
    summary = sub(config=stage.config_model.model_validate(inst["config"]), data_dir=root, inputs=inputs)
    return cast(dict, summary)


@flow(name="ablation-run", log_prints=True)
def ablation_run(
    run: str, instances: list[dict[str, Any]], data_dir: str, known: dict[str, dict], engine: EngineConfig
) -> dict:
    """One run's own stages (those no other run shares), in pipeline order."""
    summaries = dict(known)
    for inst in instances:
        summaries[inst["key"]] = _run_instance(inst, data_dir, summaries, engine)
    return {i["key"]: summaries[i["key"]] for i in instances}


@task(task_run_name="run[{run}]", cache_policy=NO_CACHE, persist_result=False)
def run_side_by_side(
    run: str, instances: list[dict[str, Any]], data_dir: str, known: dict[str, dict], engine: EngineConfig
) -> dict:
    """A task whose body is the run's subflow, so the flow's task runner runs several at once."""
    return ablation_run.with_options(flow_run_name=f"ablation-{run}")(
        run=run, instances=instances, data_dir=data_dir, known=known, engine=engine
    )


@flow(
    name="ablate",
    log_prints=True,
    on_failure=[record_failure],
    # Runs side by side; `tokenmill ablate --parallel N` sets the pool's size.
    task_runner=ThreadPoolTaskRunner(max_workers=2),  # type: ignore[arg-type]
)
def ablate_flow(
    variants: list[dict[str, Any]],
    until: str = "evaluate",
    config_path: str | None = None,
    base_overrides: list[str] | None = None,
    seeds: int = 1,
    proxy: bool = True,
    data_dir: str = "data",
    heldout: str | None = None,
    heldout_docs: int = 400,
    ngram: int = 13,
) -> dict:
    """Train a proxy model per data variant (and the baseline) and compare them on one held-out set.

    ``variants``: ``[{"name": ..., "overrides": ["stage.key=value", ...]}, ...]``.
    """
    from pipeline.ablate.compare import compare
    from pipeline.ablate.plan import Variant, plan_ablation

    logger = get_run_logger()
    root = storage.resolve_root(data_dir)
    plan = plan_ablation(
        [Variant(v["name"], tuple(v["overrides"])) for v in variants],
        until=until,
        config_path=config_path,
        base_overrides=base_overrides or [],
        seeds=seeds,
        proxy=proxy,
    )
    engine = plan.runs[0].config.engine
    shared = plan.shared()
    logger.info(
        "ablation %s: %d runs; stage runs shared by several runs: %s",
        plan.id,
        len(plan.runs),
        ", ".join(f"{i.stage} ({len(i.runs)} runs)" for i in shared),
    )
    summaries: dict[str, dict] = {}
    with shared_cluster(engine) as eng:
        for inst in shared:
            summaries[inst.key] = _run_instance(_as_params(inst), str(root), summaries, eng)
        # Each run gets its own copy of the shared summaries: Prefect resolves a task's parameters
        # in the worker thread when it starts, and walking a dict that this thread is updating
        # with earlier runs' results fails ("Failed to resolve inputs in parameter 'known'").
        futures = [
            run_side_by_side.submit(
                run=r.name,
                instances=[_as_params(i) for i in plan.own(r)],
                data_dir=str(root),
                known={k: dict(v) for k, v in summaries.items()},
                engine=eng,
            )
            for r in plan.runs
        ]
        results = [f.result() for f in futures]
        for res in results:
            summaries.update(res)
    texts = None
    if heldout:
        from pipeline.ingest.config import SourceConfig
        from pipeline.ingest.texts import read_texts

        texts = read_texts([SourceConfig(path=heldout)]).texts
    datasets = {key: Dataset(storage.local_path(s["path"])) for key, s in summaries.items()}
    result = compare(plan, root, datasets, heldout_texts=texts, max_docs=heldout_docs, ngram=ngram)
    create_markdown_artifact(result["markdown"], key="ablation-report", description=f"ablation {plan.id}")
    for variant, diffs in result["diffs"].items():
        for d in diffs:
            create_markdown_artifact(
                render_markdown(d),
                key=_key(f"diff-{d['stage']}"),
                description=f"ablation {plan.id}: {d['stage']}, baseline (A) vs {variant} (B)",
            )
    create_table_artifact(
        [{k: v for k, v in s.items() if not isinstance(v, dict | list)} for s in result["summary"]],
        key="ablation-table",
        description=f"ablation {plan.id}: one row per variant",
    )
    logger.info("ablation report: %s", result["report"])
    return {k: v for k, v in result.items() if k not in ("markdown", "diffs")}
