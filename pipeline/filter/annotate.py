"""The `annotate` stage: every quality, language, toxicity, PII, bias and domain signal, once.

Output rows are the input documents, unchanged, followed by one column per signal (see
:func:`signal_columns`); nothing is dropped. Thresholds are applied later by the `filter` stage,
so changing one never re-annotates, and ``tokenmill sql`` over this dataset previews what a
threshold would remove.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import Dataset, text_slices
from ..observe import report
from ..schema import DOCUMENT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from . import signals as registry
from .batch import TextBatch
from .columns import Column, to_arrow
from .config import AnnotateBase, AnnotateConfig
from .signal import Signal

STATS_TOP = 25  # a stats table of counts keeps its largest entries
# Text per vectorized batch: the signals' temporaries take ~35 bytes per byte of text, so a
# batch of long documents is cut here rather than by `batch_rows` alone.
BATCH_BYTES = 1 << 20
# The batches of a shard share the word splitter's cache of chunks split in Python (the same
# Markdown links, calls and URLs recur from batch to batch), emptied after this many batches so
# that it holds the chunks of at most that much text.
CHUNK_CACHE_BATCHES = 8


def enabled_signals(cfg: AnnotateBase) -> list[Signal]:
    return [s for s in registry.SIGNALS if s.is_enabled(cfg)]


def signal_columns(cfg: AnnotateBase) -> list[Column]:
    """The signal columns annotate writes with this config, in order."""
    return [c for s in enabled_signals(cfg) for c in s.columns]


def output_schema(cfg: AnnotateBase) -> pa.Schema:
    return pa.schema(list(DOCUMENT_SCHEMA) + [c.field() for c in signal_columns(cfg)])


def compute_signals(
    texts: pa.Array,
    cfg: AnnotateBase,
    state: dict[str, Any] | None = None,
    chunk_cache: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Every enabled signal for a batch of texts, as column name -> values.

    ``state`` holds what a signal's ``prepare`` fitted on the input (e.g. domain weights), by name;
    ``chunk_cache`` (chunk -> tokens) may be shared by the batches of a shard (see TextBatch).
    """
    b = TextBatch(texts, chunk_cache)
    out: dict[str, Any] = {}
    for s in enabled_signals(cfg):
        out.update(s.compute(b, cfg, (state or {}).get(s.name)))
    return out


def annotate_table(
    table: pa.Table,
    cfg: AnnotateBase,
    state: dict[str, Any] | None = None,
    chunk_cache: dict[str, list[str]] | None = None,
) -> pa.Table:
    """The documents of ``table`` with their signal columns appended."""
    values = compute_signals(table.column("text"), cfg, state, chunk_cache)
    docs = table.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    arrays = list(docs.columns) + [to_arrow(c, values[c.name]) for c in signal_columns(cfg)]
    return pa.Table.from_arrays(arrays, schema=output_schema(cfg))


class AnnotateStage(Stage):
    name = "annotate"
    inputs = ("dedup",)
    config_model = AnnotateConfig
    description = "Compute every quality, language, toxicity, PII, bias and domain signal once, as columns."
    schedule = "data"
    version = "3:" + registry.version()  # 3: signals declared in their modules
    unique_ids = False  # ids pass through unchanged; their uniqueness is dedup's promise

    def identity(self, config: AnnotateBase, inputs: dict[str, Dataset], parent: Dataset | None) -> dict:  # type: ignore[override]
        ident = super().identity(config, inputs, parent)
        # Word lists, models and target samples change signal values: they are part of the identity.
        for s in enabled_signals(config):
            if s.identity is not None:
                ident.update(s.identity(config))
        return ident

    def prepare(self, ctx: StageContext) -> None:
        cfg: AnnotateBase = ctx.config
        ctx.extra["state"] = {
            s.name: s.prepare(cfg, ctx.input()) for s in enabled_signals(cfg) if s.prepare is not None
        }
        # What a signal keeps of its prepared state (a trained model) goes into the version.
        ctx.extra["signal_stats"] = {
            s.name: s.report(ctx.extra["state"].get(s.name), ctx.staging_dir / s.name)
            for s in enabled_signals(cfg)
            if s.report is not None
        }

    def summary_markdown(self, dataset: Dataset) -> str | None:
        q = dataset.manifest.get("stats", {}).get("quality")
        if not q:
            return None
        rows = [
            ("model", q.get("kind")),
            (
                "positives used / available",
                f"{q.get('positive', {}).get('used')} / {q.get('positive', {}).get('available')}",
            ),
            ("negatives used", q.get("negative", {}).get("used")),
            ("held-out documents", q.get("heldout_docs")),
            ("held-out accuracy", q.get("heldout_accuracy")),
            ("held-out AUC", q.get("heldout_auc")),
            ("scoring docs/s", q.get("docs_per_s")),
        ]
        lines = ["## Quality classifier", "", "| | |", "| --- | --- |"]
        return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows if v is not None]) + "\n"

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        views = super().views(ctx)
        views["data"] = output_schema(ctx.config)
        return views

    def phases(self) -> list[Phase]:
        return [Phase("annotate", lambda ctx, _: list(range(ctx.input().num_shards())), annotate_shard)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        stats: dict[str, Any] = dict(ctx.extra.get("signal_stats", {}))
        for s in enabled_signals(ctx.config):
            if s.stats_key is None:
                continue
            total: dict[str, int] = {}
            for r in results:
                for k, v in r["counts"].get(s.stats_key, {}).items():
                    total[k] = total.get(k, 0) + v
            stats[s.stats_key] = dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:STATS_TOP])
        stats["signals"] = [c.name for c in signal_columns(ctx.config)]
        totals = {"docs": sum(r["rows_out"] for r in results), "tokens": sum(r["tokens"] for r in results)}
        return {"counts": sum_counts(results), "stats": stats, "totals": totals}


def annotate_shard(ctx: StageContext, index: int) -> dict[str, Any]:
    cfg: AnnotateBase = ctx.config
    src = ctx.input().shard_path(index)
    writer = ctx.writer("data", output_schema(cfg), prefix=f"part-{index:05d}")
    counters = [s for s in enabled_signals(cfg) if s.count is not None and s.stats_key]
    rows = tokens = 0
    counts: dict[str, dict[str, int]] = {}
    f = pq.ParquetFile(src)
    chunk_cache: dict[str, list[str]] = {}
    done = 0
    for batch in f.iter_batches(batch_size=cfg.batch_rows, columns=DOCUMENT_SCHEMA.names):
        for piece in text_slices(batch, BATCH_BYTES):
            if done and done % CHUNK_CACHE_BATCHES == 0:
                chunk_cache.clear()
            done += 1
            table = annotate_table(pa.Table.from_batches([piece]), cfg, ctx.extra.get("state"), chunk_cache)
            writer.write(table)
            rows += table.num_rows
            tokens += int(np.sum(table.column("token_count").to_numpy()))
            for s in counters:
                assert s.count is not None and s.stats_key is not None
                bucket = counts.setdefault(s.stats_key, {})
                for k, v in s.count(table).items():
                    bucket[k] = bucket.get(k, 0) + v
        report("progress", stage="annotate", unit=index, done=rows, total=f.metadata.num_rows)
    writer.close()
    return {"rows_in": rows, "rows_out": rows, "rejected": {}, "tokens": tokens, "counts": counts}
