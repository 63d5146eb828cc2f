"""Great Expectations suites run on a stage's staged output before it is published.

One small suite per kind of dataset:

* ``documents`` (ingest, dedup, filter, ...): the document columns are present, ids are not null
  and unique (informational for stages that set ``unique_ids = False``), text is not empty, the
  row count equals ``rows_out``;
* ``tokens`` (tokenize): every packed sequence has exactly ``seq_len + 1`` ids within
  ``[0, vocab_size)``, no nulls, row counts per split equal the manifest totals, document ids
  unique, and the validation fraction within binomial bounds of the configured one.

GX runs in an ephemeral (in-memory) context on pandas frames. A frame never holds the data
itself: DuckDB reduces each row to a few numbers (token count, smallest and largest id, text
length) so memory stays small; views above ``MAX_FRAME_ROWS`` rows are checked on a seeded
sample, with the global properties (row counts, unique ids) still exact in DuckDB.
A failed expectation raises :class:`ValidationFailed` naming it and how many rows fail; the
results (a flat list of plain dicts, ready for a table artifact) go into the manifest.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow.parquet as pq

from . import observe
from .dataset import DATA_VIEW
from .errors import ValidationFailed
from .schema import DOCUMENT_SCHEMA

if TYPE_CHECKING:
    import pandas as pd

    from .stage import Stage, StageContext

log = logging.getLogger("tokenmill")
MAX_FRAME_ROWS = 2_000_000
# The frames are streaming scans: without a limit DuckDB keeps decompressed pages cached as it
# reads (hundreds of MB on a gigabyte of text), which the pipeline's memory budget cannot spare.
DUCKDB_CONFIG = {"memory_limit": "256MB"}
SAMPLE_SEED = 0
# A deterministic split by hash is binomial; wider than 4 standard deviations means a broken split.
VAL_FRACTION_SIGMAS = 4.0


@dataclass
class Suite:
    """Expectations over one frame: the per-row properties of one view of the staged output."""

    name: str
    frame: pd.DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation objects
    informational: set[str] = field(default_factory=set)  # expectation types reported, never failing
    sampled: bool = False


def validate_stage_output(stage: Stage, ctx: StageContext, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Run the stage's suites on its staged output; raise ValidationFailed if an expectation fails."""
    suites = stage.validation_suites(ctx.staging_dir, manifest)
    if suites is None:
        return None
    t0 = time.perf_counter()
    report = run_suites(suites)
    # Timing goes to the progress hook, not the manifest: outputs carry no wall-clock values.
    observe.report(
        "validation", stage=stage.name, seconds=time.perf_counter() - t0, success=report["success"]
    )
    failed = [r for r in report["results"] if not r["success"] and not r.get("informational")]
    if failed:
        raise ValidationFailed(f"{stage.name} output failed validation: " + "; ".join(map(describe, failed)))
    return report


def describe(r: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items())
    what = f"{r['suite']}: {r['expectation']}({args})"
    if r.get("unexpected") is not None:
        return f"{what}: {r['unexpected']} of {r['rows']} rows fail"
    return f"{what}: observed {r.get('observed')}"


# -- suites -----------------------------------------------------------------------------------


def documents_suite(stage: Stage, staging_dir: Path, manifest: dict[str, Any]) -> list[Suite]:
    gxe = _expectations()
    view = staging_dir / DATA_VIEW
    files = _files(view)
    names = pq.read_schema(files[0]).names if files else list(stage.data_schema.names)
    frame, sampled = _frame(
        files,
        "id, source, length(trim(text, chr(32) || chr(9) || chr(10) || chr(13))) AS text_chars",
        {"id": "VARCHAR", "source": "VARCHAR", "text_chars": "BIGINT"},
    )
    unique = stage.unique_ids
    # The column set is checked on the shards' schema, the rest on per-row properties.
    schema = Suite(
        f"{stage.name}.schema",
        _empty_frame(names),
        [gxe.ExpectTableColumnsToMatchSet(column_set=DOCUMENT_SCHEMA.names, exact_match=False)],
    )
    checks = [
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToNotBeNull(column="source"),
        gxe.ExpectColumnValuesToNotBeNull(column="text_chars"),
        gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
    ]
    if not sampled and stage.rows_out_is_data_rows:
        checks.append(gxe.ExpectTableRowCountToEqual(value=manifest["counts"]["rows_out"]))
    rows = Suite(
        f"{stage.name}.{DATA_VIEW}",
        frame,
        checks,
        informational=set() if unique else {"expect_column_values_to_be_unique"},
        sampled=sampled,
    )
    suites = [schema, rows]
    if sampled and unique:
        suites.append(_exact_unique_ids(stage.name, DATA_VIEW, files))
    return suites


def tokens_suite(stage: Stage, staging_dir: Path, manifest: dict[str, Any], docs_view: str) -> list[Suite]:
    """Packed sequences in the data view, and per-document token lists in ``docs_view``."""
    gxe = _expectations()
    totals = manifest["totals"]
    width, top = totals["seq_len"] + 1, totals["vocab_size"] - 1
    ids = "list_min(input_ids) AS min_id, list_max(input_ids) AS max_id"
    types = {
        "split": "VARCHAR",
        "n_tokens": "BIGINT",
        "min_id": "BIGINT",
        "max_id": "BIGINT",
        "is_val": "INTEGER",
    }

    data_files = _files(staging_dir / DATA_VIEW)
    data, data_sampled = _frame(
        data_files, f"split, len(input_ids) AS n_tokens, {ids}, (split = 'val')::INTEGER AS is_val", types
    )
    seq = [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("split", "n_tokens", "min_id", "max_id")],
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]),
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=width, max_value=width),
        gxe.ExpectColumnValuesToBeBetween(column="min_id", min_value=0, max_value=top),
        gxe.ExpectColumnValuesToBeBetween(column="max_id", min_value=0, max_value=top),
    ]
    if not data_sampled:
        n_val = totals["sequences_val"]
        seq += [
            gxe.ExpectTableRowCountToEqual(value=totals["sequences_train"] + n_val),
            gxe.ExpectColumnSumToBeBetween(column="is_val", min_value=n_val, max_value=n_val),
        ]

    docs_files = _files(staging_dir / docs_view)
    docs, docs_sampled = _frame(
        docs_files,
        f"id, split, n_tokens, len(input_ids) AS list_len, {ids}, (split = 'val')::INTEGER AS is_val",
        {"id": "VARCHAR", "list_len": "BIGINT", **types},
    )
    doc = [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("id", "split", "n_tokens", "list_len")],
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]),
        gxe.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="n_tokens", column_B="list_len"),
        gxe.ExpectColumnValuesToBeBetween(column="min_id", min_value=0, max_value=top),
        gxe.ExpectColumnValuesToBeBetween(column="max_id", min_value=0, max_value=top),
    ]
    if not docs_sampled:
        doc += [
            gxe.ExpectTableRowCountToEqual(value=totals["docs"]),
            gxe.ExpectColumnSumToBeBetween(
                column="is_val", min_value=totals["docs_val"], max_value=totals["docs_val"]
            ),
        ]
    if totals["docs"]:
        lo, hi = val_fraction_bounds(manifest["config"]["val_fraction"], totals["docs"])
        doc.append(gxe.ExpectColumnMeanToBeBetween(column="is_val", min_value=lo, max_value=hi))
    suites = [
        Suite(f"{stage.name}.{DATA_VIEW}", data, seq, sampled=data_sampled),
        Suite(f"{stage.name}.{docs_view}", docs, doc, sampled=docs_sampled),
    ]
    if docs_sampled:
        suites.append(_exact_unique_ids(stage.name, docs_view, docs_files))
    return suites


def val_fraction_bounds(p: float, n: int) -> tuple[float, float]:
    """Bounds on the val share of ``n`` documents split by hash with probability ``p``."""
    if p <= 0:
        return 0.0, 0.0
    slack = VAL_FRACTION_SIGMAS * math.sqrt(p * (1 - p) / n) + 1 / n
    return max(0.0, p - slack), min(1.0, p + slack)


# -- running GX -------------------------------------------------------------------------------


def run_suites(suites: list[Suite]) -> dict[str, Any]:
    """Validate each suite's frame in one ephemeral GX context; plain-dict results."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("tokenmill")
    results: list[dict[str, Any]] = []
    for s in suites:
        batch = source.add_dataframe_asset(s.name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=s.name, expectations=s.expectations))
        outcome = batch.get_batch(batch_parameters={"dataframe": s.frame}).validate(suite)
        for r in outcome.results:
            results.append(_result(s, r))
    return {
        "success": all(r["success"] or r.get("informational") for r in results),
        "engine": f"great_expectations {gx.__version__}",
        "suites": [{"suite": s.name, "rows": len(s.frame), "sampled": s.sampled} for s in suites],
        "results": results,
    }


def _result(suite: Suite, r: Any) -> dict[str, Any]:
    cfg = r.expectation_config
    kwargs = {k: _plain(v) for k, v in cfg.kwargs.items() if k != "batch_id"}
    res = r.result or {}
    out = {
        "suite": suite.name,
        "expectation": cfg.type,
        "kwargs": kwargs,
        "success": bool(r.success),
        "rows": int(res.get("element_count", len(suite.frame))),
        "unexpected": None if res.get("unexpected_count") is None else int(res["unexpected_count"]),
        "observed": _plain(res.get("observed_value")),
        "sampled": suite.sampled,
    }
    if cfg.type in suite.informational:
        out["informational"] = True
    return out


def _plain(v: Any) -> Any:
    """JSON-ready values (GX hands back numpy scalars)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)  # GX turns bounds into floats; 257 reads better than 257.0
    return v


def _import_gx() -> Any:
    # GX phones home on import unless told not to; the pipeline never touches the network.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _expectations() -> Any:
    _import_gx()
    import great_expectations.expectations as gxe

    return gxe


def preload() -> None:
    """Start importing GX in a background thread, so its seconds of import overlap a stage's work.

    A stage calls this as it starts; :func:`run_suites` later imports GX as usual, waiting on
    Python's import lock if the background import is still running.
    """
    global _preloader
    if "great_expectations" in sys.modules or _preloader is not None:
        return

    def load() -> None:
        try:
            _import_gx()
        except (ImportError, RuntimeError):  # the foreground import raises it again, in context
            log.debug("background import of great_expectations failed", exc_info=True)

    _preloader = threading.Thread(target=load, name="gx-preload", daemon=True)
    _preloader.start()


_preloader: threading.Thread | None = None


# -- frames -----------------------------------------------------------------------------------


def _files(view: Path) -> list[str]:
    return [str(p) for p in sorted(view.glob("*.parquet"))]


def _frame(files: list[str], select: str, types: dict[str, str]) -> tuple[pd.DataFrame, bool]:
    """Per-row properties of a view as a pandas frame (a seeded sample above MAX_FRAME_ROWS)."""
    con = duckdb.connect(config=DUCKDB_CONFIG)
    if not files:
        cols = ", ".join(f"NULL::{t} AS {c}" for c, t in types.items())
        return con.execute(f"SELECT {cols} LIMIT 0").df(), False
    source = f"read_parquet({files!r})"
    rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    sampled = rows > MAX_FRAME_ROWS
    sample = f" USING SAMPLE reservoir({MAX_FRAME_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})" if sampled else ""
    return con.execute(f"SELECT {select} FROM {source}{sample}").df(), sampled


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: [] for c in columns})


def _exact_unique_ids(stage: str, view: str, files: list[str]) -> Suite:
    """Over a sampled view: the count of duplicate ids over all rows, exact, as a one-row frame."""
    gxe = _expectations()
    frame = (
        duckdb.connect(config=DUCKDB_CONFIG)
        .execute(f"SELECT count(*) - count(DISTINCT id) AS duplicate_ids FROM read_parquet({files!r})")
        .df()
    )
    exp = gxe.ExpectColumnValuesToBeBetween(column="duplicate_ids", min_value=0, max_value=0)
    return Suite(f"{stage}.{view}.all_rows", frame, [exp])
