"""One Prefect flow per stage, and the end-to-end flow that chains them as subflows.

Each stage flow only wires: it resolves its input datasets, runs the stage with a mapper that
turns every unit of work into a Prefect task, records the result in the catalog, publishes
artifacts and emits a completion event. All logic lives in `pipeline/`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Completed

from pipeline import catalog, observe, storage
from pipeline.config import PipelineConfig
from pipeline.dataset import Dataset, is_published, version_dir
from pipeline.dedup.config import DedupConfig
from pipeline.errors import ConfigError, DataError
from pipeline.evaluate.config import EvaluateConfig
from pipeline.filter.config import AnnotateConfig, FilterConfig
from pipeline.finetune.config import FinetuneConfig
from pipeline.ingest.config import IngestConfig
from pipeline.labeled.config import LabeledConfig
from pipeline.pretrain.config import PretrainConfig
from pipeline.report import build_run_report
from pipeline.stage import StageResult, run_stage
from pipeline.stages import BY_NAME, ORDER, upstream
from pipeline.tokenize.config import TokenizeConfig

from .artifacts import publish_stage_artifacts
from .engines import shared_cluster, task_runner
from .ops import record_failure
from .runtime import ProgressReporter, prefect_mapper

COMPLETED_EVENT = "tokenmill.stage.completed"


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
        return Completed(
            name="Cached", message=f"{stage_name} output {result.fingerprint} already published", data=summary
        )
    return summary


@flow(name="ingest", log_prints=True, on_failure=[record_failure])
def ingest_flow(
    config: IngestConfig = IngestConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Read the configured sources into canonical documents (incremental by content hash)."""
    return run_stage_flow("ingest", config, data_dir, inputs)


@flow(name="dedup", log_prints=True, on_failure=[record_failure])
def dedup_flow(
    config: DedupConfig = DedupConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Remove exact and near duplicates (MinHash LSH) against everything accepted before."""
    return run_stage_flow("dedup", config, data_dir, inputs)


@flow(name="annotate", log_prints=True, on_failure=[record_failure])
def annotate_flow(
    config: AnnotateConfig = AnnotateConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Compute every quality, language, toxicity, PII, bias and domain signal once, as columns."""
    return run_stage_flow("annotate", config, data_dir, inputs)


@flow(name="filter", log_prints=True, on_failure=[record_failure])
def filter_flow(
    config: FilterConfig = FilterConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Apply thresholds to the stored signals; rejects keep rule, value and threshold."""
    return run_stage_flow("filter", config, data_dir, inputs)


@flow(name="tokenize", log_prints=True, on_failure=[record_failure])
def tokenize_flow(
    config: TokenizeConfig = TokenizeConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Train (or load) the tokenizer, write per-document and packed token shards, validate with GX."""
    return run_stage_flow("tokenize", config, data_dir, inputs)


@flow(name="pretrain", log_prints=True, on_failure=[record_failure])
def pretrain_flow(
    config: PretrainConfig = PretrainConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Train a GPT or LSTM language model by maximum likelihood; resumes from its last checkpoint."""
    return run_stage_flow("pretrain", config, data_dir, inputs)


@flow(name="labeled", log_prints=True, on_failure=[record_failure])
def labeled_flow(
    config: LabeledConfig = LabeledConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Read labeled examples, map labels to ids, split train/validation/test (stratified)."""
    return run_stage_flow("labeled", config, data_dir, inputs)


@flow(name="finetune", log_prints=True, on_failure=[record_failure])
def finetune_flow(
    config: FinetuneConfig = FinetuneConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Fine-tune the pretrained checkpoint on the labeled task, and a from-scratch baseline."""
    return run_stage_flow("finetune", config, data_dir, inputs)


@flow(name="evaluate", log_prints=True, on_failure=[record_failure])
def evaluate_flow(
    config: EvaluateConfig = EvaluateConfig(), data_dir: str = "data", inputs: dict[str, str] | None = None
) -> dict:
    """Score fine-tuned vs from-scratch vs majority class on the test split; LM perplexity and samples."""
    return run_stage_flow("evaluate", config, data_dir, inputs)


STAGE_FLOWS = {
    "ingest": ingest_flow,
    "dedup": dedup_flow,
    "annotate": annotate_flow,
    "filter": filter_flow,
    "tokenize": tokenize_flow,
    "pretrain": pretrain_flow,
    "labeled": labeled_flow,
    "finetune": finetune_flow,
    "evaluate": evaluate_flow,
}


@flow(name="end_to_end", log_prints=True, on_failure=[record_failure])
def end_to_end(
    config: PipelineConfig = PipelineConfig(), data_dir: str = "data", stages: list[str] | None = None
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
                stage_flow = STAGE_FLOWS[name].with_options(task_runner=task_runner(engine))
                summaries[name] = stage_flow(config=getattr(config, name), data_dir=str(root), inputs=inputs)
    except Exception as e:
        catalog.finish_run(root, run_id, "failed", str(e))
        raise
    report = build_run_report(root, [StageResult.from_summary(summaries[n]) for n in todo])
    create_markdown_artifact(report.read_text(), key="run-report", description="tokenmill run report")
    get_run_logger().info("run report: %s", report)
    catalog.finish_run(root, run_id, "completed")
    return [summaries[n] for n in todo]
