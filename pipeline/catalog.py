"""The catalog: one DuckDB file under the data root recording runs, datasets and lineage.

Tables: ``runs`` (one per CLI/flow invocation), ``stage_runs`` (one per stage execution,
cached or not), ``datasets`` (one per published version, with counts and config), ``lineage``
(child -> input or parent), ``source_files`` (raw files per ingest version). With these,
"which raw files went into this checkpoint?" is one recursive query (see README).
Every write opens, writes and closes the file, so other processes can read between writes.

The catalog is always a local file: for a root on an object store (``s3://…``) it lives in the
root's local mirror, ``$TOKENMILL_STATE_DIR/stores/s3/<bucket>/<prefix>/catalog.duckdb`` (see
`storage.py`). It is an index, not the truth: the published manifests on the store are, and
`published_datasets` lists them from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from . import storage
from .dataset import MANIFEST, Dataset, is_published
from .errors import ConfigError

CATALOG_FILE = "catalog.duckdb"

DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
    stages VARCHAR, config JSON, error VARCHAR);
CREATE TABLE IF NOT EXISTS stage_runs (
    run_id VARCHAR, stage VARCHAR, fingerprint VARCHAR, cached BOOLEAN, status VARCHAR,
    started_at TIMESTAMP, seconds DOUBLE, error VARCHAR);
CREATE TABLE IF NOT EXISTS datasets (
    fingerprint VARCHAR PRIMARY KEY, stage VARCHAR, path VARCHAR, series VARCHAR, parent VARCHAR,
    rows_in BIGINT, rows_out BIGINT, rows_rejected BIGINT, rejected_by_reason JSON,
    data_rows BIGINT, data_bytes BIGINT, config JSON, totals JSON, stats JSON, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS lineage (child VARCHAR, parent VARCHAR, relation VARCHAR, stage VARCHAR);
CREATE TABLE IF NOT EXISTS source_files (fingerprint VARCHAR, key VARCHAR, sha256 VARCHAR);
"""


def catalog_path(root: str | Path) -> Path:
    return storage.local_path(root) / CATALOG_FILE


@contextmanager
def connect(root: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog, retrying briefly while another process holds its write lock."""
    path = catalog_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    delay = 0.05
    for attempt in range(40):
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException:
            if attempt == 39:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        if not read_only:
            con.execute(DDL)
        yield con
    finally:
        con.close()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def start_run(root: str | Path, run_id: str, stages: list[str], config: dict[str, Any]) -> None:
    with connect(root) as con:
        con.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, 'running', ?, ?, NULL)",
            [run_id, _now(), ",".join(stages), json.dumps(config)],
        )


def finish_run(root: str | Path, run_id: str, status: str, error: str | None = None) -> None:
    with connect(root) as con:
        con.execute(
            "UPDATE runs SET finished_at = ?, status = ?, error = ? WHERE run_id = ?",
            [_now(), status, error, run_id],
        )


def record_stage_run(
    root: str | Path,
    run_id: str,
    stage: str,
    fingerprint: str | None,
    cached: bool,
    status: str,
    seconds: float,
    error: str | None = None,
) -> None:
    with connect(root) as con:
        con.execute(
            "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, stage, fingerprint, cached, status, _now(), seconds, error],
        )


def record_dataset(root: str | Path, dataset: Dataset) -> None:
    """Record a published dataset version and its lineage edges (idempotent)."""
    m = dataset.manifest
    fp = m["fingerprint"]
    data = m["views"]["data"]
    counts = m.get("counts", {})
    with connect(root) as con:
        if con.execute("SELECT 1 FROM datasets WHERE fingerprint = ?", [fp]).fetchone():
            return
        con.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                fp,
                m["stage"],
                str(dataset.data_path),
                m.get("series"),
                (m.get("parent") or {}).get("fingerprint"),
                counts.get("rows_in"),
                counts.get("rows_out"),
                counts.get("rows_rejected"),
                json.dumps(counts.get("rejected_by_reason", {})),
                data["rows"],
                data["bytes"],
                json.dumps(m.get("config", {})),
                json.dumps(m.get("totals", {})),
                json.dumps(m.get("stats", {}), default=str),
                _now(),
            ],
        )
        for inp in m.get("inputs", []):
            con.execute(
                "INSERT INTO lineage VALUES (?, ?, 'input', ?)", [fp, inp["fingerprint"], inp["stage"]]
            )
        if m.get("parent"):
            con.execute(
                "INSERT INTO lineage VALUES (?, ?, 'parent', ?)", [fp, m["parent"]["fingerprint"], m["stage"]]
            )
        for u in m.get("stats", {}).get("units", []) if m["stage"] == "ingest" else []:
            con.execute("INSERT INTO source_files VALUES (?, ?, ?)", [fp, u["key"], u["sha256"]])


def published_datasets(root: str | Path) -> list[Dataset]:
    """Every published version under the root, found from the files (the catalog may lag)."""
    base = storage.local_path(root) / "datasets"
    pattern = f"*/*/{MANIFEST}"
    manifests = storage.remote_glob(base, pattern) if storage.url_of(base) else base.glob(pattern)
    return [Dataset(m.parent) for m in sorted(manifests) if is_published(m.parent)]


def latest(root: str | Path, stage: str) -> Dataset | None:
    """The most recently recorded dataset of a stage (catalog order, else file time)."""
    if catalog_path(root).is_file():
        with connect(root, read_only=True) as con:
            row = con.execute(
                "SELECT path FROM datasets WHERE stage = ? ORDER BY created_at DESC LIMIT 1", [stage]
            ).fetchone()
        if row and is_published(Path(row[0]).parent):
            return Dataset(Path(row[0]).parent)
    found = [d for d in published_datasets(root) if d.stage == stage]
    return max(found, key=_published_at) if found else None


def find(root: str | Path, ref: str) -> Dataset:
    """A dataset by path, stage name (its latest version) or unique fingerprint prefix."""
    p = storage.local_path(ref)
    if is_published(p) or is_published(p.parent):
        return Dataset(p)
    published = published_datasets(root)
    if ref in {d.stage for d in published}:
        found = latest(root, ref)
        if found:
            return found
    matches = [d for d in published if d.fingerprint.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(
            f"{ref!r} matches {len(matches)} datasets under {root} ("
            + ", ".join(f"{d.stage} {d.fingerprint[:12]}" for d in matches[:5])
            + "): give more of the fingerprint"
        )
    raise ConfigError(f"{ref!r} is not a dataset path, a stage name or a fingerprint prefix under {root}")


def _published_at(d: Dataset) -> float:
    m = d.path / MANIFEST
    return storage.remote_mtime(m) if storage.url_of(m) else m.stat().st_mtime


def lineage_sql() -> str:
    """Raw files behind a dataset: walk lineage up to ingest versions, then their source files."""
    return """
WITH RECURSIVE up(fp) AS (
    SELECT ?::VARCHAR
    UNION
    SELECT l.parent FROM lineage l JOIN up ON l.child = up.fp
)
SELECT DISTINCT s.key, s.sha256 FROM up JOIN source_files s ON s.fingerprint = up.fp ORDER BY s.key
"""
