"""Great Expectations suites run on a stage's staged output before it is published.

One small suite per kind of dataset:

* ``documents`` (ingest, dedup, filter, ...): the document columns are present, ids are not null
  and unique (informational for stages that set ``unique_ids = False``), text is not empty, the
  row count equals ``rows_out``;
* ``tokens`` (tokenize): every packed sequence has exactly ``seq_len + 1`` ids within
  ``[0, vocab_size)``, no nulls, row counts per split equal the manifest totals, document ids
  unique, and the validation fraction within binomial bounds of the configured one.

A suite is a list of GX expectation configurations (GX's expectation type and its keyword
arguments) over the per-row properties of one view (:class:`Prop`: token count, smallest and
largest id, whether the text is blank), each defined once as DuckDB SQL and as Arrow compute.
Three engines run the same suites, with GX's semantics (column-map expectations skip nulls,
except the not-null one; ``unexpected`` counts rows; aggregates observe the value):

* ``duckdb``: each suite is one aggregate query over those properties, every expectation a
  column of it. GX is not imported: importing it takes seconds, and a GX context and validator
  cost about 0.4 s per stage, more than the checks themselves on small outputs.
* ``arrow``: the properties computed with pyarrow, batch by batch, and the expectations counted
  on them. A small output is checked in a millisecond or two, and a process that validates only
  small outputs never opens DuckDB (40 ms the first time).
* ``gx``: GX itself, in an ephemeral context on pandas frames of the same properties.

The default, ``auto``, is arrow for views of up to ``ARROW_MAX_ROWS`` rows and
``ARROW_MAX_BYTES`` of Parquet, and duckdb above (its scans use every core). A test runs every
engine on passing and failing outputs and requires equal results; set
``TOKENMILL_VALIDATION_ENGINE`` to ``duckdb``, ``arrow`` or ``gx`` to force one.

Views above ``MAX_FRAME_ROWS`` rows are checked on a seeded sample, with the global properties
(row counts, unique ids) still exact. A failed expectation raises :class:`ValidationFailed`
naming it and how many rows fail; the results (a flat list of plain dicts, ready for a table
artifact) go into the manifest.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import duckdb_session, observe
from .dataset import DATA_VIEW, FileKey, file_key, shard_rows, shard_schema
from .errors import ConfigError, ValidationFailed
from .schema import DOCUMENT_SCHEMA

if TYPE_CHECKING:
    import pandas as pd

    from .stage import Stage, StageContext

log = logging.getLogger("tokenmill")
MAX_FRAME_ROWS = 2_000_000
SAMPLE_SEED = 0
# A deterministic split by hash is binomial; wider than 4 standard deviations means a broken split.
VAL_FRACTION_SIGMAS = 4.0
ENGINE_ENV = "TOKENMILL_VALIDATION_ENGINE"
ENGINES = ("auto", "duckdb", "arrow", "gx")
# Per suite. Up to 4 MB Arrow (~13 ms a MB of token-id lists, ~7 ms a MB of text) costs about
# what a first DuckDB query costs in a fresh process (opening it: 40 ms); above, DuckDB's parallel
# scans win.
ARROW_MAX_ROWS = 50_000
ARROW_MAX_BYTES = 4 << 20
ARROW_BATCH_ROWS = 8_192


@dataclass(frozen=True)
class Expectation:
    """One GX expectation configuration: GX's expectation type and its keyword arguments."""

    type: str
    kwargs: dict[str, Any]


def expect(type_: str, **kwargs: Any) -> Expectation:
    """``expect("column_values_to_be_between", column="n", min_value=1)``: GX's
    ``expect_column_values_to_be_between``, the keyword arguments as given (give only those that
    differ from GX's defaults: GX leaves defaults out of a configuration's kwargs)."""
    return Expectation(f"expect_{type_}", kwargs)


@dataclass(frozen=True)
class Prop:
    """One per-row property of a view, as DuckDB SQL and as the same computed with pyarrow."""

    name: str
    sql: str
    type: str  # DuckDB type, for an empty view
    reads: tuple[str, ...]  # the Parquet columns it needs
    arrow: Callable[[pa.Table], pa.Array | pa.ChunkedArray]


def column(name: str, type_: str) -> Prop:
    return Prop(name, _ident(name), type_, (name,), lambda t: t.column(name))


def nonblank(name: str, text: str) -> Prop:
    """1 when the text holds anything but spaces, tabs and line breaks (null for a null text).
    A regex stops at the first such character; trimming and measuring every text costs more."""
    pattern = r"[^ \t\n\r]"
    return Prop(
        name,
        f"regexp_matches({_ident(text)}, '{pattern}')::INTEGER",
        "INTEGER",
        (text,),
        lambda t: pc.match_substring_regex(t.column(text), pattern).cast(pa.int32()),
    )


def equals(name: str, col: str, value: str) -> Prop:
    """1 where ``col`` equals ``value``, else 0 (null where ``col`` is)."""
    return Prop(
        name,
        f"({_ident(col)} = {_literal(value)})::INTEGER",
        "INTEGER",
        (col,),
        lambda t: pc.equal(t.column(col), value).cast(pa.int32()),
    )


def list_len(name: str, col: str) -> Prop:
    return Prop(
        name,
        f"len({_ident(col)})",
        "BIGINT",
        (col,),
        lambda t: pc.list_value_length(t.column(col)).cast(pa.int64()),
    )


def list_min(name: str, col: str) -> Prop:
    return Prop(
        name, f"list_min({_ident(col)})", "BIGINT", (col,), lambda t: _list_reduce(t.column(col), "min")
    )


def list_max(name: str, col: str) -> Prop:
    return Prop(
        name, f"list_max({_ident(col)})", "BIGINT", (col,), lambda t: _list_reduce(t.column(col), "max")
    )


def _list_reduce(lists: pa.ChunkedArray, how: str) -> pa.Array:
    """Each list's smallest or largest value; null for a null or empty list, as in DuckDB."""
    lists = lists.combine_chunks()
    if lists.null_count == 0 and lists.values.null_count == 0:
        return _list_reduce_dense(lists, how)
    out = np.zeros(len(lists), dtype=np.int64)
    has = np.zeros(len(lists), dtype=bool)
    values, rows = pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy()
    if values.null_count:  # DuckDB's list_min and list_max skip null elements
        valid = pc.is_valid(values)
        values, rows = values.filter(valid), rows[valid.to_numpy(zero_copy_only=False)]
    if len(values):
        vals = values.to_numpy(zero_copy_only=False)
        # Lists are contiguous runs of rows, so a reduceat over their starts reduces each one.
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        reduce = np.minimum if how == "min" else np.maximum
        out[rows[starts]] = reduce.reduceat(vals, starts)
        has[rows[starts]] = True
    return pa.array(out, mask=~has)


def _list_reduce_dense(lists: pa.ListArray, how: str) -> pa.Array:
    """:func:`_list_reduce` for lists and values without nulls: each list's values are the run
    between its offsets, so a reduceat over the non-empty lists' starts reduces each one (no
    per-value parent index to build and compare, which cost as much as the reduction)."""
    offsets = lists.offsets.to_numpy()  # into lists.values, which a slice does not cut
    values = lists.values.slice(0, int(offsets[-1])).to_numpy(zero_copy_only=False)
    has = offsets[1:] > offsets[:-1]
    out = np.zeros(len(lists), dtype=np.int64)
    if has.any():
        reduce = np.minimum if how == "min" else np.maximum
        out[has] = reduce.reduceat(values, offsets[:-1][has])
    return pa.array(out, mask=~has)


@dataclass(frozen=True)
class Rows:
    """The per-row properties a suite checks over a view's Parquet shards (a seeded sample when
    ``sampled``), or, for a schema suite, only ``columns`` and no rows. ``select`` is their SQL;
    a suite whose properties are given as :class:`Prop` s (``props``) also runs in Arrow."""

    files: list[str]
    select: str = ""
    types: dict[str, str] = field(default_factory=dict)  # column -> DuckDB type, for an empty view
    sampled: bool = False
    columns: list[str] | None = None
    props: tuple[Prop, ...] | None = None
    rows: int | None = None  # from the footers, when known
    bytes: int | None = None  # of the Parquet files, when known

    def sql(self) -> str:
        if not self.files:
            cols = ", ".join(f"NULL::{t} AS {_ident(c)}" for c, t in self.types.items())
            return f"SELECT {cols} LIMIT 0"
        sample = f" USING SAMPLE reservoir({MAX_FRAME_ROWS} ROWS) REPEATABLE ({SAMPLE_SEED})"
        return f"SELECT {self.select} FROM read_parquet({self.files!r}){sample if self.sampled else ''}"

    def names(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        if self.columns is not None:
            return list(self.columns)
        return [d[0] for d in con.execute(f"SELECT * FROM ({self.sql()}) LIMIT 0").description]


@dataclass
class Suite:
    """Expectations over the per-row properties of one view of the staged output."""

    name: str
    rows: Rows
    expectations: list[Expectation]
    informational: set[str] = field(default_factory=set)  # expectation types reported, never failing

    @property
    def sampled(self) -> bool:
        return self.rows.sampled


def engine() -> str:
    """The validation engine: ``$TOKENMILL_VALIDATION_ENGINE``, else auto."""
    name = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if name not in ENGINES:
        raise ConfigError(f"{ENGINE_ENV}={name!r}: the validation engine is one of {', '.join(ENGINES)}")
    return name


def validate_stage_output(stage: Stage, ctx: StageContext, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Run the stage's suites on its staged output; raise ValidationFailed if an expectation fails."""
    suites = stage.validation_suites(ctx.staging_dir, manifest)
    if suites is None:
        return None
    t0 = time.perf_counter()
    report = run_suites(suites)
    # Timing goes to the progress hook, not the manifest: outputs carry no wall-clock values.
    observe.report(
        "validation",
        stage=stage.name,
        seconds=time.perf_counter() - t0,
        success=report["success"],
        engine=report["engine"],
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
    view = staging_dir / DATA_VIEW
    files = _files(view)
    names = shard_schema(files[0]).names if files else list(stage.data_schema.names)
    rows = _rows(
        files, column("id", "VARCHAR"), column("source", "VARCHAR"), nonblank("text_nonblank", "text")
    )
    unique = stage.unique_ids
    # The column set is checked on the shards' schema, the rest on per-row properties.
    schema = Suite(
        f"{stage.name}.schema",
        Rows([], columns=names),
        [expect("table_columns_to_match_set", column_set=DOCUMENT_SCHEMA.names, exact_match=False)],
    )
    checks = [
        expect("column_values_to_not_be_null", column="id"),
        expect("column_values_to_not_be_null", column="source"),
        expect("column_values_to_not_be_null", column="text_nonblank"),
        expect("column_values_to_be_between", column="text_nonblank", min_value=1),
        expect("column_values_to_be_unique", column="id"),
    ]
    if not rows.sampled and stage.rows_out_is_data_rows:
        checks.append(expect("table_row_count_to_equal", value=manifest["counts"]["rows_out"]))
    data = Suite(
        f"{stage.name}.{DATA_VIEW}",
        rows,
        checks,
        informational=set() if unique else {"expect_column_values_to_be_unique"},
    )
    suites = [schema, data]
    if rows.sampled and unique:
        suites.append(_exact_unique_ids(stage.name, DATA_VIEW, files))
    return suites


def tokens_suite(stage: Stage, staging_dir: Path, manifest: dict[str, Any], docs_view: str) -> list[Suite]:
    """Packed sequences in the data view, and per-document token lists in ``docs_view``."""
    totals = manifest["totals"]
    width, top = totals["seq_len"] + 1, totals["vocab_size"] - 1
    data = _rows(_files(staging_dir / DATA_VIEW), *packed_props())
    seq = [
        *[
            expect("column_values_to_not_be_null", column=c)
            for c in ("split", "n_tokens", "min_id", "max_id")
        ],
        expect("column_values_to_be_in_set", column="split", value_set=["train", "val"]),
        expect("column_values_to_be_between", column="n_tokens", min_value=width, max_value=width),
        expect("column_values_to_be_between", column="min_id", min_value=0, max_value=top),
        expect("column_values_to_be_between", column="max_id", min_value=0, max_value=top),
    ]
    if not data.sampled:
        n_val = totals["sequences_val"]
        seq += [
            expect("table_row_count_to_equal", value=totals["sequences_train"] + n_val),
            expect("column_sum_to_be_between", column="is_val", min_value=n_val, max_value=n_val),
        ]

    docs_files = _files(staging_dir / docs_view)
    docs = _rows(docs_files, *doc_token_props())
    doc = [
        *[expect("column_values_to_not_be_null", column=c) for c in ("id", "split", "n_tokens", "list_len")],
        expect("column_values_to_be_unique", column="id"),
        expect("column_values_to_be_in_set", column="split", value_set=["train", "val"]),
        expect("column_values_to_be_between", column="n_tokens", min_value=1),
        expect("column_pair_values_to_be_equal", column_A="n_tokens", column_B="list_len"),
        expect("column_values_to_be_between", column="min_id", min_value=0, max_value=top),
        expect("column_values_to_be_between", column="max_id", min_value=0, max_value=top),
    ]
    if not docs.sampled:
        doc += [
            expect("table_row_count_to_equal", value=totals["docs"]),
            expect(
                "column_sum_to_be_between",
                column="is_val",
                min_value=totals["docs_val"],
                max_value=totals["docs_val"],
            ),
        ]
    if totals["docs"]:
        lo, hi = val_fraction_bounds(manifest["config"]["val_fraction"], totals["docs"])
        doc.append(expect("column_mean_to_be_between", column="is_val", min_value=lo, max_value=hi))
    suites = [Suite(f"{stage.name}.{DATA_VIEW}", data, seq), Suite(f"{stage.name}.{docs_view}", docs, doc)]
    if docs.sampled:
        suites.append(_exact_unique_ids(stage.name, docs_view, docs_files))
    return suites


def packed_props() -> tuple[Prop, ...]:
    """The per-row properties the tokens suite checks on packed sequences."""
    return (column("split", "VARCHAR"), list_len("n_tokens", "input_ids"), *_token_id_props())


def doc_token_props() -> tuple[Prop, ...]:
    """The per-row properties the tokens suite checks on per-document token lists."""
    return (
        column("id", "VARCHAR"),
        column("split", "VARCHAR"),
        column("n_tokens", "BIGINT"),
        list_len("list_len", "input_ids"),
        *_token_id_props(),
    )


def _token_id_props() -> tuple[Prop, ...]:
    return (
        list_min("min_id", "input_ids"),
        list_max("max_id", "input_ids"),
        equals("is_val", "split", "val"),
    )


def val_fraction_bounds(p: float, n: int) -> tuple[float, float]:
    """Bounds on the val share of ``n`` documents split by hash with probability ``p``."""
    if p <= 0:
        return 0.0, 0.0
    slack = VAL_FRACTION_SIGMAS * math.sqrt(p * (1 - p) / n) + 1 / n
    return max(0.0, p - slack), min(1.0, p + slack)


def _files(view: Path) -> list[str]:
    return [str(p) for p in sorted(view.glob("*.parquet"))]


def _rows(files: list[str], *props: Prop) -> Rows:
    """A view's per-row properties, sampled when it holds more than ``MAX_FRAME_ROWS`` rows."""
    # Row counts come from the Parquet footers (or the writer's note): no data is read to decide.
    total = sum(shard_rows(f) for f in files)
    select = ", ".join(f"{p.sql} AS {_ident(p.name)}" for p in props)
    types = {p.name: p.type for p in props}
    size = sum(os.stat(f).st_size for f in files)
    return Rows(files, select, types, sampled=total > MAX_FRAME_ROWS, props=props, rows=total, bytes=size)


def _exact_unique_ids(stage: str, view: str, files: list[str]) -> Suite:
    """Over a sampled view: the count of duplicate ids over all rows, exact, as one row."""
    rows = Rows(files, "count(*) - count(DISTINCT id) AS duplicate_ids", {"duplicate_ids": "BIGINT"})
    exp = expect("column_values_to_be_between", column="duplicate_ids", min_value=0, max_value=0)
    return Suite(f"{stage}.{view}.all_rows", rows, [exp])


# -- running the suites -----------------------------------------------------------------------


def run_suites(suites: list[Suite], engine_name: str | None = None) -> dict[str, Any]:
    """Run every suite with one engine (default: :func:`engine`); plain-dict results."""
    name = engine_name or engine()
    if name == "auto":
        name = "arrow" if all(_arrow_fits(s) for s in suites) else "duckdb"
    if name == "arrow" and not all(_arrow_runs(s) for s in suites):
        raise ConfigError("these suites have no Arrow form (a SQL select or a sample): run them in duckdb")
    runner = {"gx": _run_gx, "arrow": _run_arrow, "duckdb": _run_duckdb}[name]
    results, rows, label = runner(suites)
    return {
        "success": all(r["success"] or r.get("informational") for r in results),
        "engine": label,
        "suites": [{"suite": s.name, "rows": n, "sampled": s.sampled} for s, n in zip(suites, rows)],
        "results": results,
    }


def _result(
    suite: Suite,
    exp_type: str,
    kwargs: dict[str, Any],
    success: bool,
    rows: int,
    unexpected: int | None,
    observed: Any,
) -> dict[str, Any]:
    out = {
        "suite": suite.name,
        "expectation": exp_type,
        "kwargs": {k: _plain(v) for k, v in kwargs.items()},
        "success": bool(success),
        "rows": int(rows),
        "unexpected": None if unexpected is None else int(unexpected),
        "observed": _plain(observed),
        "sampled": suite.sampled,
    }
    if exp_type in suite.informational:
        out["informational"] = True
    return out


def _plain(v: Any) -> Any:
    """JSON-ready values (GX and DuckDB hand back numpy scalars and Decimals)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        v = v.item()
    if type(v).__name__ == "Decimal":
        v = float(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)  # GX turns bounds into floats; 257 reads better than 257.0
    return v


# -- the duckdb engine ------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _in_bounds(x: str, kw: dict[str, Any]) -> str:
    """SQL for ``x`` within GX's ``min_value``/``max_value`` (inclusive unless ``strict_*``)."""
    parts = []
    if kw.get("min_value") is not None:
        parts.append(f"{x} {'>' if kw.get('strict_min') else '>='} {_literal(kw['min_value'])}")
    if kw.get("max_value") is not None:
        parts.append(f"{x} {'<' if kw.get('strict_max') else '<='} {_literal(kw['max_value'])}")
    return " AND ".join(parts) or "TRUE"


# Column-map expectations: the rows they count as unexpected. As in GX, nulls are skipped
# (a null is neither expected nor unexpected) except by the not-null expectation itself.
_UNEXPECTED = {
    "expect_column_values_to_not_be_null": lambda c, kw: f"{c} IS NULL",
    "expect_column_values_to_be_between": lambda c, kw: f"{c} IS NOT NULL AND NOT ({_in_bounds(c, kw)})",
    "expect_column_values_to_be_in_set": lambda c, kw: (
        f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(map(_literal, kw['value_set'])) or 'NULL'})"
    ),
}
_AGGREGATE = {  # aggregate expectations: the value they observe (pandas sums an empty column to 0)
    "expect_column_sum_to_be_between": lambda c: f"coalesce(sum({c}), 0)",
    "expect_column_mean_to_be_between": lambda c: f"avg({c})",
}
_SUPPORTED = {
    *_UNEXPECTED,
    *_AGGREGATE,
    "expect_column_values_to_be_unique",
    "expect_column_pair_values_to_be_equal",
    "expect_table_row_count_to_equal",
    "expect_table_columns_to_match_set",
}


def _run_duckdb(suites: list[Suite]) -> tuple[list[dict[str, Any]], list[int], str]:
    """Each suite as one query: the row count and every expectation's measure, in one pass."""
    results: list[dict[str, Any]] = []
    counts: list[int] = []
    with duckdb_session.cursor() as con:
        for s in suites:
            counts.append(_run_duckdb_suite(con, s, results))
    return (
        results,
        counts,
        f"great_expectations {_gx_version()} expectations, run in duckdb {duckdb.__version__}",
    )


def _run_duckdb_suite(con: duckdb.DuckDBPyConnection, s: Suite, results: list[dict[str, Any]]) -> int:
    """Append one suite's results; return its row count."""
    unknown = [e.type for e in s.expectations if e.type not in _SUPPORTED]
    if unknown:
        raise ConfigError(f"{s.name}: {unknown[0]} has no DuckDB form; run it with {ENGINE_ENV}=gx")
    if s.rows.columns is not None:  # a schema suite: column names, no rows
        results += [_columns_result(s, e, s.rows.columns, 0) for e in s.expectations]
        return 0
    measures = ["count(*)"] + [_measure(e) for e in s.expectations]
    row = con.execute(
        f"WITH t AS MATERIALIZED ({s.rows.sql()}) SELECT {', '.join(measures)} FROM t"
    ).fetchone()
    assert row is not None  # an aggregate query returns one row
    n, values = int(row[0]), row[1:]
    for e, v in zip(s.expectations, values):
        if e.type == "expect_table_columns_to_match_set":
            results.append(_columns_result(s, e, s.rows.names(con), n))
        else:
            results.append(_duckdb_result(s, e, v, n))
    return n


def _measure(e: Expectation) -> str:
    kw = e.kwargs
    if e.type in _UNEXPECTED:
        return f"count(*) FILTER (WHERE {_UNEXPECTED[e.type](_ident(kw['column']), kw)})"
    if e.type in _AGGREGATE:
        return _AGGREGATE[e.type](_ident(kw["column"]))
    if e.type == "expect_column_values_to_be_unique":
        c = _ident(kw["column"])
        # Every row whose value occurs more than once is unexpected (GX counts all copies).
        return f"(SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM t WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) > 1))"
    if e.type == "expect_column_pair_values_to_be_equal":
        a, b = _ident(kw["column_A"]), _ident(kw["column_B"])
        # GX's default ignore_row_if: rows where both are null are skipped.
        return f"count(*) FILTER (WHERE NOT ({a} IS NULL AND {b} IS NULL) AND ({a} IS NULL OR {b} IS NULL OR {a} <> {b}))"
    if e.type == "expect_table_row_count_to_equal":
        return "count(*)"
    return "NULL"  # the column set: from the relation's names


def _duckdb_result(s: Suite, e: Expectation, value: Any, n: int) -> dict[str, Any]:
    kw = e.kwargs
    if e.type in _AGGREGATE:
        ok = value is not None and _within(value, kw)
        return _result(s, e.type, kw, ok, n, None, value)
    if e.type == "expect_table_row_count_to_equal":
        return _result(s, e.type, kw, value == kw["value"], n, None, value)
    return _result(s, e.type, kw, value == 0, n, value, None)


def _within(value: Any, kw: dict[str, Any]) -> bool:
    v = float(value)
    if math.isnan(v):
        return False
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None and not (v > lo if kw.get("strict_min") else v >= lo):
        return False
    return hi is None or (v < hi if kw.get("strict_max") else v <= hi)


def _columns_result(s: Suite, e: Expectation, names: list[str], n: int) -> dict[str, Any]:
    """GX's column-set rule: an exact match, or (``exact_match=False``) every expected column present."""
    expected, actual = set(e.kwargs["column_set"]), set(names)
    exact = e.kwargs.get("exact_match", True)
    ok = expected == actual if exact else expected <= actual
    return _result(s, e.type, e.kwargs, ok, n, None, sorted(actual))


@functools.cache
def _gx_version() -> str:
    try:
        dist = importlib.metadata.distribution("great_expectations")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
    # The Version line read directly: ``dist.version`` parses the whole METADATA file with the
    # email package (1-2 ms, regex compiles included, once per process).
    for line in (dist.read_text("METADATA") or "").splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
        if not line:
            break  # the end of the headers
    return dist.version


# -- the arrow engine ---------------------------------------------------------------------------


def _arrow_runs(s: Suite) -> bool:
    return s.rows.columns is not None or (s.rows.props is not None and not s.sampled)


def _arrow_fits(s: Suite) -> bool:
    return _arrow_runs(s) and (s.rows.rows or 0) <= ARROW_MAX_ROWS and (s.rows.bytes or 0) <= ARROW_MAX_BYTES


def _run_arrow(suites: list[Suite]) -> tuple[list[dict[str, Any]], list[int], str]:
    """Each suite's properties computed with pyarrow, batch by batch, then every expectation
    counted on them: the same measures as the duckdb engine's query."""
    results: list[dict[str, Any]] = []
    counts: list[int] = []
    for s in suites:
        unknown = [e.type for e in s.expectations if e.type not in _SUPPORTED]
        if unknown:
            raise ConfigError(f"{s.name}: {unknown[0]} has no Arrow form; run it with {ENGINE_ENV}=gx")
    read = [s for s in suites if s.rows.columns is None]
    if all(_all_noted(s.rows) for s in read):  # nothing to read: threads would cost more than they save
        tables = {id(s): _arrow_props(s.rows) for s in read}
    else:
        # The views are read and their properties computed side by side: Parquet decoding and
        # the compute kernels release the GIL, and small outputs are mostly such fixed costs.
        with ThreadPoolExecutor(min(len(read), 2) or 1, thread_name_prefix="validation") as pool:
            tables = dict(zip(map(id, read), pool.map(lambda s: _arrow_props(s.rows), read)))
    for s in suites:
        if s.rows.columns is not None:
            results += [_columns_result(s, e, s.rows.columns, 0) for e in s.expectations]
            counts.append(0)
            continue
        t = tables[id(s)]
        n = t.num_rows
        for e in s.expectations:
            if e.type == "expect_table_columns_to_match_set":
                results.append(_columns_result(s, e, t.column_names, n))
            else:
                results.append(_duckdb_result(s, e, _arrow_measure(e, t), n))
        counts.append(n)
    return (
        results,
        counts,
        f"great_expectations {_gx_version()} expectations, run in pyarrow {pa.__version__}",
    )


def _arrow_props(rows: Rows) -> pa.Table:
    """The properties of every row, read a batch at a time (only the columns they need)."""
    assert rows.props is not None
    props = rows.props
    parts = []
    for f in rows.files:
        early = _noted(f, props)
        parts += early if early is not None else _file_props(f, props)
    if not parts:
        return pa.table({p.name: pa.array([], _ARROW_TYPES.get(p.type, pa.int64())) for p in props})
    return pa.concat_tables(parts)


def _file_props(path: str, props: tuple[Prop, ...]) -> list[pa.Table]:
    reads = sorted({c for p in props for c in p.reads})
    parts = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=ARROW_BATCH_ROWS, columns=reads):
        t = pa.Table.from_batches([batch])
        parts.append(pa.table({p.name: p.arrow(t) for p in props}))
    return parts


# Properties of shards this process wrote, noted ahead of validation (:class:`PropsAhead`) by
# path and property names: the file's file_key when it was closed and the jobs computing them.
# Validation takes them only for a file unchanged since, else it reads the file itself.
_EARLY: dict[tuple[str, tuple[str, ...]], tuple[FileKey, list[Future[list[pa.Table]]]]] = {}
_EARLY_KEPT = 64
_early_lock = threading.Lock()
_early_pool: ThreadPoolExecutor | None = None
# Rows and bytes noted ahead per view directory: past the arrow engine's limits the view is
# validated in DuckDB, which reads the files, so computing more ahead would be wasted.
_AHEAD_SPENT: dict[str, list[int]] = {}
_AHEAD_DIRS_KEPT = 256


def _pool() -> ThreadPoolExecutor:
    global _early_pool
    with _early_lock:
        if _early_pool is None:
            _early_pool = ThreadPoolExecutor(2, thread_name_prefix="validation-early")
        return _early_pool


def _keep_early(path: str, props: tuple[Prop, ...], key: FileKey, jobs: list[Future[list[pa.Table]]]) -> None:
    with _early_lock:
        _EARLY[(path, tuple(p.name for p in props))] = (key, jobs)
        while len(_EARLY) > _EARLY_KEPT:
            _EARLY.pop(next(iter(_EARLY)))


class PropsAhead:
    """A :class:`~pipeline.dataset.ShardWriter`'s watcher: the per-row properties of each table
    it writes, computed in the background from the table itself, noted under the finished
    shard's file_key. The arrow engine then validates those shards without reading back and
    decoding what this process has just encoded (the shard holds exactly the rows written to
    it; a file changed since has another key and is read)."""

    def __init__(self, props: tuple[Prop, ...]):
        self.props = props
        self.jobs: list[Future[list[pa.Table]]] = []
        self.off = engine() not in ("auto", "arrow")

    def wrote(self, path: Path, table: pa.Table) -> None:
        if self.off:
            return
        if not _spend_ahead(path.parent, table.num_rows, 0):
            self.off, self.jobs = True, []
            return
        self.jobs.append(_pool().submit(_table_props, table, self.props))

    def closed(self, path: Path, st: os.stat_result) -> None:
        jobs, self.jobs = self.jobs, []
        if self.off or st.st_size > ARROW_MAX_BYTES or not _spend_ahead(path.parent, 0, st.st_size):
            return
        _keep_early(str(path), self.props, file_key(path, st), jobs)


def _spend_ahead(directory: Path, rows: int, size: int) -> bool:
    """Count rows and bytes noted ahead in a view directory; False once past the arrow limits."""
    with _early_lock:
        spent = _AHEAD_SPENT.setdefault(str(directory), [0, 0])
        spent[0] += rows
        spent[1] += size
        while len(_AHEAD_SPENT) > _AHEAD_DIRS_KEPT:
            _AHEAD_SPENT.pop(next(iter(_AHEAD_SPENT)))
        return spent[0] <= ARROW_MAX_ROWS and spent[1] <= ARROW_MAX_BYTES


def _table_props(table: pa.Table, props: tuple[Prop, ...]) -> list[pa.Table]:
    return [pa.table({p.name: p.arrow(table) for p in props})]


def _all_noted(rows: Rows) -> bool:
    """Whether every file of ``rows`` has its properties noted (:class:`PropsAhead`)."""
    assert rows.props is not None
    names = tuple(p.name for p in rows.props)
    with _early_lock:
        return all((f, names) in _EARLY for f in rows.files)


def _noted(path: str, props: tuple[Prop, ...]) -> list[pa.Table] | None:
    with _early_lock:
        early = _EARLY.pop((path, tuple(p.name for p in props)), None)
    if early is None:
        return None
    key, jobs = early
    if key != file_key(path):
        return None
    try:
        return [t for job in jobs for t in job.result()]
    except Exception:  # computed ahead or here, one error: raise it from the file's own read
        return None


_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32()}


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def _arrow_measure(e: Expectation, t: pa.Table) -> Any:
    """What the duckdb engine's query measures for ``e``: an unexpected count or a value."""
    kw = e.kwargs
    if e.type == "expect_table_row_count_to_equal":
        return t.num_rows
    if e.type == "expect_column_pair_values_to_be_equal":
        a, b = t.column(kw["column_A"]), t.column(kw["column_B"])
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        differ = pc.or_(pc.or_(pc.is_null(a), pc.is_null(b)), pc.fill_null(pc.not_equal(a, b), False))
        return _count(pc.and_(pc.invert(both_null), differ))
    c = t.column(kw["column"])
    if e.type == "expect_column_values_to_not_be_null":
        return c.null_count
    if e.type == "expect_column_values_to_be_between":
        inside = None
        for bound, strict, loose, key in (
            ("min_value", pc.greater, pc.greater_equal, "strict_min"),
            ("max_value", pc.less, pc.less_equal, "strict_max"),
        ):
            if kw.get(bound) is not None:
                cond = (strict if kw.get(key) else loose)(c, kw[bound])
                inside = cond if inside is None else pc.and_(inside, cond)
        return 0 if inside is None else _count(pc.and_(pc.is_valid(c), pc.invert(inside)))
    if e.type == "expect_column_values_to_be_in_set":
        member = pc.is_in(c, value_set=pa.array(kw["value_set"], c.type))
        return _count(pc.and_(pc.is_valid(c), pc.invert(member)))
    if e.type == "expect_column_values_to_be_unique":
        counts = pc.value_counts(c.drop_null()).field("counts") if len(c) else pa.array([], pa.int64())
        return int(pc.sum(pc.filter(counts, pc.greater(counts, 1))).as_py() or 0)
    if e.type == "expect_column_sum_to_be_between":
        return pc.sum(c).as_py() or 0  # as pandas: an empty or all-null column sums to 0
    if e.type == "expect_column_mean_to_be_between":
        return pc.mean(c).as_py()
    raise ConfigError(f"{e.type} has no Arrow form")


# -- the gx engine ----------------------------------------------------------------------------


def _run_gx(suites: list[Suite]) -> tuple[list[dict[str, Any]], list[int], str]:
    """Validate each suite's frame in one ephemeral GX context."""
    gx = _import_gx()
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("tokenmill")
    con = duckdb_session.cursor()  # only reads the frames; GX runs on pandas
    results: list[dict[str, Any]] = []
    counts: list[int] = []
    for s in suites:
        frame = _empty_frame(s.rows.columns) if s.rows.columns is not None else con.execute(s.rows.sql()).df()
        counts.append(len(frame))
        expectations = [getattr(gxe, _class_name(e.type))(**e.kwargs) for e in s.expectations]
        batch = source.add_dataframe_asset(s.name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=s.name, expectations=expectations))
        outcome = batch.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
        for r in outcome.results:
            cfg, res = r.expectation_config, r.result or {}
            kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            unexpected = res.get("unexpected_count")
            rows = res.get("element_count", len(frame))
            results.append(
                _result(s, cfg.type, kwargs, r.success, rows, unexpected, res.get("observed_value"))
            )
    return results, counts, f"great_expectations {gx.__version__}"


def _class_name(exp_type: str) -> str:
    return "".join(w.capitalize() for w in exp_type.split("_"))


def _import_gx() -> Any:
    # GX phones home on import unless told not to; the pipeline never touches the network.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: [] for c in columns})


def preload() -> None:
    """With the gx engine, start importing GX in a background thread, so its seconds of import
    overlap a stage's work (the duckdb engine imports nothing).

    A stage calls this as it starts; :func:`run_suites` later imports GX as usual, waiting on
    Python's import lock if the background import is still running.
    """
    global _preloader
    if engine() != "gx" or "great_expectations" in sys.modules or _preloader is not None:
        return

    def load() -> None:
        try:
            _import_gx()
        except (ImportError, RuntimeError):  # the foreground import raises it again, in context
            log.debug("background import of great_expectations failed", exc_info=True)

    _preloader = threading.Thread(target=load, name="gx-preload", daemon=True)
    _preloader.start()


_preloader: threading.Thread | None = None
