"""Prefect artifacts for a finished stage: a counts table and a markdown summary."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.stage import StageResult
from pipeline.stages import BY_NAME


def _key(stage: str, what: str) -> str:
    return f"{stage}-{what}".lower().replace("_", "-")


def publish_stage_artifacts(result: StageResult) -> None:
    c = result.counts
    rows = [
        {"metric": "rows_in", "value": c.get("rows_in", 0)},
        {"metric": "rows_out", "value": c.get("rows_out", 0)},
        {"metric": "rows_rejected", "value": c.get("rows_rejected", 0)},
    ] + [{"metric": f"rejected: {k}", "value": v} for k, v in c.get("rejected_by_reason", {}).items()]
    create_table_artifact(
        rows,
        key=_key(result.stage, "counts"),
        description=f"{result.stage}: rows in/out and rejects by reason",
    )
    manifest = result.dataset.manifest
    validation = manifest.get("validation") or {}
    if validation.get("results"):
        create_table_artifact(
            [
                {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in r.items()}
                for r in validation["results"]
            ],
            key=_key(result.stage, "validation"),
            description=f"{result.stage}: expectation results",
        )
    create_markdown_artifact(
        stage_markdown(result), key=_key(result.stage, "summary"), description=f"{result.stage} summary"
    )


def stage_markdown(result: StageResult) -> str:
    c = result.counts
    m = result.dataset.manifest
    lines = [
        f"# {result.stage} {'(cached)' if result.cached else ''}",
        "",
        f"- dataset: `{result.data_path}`",
        f"- fingerprint: `{result.fingerprint}`",
        "- inputs: "
        + (", ".join(f"{i['stage']} `{i['fingerprint'][:12]}`" for i in m.get("inputs", [])) or "none"),
        f"- rows in {c.get('rows_in', 0)}, out {c.get('rows_out', 0)}, rejected {c.get('rows_rejected', 0)}",
        "",
    ]
    if c.get("rejected_by_reason"):
        lines += ["| reject reason | rows |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in c["rejected_by_reason"].items()]
        lines.append("")
    totals: dict[str, Any] = m.get("totals", {})
    if totals:
        lines += ["| total | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in totals.items()]
    markdown = BY_NAME[result.stage].summary_markdown(result.dataset)
    if markdown:
        lines += ["", markdown]
    return "\n".join(lines)
