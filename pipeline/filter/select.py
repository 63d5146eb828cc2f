"""The `filter` stage: thresholds over annotate's stored signals, PII replaced in what is kept.

Reads the `annotate` dataset, judges each document with the rules the signals declare (built
from ``FilterConfig`` by `pipeline.filter.signals`), writes kept documents (document columns,
then the signal columns if ``keep_signals``) with PII replaced by placeholders, and every dropped document to rejects with
``reason`` ``filter.<rule>``, the measured ``value`` and the ``threshold``; a new threshold costs
one pass over Parquet columns. The bias and domain-mix audit (before = annotate's rows, after =
kept rows) is written to ``report/`` in the version directory.

C4 cleaning (``c4.remove_lines``, on by default as in C4): after the Gopher and C4 rules, kept
documents lose their offending lines, each listed with its rule in the ``c4_removed_lines``
column (the original text is recoverable from it). A document left with nothing but whitespace
is rejected (``filter.c4.remove_lines``). The FineWeb signals are then recomputed on the cleaned
text (cheap: four line ratios) before the FineWeb rules run, because FineWeb's thresholds were
set on text after C4's cleaning (its pipeline runs C4QualityFilter first), on the text as C4
writes it (`c4.as_written`: lines stripped, citation marks removed); the stored ``fineweb_*``
columns of kept rows hold these values. Every other signal column describes the
text annotate saw. Rejected rows keep the original text.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..dataset import Dataset, shard_schema, text_slices
from ..observe import report as progress
from ..rejects import REJECT_TEXT_LIMIT
from ..schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from . import c4, domain, fineweb, pii, report
from .batch import NOT_SPACE, TextBatch
from .columns import to_arrow
from .config import FilterBase, FilterConfig
from .rules import judge
from .signal import Rule
from .signals import build_rules, rule_sets

REPORT_DIR = "report"
BATCH_BYTES = 4 << 20  # text judged at a time: bounds the rejects' and the cleaning's copies


class FilterStage(Stage):
    name = "filter"
    inputs = ("annotate",)
    config_model = FilterConfig
    description = "Apply thresholds to the stored signals; rejects keep rule, value and threshold."
    schedule = "data"
    version = "2"  # 2: C4 line removal, FineWeb rules on the cleaned text
    unique_ids = False  # ids pass through unchanged; their uniqueness is dedup's promise

    def prepare(self, ctx: StageContext) -> None:
        cfg: FilterBase = ctx.config
        data = ctx.input()
        facts: dict[str, Any] = {}
        for rs in rule_sets():
            section = cfg.section(rs.name)
            if rs.prepare is not None and section.enabled:
                facts.update(rs.prepare(section, data))
        ctx.extra["facts"] = facts
        scores = domain.scores(data)
        if scores is not None and len(scores[~np.isnan(scores)]):
            ctx.extra["band_edges"] = np.quantile(scores[~np.isnan(scores)], [0.2, 0.4, 0.6, 0.8]).tolist()
        rules = build_rules(cfg, facts)
        names = set(data.schema.names)
        ctx.extra["rules"] = [r for r in rules if r.column in names]
        # A rule whose signal annotate did not compute cannot run; the manifest says so.
        ctx.extra["skipped_rules"] = sorted(r.name for r in rules if r.column not in names)
        ctx.extra["judged_on_original"] = sorted(rs.name for rs in rule_sets() if rs.judged_on == "original")

    def summary_markdown(self, dataset: Dataset) -> str | None:
        path = dataset.path / REPORT_DIR / "bias.md"
        return path.read_text() if path.is_file() else None

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        views = super().views(ctx)
        views["data"] = output_schema(ctx.input().schema, ctx.config)
        return views

    def phases(self) -> list[Phase]:
        return [Phase("select", lambda ctx, _: list(range(ctx.input().num_shards())), select_shard)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        cfg: FilterBase = ctx.config
        pii_counts: dict[str, int] = {}
        for r in results:
            for k, v in r["pii_replaced"].items():
                pii_counts[k] = pii_counts.get(k, 0) + v
        removed: dict[str, dict[str, int]] = {"lines": {}, "chars": {}}
        for r in results:
            for unit, by_rule in r["c4_removed"].items():
                add_counts(removed[unit], by_rule)
        stats: dict[str, Any] = {
            "rules": [
                {"reason": r.reason, "column": r.column, "op": r.op, "threshold": r.threshold_text()}
                for r in ctx.extra["rules"]
            ],
            "skipped_rules": ctx.extra["skipped_rules"],
            "pii_replaced": dict(sorted(pii_counts.items())),
            "docs_with_pii_replaced": sum(r["docs_redacted"] for r in results),
        }
        if removes_lines(cfg):
            stats["c4_lines_removed"] = dict(sorted(removed["lines"].items()))
            stats["c4_chars_removed"] = dict(sorted(removed["chars"].items()))
            stats["c4_docs_cleaned"] = sum(r["docs_cleaned"] for r in results)
        if "domain_cutoff" in ctx.extra["facts"]:
            stats["domain_cutoff"] = ctx.extra["facts"]["domain_cutoff"]
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


def add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def removes_lines(cfg: FilterBase) -> bool:
    return cfg.section("c4").enabled and cfg.section("c4").remove_lines


def output_schema(annotated: pa.Schema, cfg: FilterBase) -> pa.Schema:
    names = annotated.names if cfg.keep_signals else DOCUMENT_SCHEMA.names
    fields = [annotated.field(n) for n in names]
    if removes_lines(cfg):
        fields.append(c4.REMOVED_LINES_FIELD)
    return pa.schema(fields)


def select_shard(ctx: StageContext, index: int) -> dict[str, Any]:
    cfg: FilterBase = ctx.config
    rules: list[Rule] = ctx.extra["rules"]
    original = set(ctx.extra["judged_on_original"])
    n_before_cleaning = next(
        (i for i, r in enumerate(rules) if r.name.split(".")[0] not in original), len(rules)
    )
    src = ctx.input().shard_path(index)
    schema = output_schema(shard_schema(src), cfg)
    clean = removes_lines(cfg)
    c4_removed: dict[str, dict[str, int]] = {"lines": {}, "chars": {}}
    docs_cleaned = 0
    prefix = f"part-{index:05d}"
    kept_writer = ctx.writer("data", schema, prefix, max_rows=cfg.shard_rows)
    rejects = ctx.rejects_writer(prefix)
    rows_in = rows_out = docs_redacted = 0
    rejected: dict[str, int] = {}
    replaced: dict[str, int] = {}
    before, after = [], []
    edges = ctx.extra.get("band_edges")
    pieces = (
        p for b in pq.ParquetFile(src).iter_batches(batch_size=8_192) for p in text_slices(b, BATCH_BYTES)
    )
    for batch in pieces:
        table = pa.Table.from_batches([batch])
        rows_in += table.num_rows
        # Rules before the cleaning (Gopher, C4), the cleaning, then the rest on the cleaned text.
        kept, charged = judge(table, rules[:n_before_cleaning])
        for rows, rule in charged:
            rejected[rule.reason] = rejected.get(rule.reason, 0) + len(rows)
            rejects.write(reject_table(table.select([*REJECT_FROM, rule.column]).take(pa.array(rows)), rule))
        out = original = table.filter(pa.array(kept))
        if clean:
            out, emptied, counts = clean_lines(out, cfg.section("c4").terminal_punct_lines_only)
            if emptied.any():
                reason = "filter.c4.remove_lines"
                rejected[reason] = rejected.get(reason, 0) + int(emptied.sum())
                rejects.write(emptied_rejects(original, emptied))
            original = original.filter(pa.array(~emptied))
            docs_cleaned += counts.pop("docs")
            for unit, by_rule in counts.items():
                add_counts(c4_removed[unit], by_rule)
            words = "c4_kept_word_count" + (
                "_punct_lines" if cfg.section("c4").terminal_punct_lines_only else ""
            )
            out = with_fineweb_of_text(out, words)
        kept, charged = judge(out, rules[n_before_cleaning:])
        for rows, rule in charged:
            rejected[rule.reason] = rejected.get(rule.reason, 0) + len(rows)
            values = out.column(rule.column).take(pa.array(rows)).to_pylist()
            rejects.write(reject_table(original.select(REJECT_FROM).take(pa.array(rows)), rule, values))
        out = out.filter(pa.array(kept))
        if cfg.section("pii").enabled:
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
        "c4_removed": c4_removed,
        "docs_cleaned": docs_cleaned,
        "before": report.merge(before),
        "after": report.merge(after),
    }


# The columns of a document its reject row is made of (taking only these, not every signal).
REJECT_FROM = ("id", "source", "source_file", "source_record", "text")


def reject_table(rows: pa.Table, rule: Rule, values: list | None = None) -> pa.Table:
    """Rejects for ``rows`` failing ``rule``; ``values``: the measured values if not ``rows``' own."""
    detail = json.dumps({"column": rule.column, "op": rule.op})
    if values is None:
        values = rows.column(rule.column).to_pylist()
    return reject_rows(rows, rule.reason, values, rule.threshold_text(), detail)


def reject_rows(rows: pa.Table, reason: str, values: list, threshold: str, detail: str) -> pa.Table:
    """Reject rows for documents ``rows``, one measured value each (texts cut as `pipeline.rejects`
    cuts them), built column by column: no document goes through Python objects."""
    n = rows.num_rows

    def same(value: str | None) -> pa.Array:
        return pa.array([value] * n, pa.string())

    columns = {
        "id": rows.column("id"),
        "reason": same(reason),
        "value": pa.array(
            [None if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in values],
            pa.string(),
        ),
        "threshold": same(threshold),
        "duplicate_of": same(None),
        "detail": same(detail),
        "source": rows.column("source"),
        "source_file": rows.column("source_file"),
        "source_record": rows.column("source_record"),
        "text": pc.utf8_slice_codeunits(rows.column("text"), 0, REJECT_TEXT_LIMIT),
    }
    return pa.table(columns).cast(REJECT_SCHEMA)


def clean_lines(table: pa.Table, terminal_punct: bool) -> tuple[pa.Table, np.ndarray, dict[str, Any]]:
    """C4's line removal on ``table``'s texts: (cleaned rows, which rows were emptied, counts).

    Emptied rows (nothing but whitespace left) are not in the cleaned rows, which gain the
    ``c4_removed_lines`` column; ``counts`` holds the ``lines`` and ``chars`` removed from them per
    rule, and ``docs``, how many of them changed.
    """
    col = table.schema.get_field_index("text")
    field = table.schema.field(col)
    cleaned, removed = c4.remove_lines(table.column("text"), terminal_punct)
    # Empty as C4 writes it: a text left with citation marks alone is empty too.
    empty = ~pc.match_substring_regex(c4.as_written(cleaned), NOT_SPACE).to_numpy(zero_copy_only=False)
    table = table.set_column(col, field, cleaned.cast(field.type)).append_column(
        c4.REMOVED_LINES_FIELD, removed
    )
    keep = pa.array(~empty)
    counts: dict[str, Any] = c4.removed_counts(removed.filter(keep))
    counts["docs"] = int(
        np.count_nonzero(pc.list_value_length(removed).to_numpy(zero_copy_only=False)[~empty])
    )
    return table.filter(keep), empty, counts


def emptied_rejects(original: pa.Table, emptied: np.ndarray) -> pa.Table:
    """Rejects for documents C4's cleaning left empty, with their original text."""
    rows = original.filter(pa.array(emptied))
    lines = [len(t.split("\n")) - t.endswith("\n") for t in rows.column("text").to_pylist()]
    return reject_rows(rows, "filter.c4.remove_lines", lines, "no line left", "{}")


def with_fineweb_of_text(table: pa.Table, words_column: str | None = None) -> pa.Table:
    """``table`` with its fineweb_* columns (those it has) recomputed from its text as C4 writes it.

    ``words_column``: a column holding the word count of that text (annotate's count over the
    lines C4 keeps, which spares splitting the text into words again), if the table has it.
    """
    names = [c.name for c in fineweb.COLUMNS if c.name in table.column_names]
    if not names or table.num_rows == 0:
        return table
    words = None
    if words_column is not None and words_column in table.column_names:
        words = pc.fill_null(table.column(words_column), 0).to_numpy().astype(np.int64)
    values = fineweb.signals(TextBatch(c4.as_written(table.column("text").combine_chunks())), words)
    for c in fineweb.COLUMNS:
        if c.name in names:
            i = table.schema.get_field_index(c.name)
            table = table.set_column(i, table.schema.field(i), to_arrow(c, values[c.name]))
    return table


def redact_table(table: pa.Table, cfg: FilterBase) -> tuple[pa.Table, dict[str, int], int]:
    """Replace PII in the texts of rows annotate found any in; (table, counts per kind, docs changed)."""
    kinds = [k for k in cfg.section("pii").kinds if f"pii_{k}_count" in table.column_names]
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
        texts[i], found = pii.redact(texts[i], kinds, cfg.section("pii").placeholders)
        for k, v in found.items():
            counts[k] = counts.get(k, 0) + v
    col = table.schema.get_field_index("text")
    table = table.set_column(col, table.schema.field(col), pa.array(texts, table.schema.field(col).type))
    return table, counts, int(has.sum())
