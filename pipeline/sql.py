"""`tokenmill sql`: DuckDB with every dataset and catalog table available as views.

Views: ``<stage>`` and ``<stage>_rejects`` for the latest version of each stage (all versions of
its incremental series together), ``<stage>_<fp8>`` for every published version, and the catalog
tables ``runs``, ``stage_runs``, ``datasets``, ``lineage``, ``source_files``; ``ablations``: one
row per run of every `tokenmill ablate` (its ``results.parquet`` files).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from . import catalog, storage
from .dataset import DATA_VIEW, REJECTS_VIEW, Dataset


def _files_sql(paths: list[Path]) -> str:
    quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{quoted}], union_by_name = true)"


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    root = storage.local_path(root)  # a store URL: its local mirror
    con = duckdb.connect()
    if catalog.catalog_path(root).is_file():
        con.execute(f"ATTACH '{catalog.catalog_path(root)}' AS catalog (READ_ONLY)")
        for table in ("runs", "stage_runs", "datasets", "lineage", "source_files"):
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM catalog.{table}")
    ablations = sorted((root / "reports" / "ablations").glob("*/results.parquet"))
    if ablations:  # every proxy ablation's rows (pipeline/ablate/report.py)
        con.execute(f"CREATE VIEW ablations AS SELECT * FROM {_files_sql(ablations)}")
    stages: set[str] = set()
    for d in catalog.published_datasets(root):
        stages.add(d.stage)
        for view, suffix in ((DATA_VIEW, ""), (REJECTS_VIEW, "_rejects")):
            if view in d.manifest["views"]:
                name = f"{d.stage}_{d.fingerprint[:8]}{suffix}"
                con.execute(
                    f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM {_files_sql(d.shard_paths(view, verify=False))}'
                )
    for stage in sorted(stages):
        head = catalog.latest(root, stage)
        if head is None:
            continue
        for view, suffix in ((DATA_VIEW, ""), (REJECTS_VIEW, "_rejects")):
            files = [
                p
                for v in head.chain()
                if view in v.manifest["views"]
                for p in v.shard_paths(view, verify=False)
            ]
            if files:
                con.execute(f'CREATE OR REPLACE VIEW "{stage}{suffix}" AS SELECT * FROM {_files_sql(files)}')
    return con


def query(root: str | Path, sql: str) -> tuple[list[str], list[tuple]]:
    con = connect(root)
    try:
        cur = con.execute(sql)
        cols = [c[0] for c in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def show(dataset: Dataset, rows: int = 5) -> dict:
    return {"manifest": dataset.manifest, "head": dataset.head(rows).to_pylist()}
