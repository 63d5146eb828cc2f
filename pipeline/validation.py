"""Expectation suites run on a stage's staged output before it is published.

Placeholder-free minimal checks until the Great Expectations suites land (issue 5): schema,
non-empty text and unique ids for document datasets, computed with DuckDB over the shards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from .dataset import DATA_VIEW
from .errors import ValidationFailed
from .schema import DOCUMENT_SCHEMA

if TYPE_CHECKING:
    from .stage import Stage, StageContext


def validate_stage_output(stage: Stage, ctx: StageContext, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if stage.data_schema is not DOCUMENT_SCHEMA and not set(DOCUMENT_SCHEMA.names) <= set(stage.data_schema.names):
        return None
    data = ctx.staging_dir / DATA_VIEW
    if not any(data.glob("*.parquet")):
        return {"success": True, "results": []}
    glob = str(data / "*.parquet")
    con = duckdb.connect()
    rows, null_ids, empty, dup = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE id IS NULL), "
        f"count(*) FILTER (WHERE text IS NULL OR length(trim(text)) = 0), "
        f"count(*) - count(DISTINCT id) FROM read_parquet('{glob}')"
    ).fetchone()
    results = [
        {"expectation": "id not null", "success": null_ids == 0, "unexpected": null_ids},
        {"expectation": "text not empty", "success": empty == 0, "unexpected": empty},
        {"expectation": "id unique", "success": dup == 0, "unexpected": dup},
    ]
    if not getattr(stage, "unique_ids", True):
        # Ingest keeps exact copies (same content id) for dedup to resolve and report.
        results[-1]["success"] = True
        results[-1]["expectation"] = "id unique (informational)"
    failed = [r for r in results if not r["success"]]
    if failed:
        msg = "; ".join(f"{r['expectation']}: {r['unexpected']} of {rows} rows" for r in failed)
        raise ValidationFailed(f"{stage.name} output failed validation: {msg}")
    return {"success": True, "rows": rows, "results": results}
