"""The `filter` stage: thresholds over annotate's stored signals, PII replaced in what is kept.

Reads the `annotate` dataset, judges each document with the rules of :mod:`.rules` (built from
``FilterConfig``), writes kept documents (document columns, then the signal columns if
``keep_signals``) with PII replaced by placeholders, and every dropped document to rejects with
``reason`` ``filter.<rule>``, the measured ``value`` and the ``threshold``. It never recomputes a
signal, so a new threshold costs one pass over Parquet columns. The bias and domain-mix audit
(before = annotate's rows, after = kept rows) is written to ``report/`` in the version directory.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..dataset import Dataset, reject_rows_table
from ..observe import report as progress
from ..schema import DOCUMENT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from . import pii, report
from .config import FilterConfig
from .rules import Rule, build_rules, judge

REPORT_DIR = "report"


class FilterStage(Stage):
    name = "filter"
    inputs = ("annotate",)
    config_model = FilterConfig
    version = "1"
    unique_ids = False  # ids pass through unchanged; their uniqueness is dedup's promise

    def prepare(self, ctx: StageContext) -> None:
        cfg: FilterConfig = ctx.config
        data = ctx.input()
        has_domain = "domain_score" in data.schema.names
        scores = _column(data, "domain_score") if has_domain else None
        if scores is not None and cfg.domain.enabled and cfg.domain.keep_top_fraction is not None:
            ctx.extra["domain_cutoff"] = top_fraction_cutoff(scores, cfg.domain.keep_top_fraction)
        if scores is not None and len(scores[~np.isnan(scores)]):
            ctx.extra["band_edges"] = np.quantile(scores[~np.isnan(scores)], [0.2, 0.4, 0.6, 0.8]).tolist()
        rules = build_rules(cfg, ctx.extra.get("domain_cutoff"))
        names = set(data.schema.names)
        ctx.extra["rules"] = [r for r in rules if r.column in names]
        # A rule whose signal annotate did not compute cannot run; the manifest says so.
        ctx.extra["skipped_rules"] = sorted(r.name for r in rules if r.column not in names)

    def summary_markdown(self, dataset: Dataset) -> str | None:
        path = dataset.path / REPORT_DIR / "bias.md"
        return path.read_text() if path.is_file() else None

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        views = super().views(ctx)
        views["data"] = output_schema(ctx.input().schema, ctx.config)
        return views

    def phases(self) -> list[Phase]:
        return [Phase("select", lambda ctx, _: list(range(len(ctx.input().shard_paths()))), select_shard)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        cfg: FilterConfig = ctx.config
        pii_counts: dict[str, int] = {}
        for r in results:
            for k, v in r["pii_replaced"].items():
                pii_counts[k] = pii_counts.get(k, 0) + v
        stats: dict[str, Any] = {
            "rules": [
                {"reason": r.reason, "column": r.column, "op": r.op, "threshold": r.threshold_text()}
                for r in ctx.extra["rules"]
            ],
            "skipped_rules": ctx.extra["skipped_rules"],
            "pii_replaced": dict(sorted(pii_counts.items())),
            "docs_with_pii_replaced": sum(r["docs_redacted"] for r in results),
        }
        if "domain_cutoff" in ctx.extra:
            stats["domain_cutoff"] = ctx.extra["domain_cutoff"]
        if cfg.report:
            audit = report.summarize(
                report.merge([r["before"] for r in results]), report.merge([r["after"] for r in results])
            )
            stats["report_files"] = [
                f"{REPORT_DIR}/{n}" for n in report.write_report(ctx.staging_dir / REPORT_DIR, audit)
            ]
            stats["bias"] = report.stats_summary(audit)
        totals = {"docs": sum(r["rows_out"] for r in results)}
        return {"counts": sum_counts(results), "stats": stats, "totals": totals}


def output_schema(annotated: pa.Schema, cfg: FilterConfig) -> pa.Schema:
    if cfg.keep_signals:
        return annotated
    return pa.schema([annotated.field(n) for n in DOCUMENT_SCHEMA.names])


def top_fraction_cutoff(scores: np.ndarray, fraction: float) -> float:
    """The lowest score among the best ``fraction`` of documents (ties are all kept)."""
    valid = np.sort(scores[~np.isnan(scores)])[::-1]
    if len(valid) == 0 or fraction >= 1:
        return float("-inf")
    k = max(1, int(np.ceil(fraction * len(valid))))
    return float(valid[k - 1])


def _column(data: Dataset, name: str) -> np.ndarray:
    parts = [
        pq.read_table(p, columns=[name]).column(name).to_numpy(zero_copy_only=False)
        for p in data.shard_paths()
    ]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def select_shard(ctx: StageContext, index: int) -> dict[str, Any]:
    cfg: FilterConfig = ctx.config
    rules: list[Rule] = ctx.extra["rules"]
    src = ctx.input().shard_paths()[index]
    schema = output_schema(pq.read_schema(src), cfg)
    prefix = f"part-{index:05d}"
    kept_writer = ctx.writer("data", schema, prefix, max_rows=cfg.shard_rows)
    rejects = ctx.rejects_writer(prefix)
    rows_in = rows_out = docs_redacted = 0
    rejected: dict[str, int] = {}
    replaced: dict[str, int] = {}
    before, after = [], []
    edges = ctx.extra.get("band_edges")
    for batch in pq.ParquetFile(src).iter_batches(batch_size=8_192):
        table = pa.Table.from_batches([batch])
        rows_in += table.num_rows
        kept, charged = judge(table, rules)
        for rows, rule in charged:
            rejected[rule.reason] = rejected.get(rule.reason, 0) + len(rows)
            rejects.write(reject_table(table.take(pa.array(rows)), rule))
        out = table.filter(pa.array(kept))
        if cfg.pii.enabled:
            out, counts, n_docs = redact_table(out, cfg)
            docs_redacted += n_docs
            for k, v in counts.items():
                replaced[k] = replaced.get(k, 0) + v
        kept_writer.write(out.select(schema.names))
        rows_out += out.num_rows
        if cfg.report:
            before.append(report.tally(table, edges))
            after.append(report.tally(out, edges))
        progress("progress", stage="filter", unit=index, done=rows_in)
    kept_writer.close()
    rejects.close()
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rejected": rejected,
        "pii_replaced": replaced,
        "docs_redacted": docs_redacted,
        "before": report.merge(before),
        "after": report.merge(after),
    }


def reject_table(rows: pa.Table, rule: Rule) -> pa.Table:
    values = rows.column(rule.column).to_pylist()
    out = []
    for i, r in enumerate(rows.select(DOCUMENT_SCHEMA.names).to_pylist()):
        v = values[i]
        out.append(
            {
                "id": r["id"],
                "reason": rule.reason,
                "value": None if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)),
                "threshold": rule.threshold_text(),
                "duplicate_of": None,
                "detail": json.dumps({"column": rule.column, "op": rule.op}),
                "source": r["source"],
                "source_file": r["source_file"],
                "source_record": r["source_record"],
                "text": r["text"],
            }
        )
    return reject_rows_table(out)


def redact_table(table: pa.Table, cfg: FilterConfig) -> tuple[pa.Table, dict[str, int], int]:
    """Replace PII in the texts of rows annotate found any in; (table, counts per kind, docs changed)."""
    kinds = [k for k in cfg.pii.kinds if f"pii_{k}_count" in table.column_names]
    if not kinds or table.num_rows == 0:
        return table, {}, 0
    has = np.zeros(table.num_rows, dtype=bool)
    for k in kinds:
        has |= pc.fill_null(pc.greater(table.column(f"pii_{k}_count"), 0), False).to_numpy(
            zero_copy_only=False
        )
    if not has.any():
        return table, {}, 0
    texts = table.column("text").to_pylist()
    counts: dict[str, int] = {}
    for i in np.flatnonzero(has):
        texts[i], found = pii.redact(texts[i], kinds, cfg.pii.placeholders)
        for k, v in found.items():
            counts[k] = counts.get(k, 0) + v
    col = table.schema.get_field_index("text")
    table = table.set_column(col, table.schema.field(col), pa.array(texts, table.schema.field(col).type))
    return table, counts, int(has.sum())
