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

from ..dataset import Dataset
from ..hashing import sha256_bytes, sha256_file
from ..observe import report
from ..schema import DOCUMENT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from . import bias, c4, domain, fineweb, gopher, langid, pii, toxicity
from .batch import TextBatch
from .columns import Column, i32, to_arrow
from .config import AnnotateConfig
from .lexicon import lexicon_files

BASE_COLUMNS = [i32("token_count", "tokens (words, numbers, symbols) as split by pipeline.filter.text")]


def signal_columns(cfg: AnnotateConfig) -> list[Column]:
    """The signal columns annotate writes with this config, in order."""
    cols = list(BASE_COLUMNS)
    if cfg.gopher:
        cols += gopher.QUALITY_COLUMNS + gopher.REPETITION_COLUMNS
    if cfg.c4:
        cols += c4.COLUMNS
    if cfg.fineweb:
        cols += fineweb.COLUMNS
    if cfg.language:
        cols += langid.COLUMNS
    if cfg.toxicity:
        cols += toxicity.COLUMNS
    if cfg.pii:
        cols += pii.COLUMNS
    if cfg.bias:
        cols += bias.COLUMNS
    if cfg.domain_target:
        cols += domain.COLUMNS
    return cols


def output_schema(cfg: AnnotateConfig) -> pa.Schema:
    return pa.schema(list(DOCUMENT_SCHEMA) + [c.field() for c in signal_columns(cfg)])


def compute_signals(
    texts: pa.Array, cfg: AnnotateConfig, domain_weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Every enabled signal for a batch of texts, as column name -> values."""
    b = TextBatch(texts)
    out: dict[str, Any] = {"token_count": b.words.count}
    if cfg.gopher:
        out.update(gopher.quality(b))
        out.update(gopher.repetition(b))
    if cfg.c4:
        out.update(c4.signals(b))
    if cfg.fineweb:
        out.update(fineweb.signals(b))
    if cfg.language:
        out.update(langid.signals(b, cfg.langid_max_chars, cfg.langid_languages, cfg.langid_backend))
    if cfg.toxicity:
        out.update(toxicity.signals(b))
    if cfg.pii:
        out.update(pii.signals(b))
    if cfg.bias:
        out.update(bias.signals(b, cfg.bias_window))
    if cfg.domain_target:
        assert domain_weights is not None
        out.update(domain.signals(b, domain_weights))
    return out


def annotate_table(
    table: pa.Table, cfg: AnnotateConfig, domain_weights: np.ndarray | None = None
) -> pa.Table:
    """The documents of ``table`` with their signal columns appended."""
    values = compute_signals(table.column("text"), cfg, domain_weights)
    docs = table.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    arrays = list(docs.columns) + [to_arrow(c, values[c.name]) for c in signal_columns(cfg)]
    return pa.Table.from_arrays(arrays, schema=output_schema(cfg))


class AnnotateStage(Stage):
    name = "annotate"
    inputs = ("dedup",)
    config_model = AnnotateConfig
    description = "Compute every quality, language, toxicity, PII, bias and domain signal once, as columns."
    schedule = "data"
    version = "2"  # 2: language-ID backends, c4_lines_ending_punct_frac over non-blank lines only
    unique_ids = False  # ids pass through unchanged; their uniqueness is dedup's promise

    def identity(self, config: AnnotateConfig, inputs: dict[str, Dataset], parent: Dataset | None) -> dict:  # type: ignore[override]
        ident = super().identity(config, inputs, parent)
        # Word lists and the target sample change signal values, so they are part of the identity.
        ident["lexicons"] = {p.name: sha256_file(p) for p in lexicon_files()}
        if config.language:  # the model that actually runs (a missing package falls back)
            ident["langid_backend"] = langid.resolve_backend(config.langid_backend)
        if config.domain_target:
            ident["domain_target"] = _target_digest(config.domain_target)
        return ident

    def prepare(self, ctx: StageContext) -> None:
        cfg: AnnotateConfig = ctx.config
        if cfg.domain_target:
            ctx.extra["domain_weights"] = fit_domain(cfg, ctx.input())

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        views = super().views(ctx)
        views["data"] = output_schema(ctx.config)
        return views

    def phases(self) -> list[Phase]:
        return [Phase("annotate", lambda ctx, _: list(range(ctx.input().num_shards())), annotate_shard)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        langs: dict[str, int] = {}
        pii_docs: dict[str, int] = {}
        for r in results:
            for k, v in r["langs"].items():
                langs[k] = langs.get(k, 0) + v
            for k, v in r["pii_docs"].items():
                pii_docs[k] = pii_docs.get(k, 0) + v
        top = dict(sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))[:25])
        stats = {
            "languages": top,
            "docs_with_pii": dict(sorted(pii_docs.items())),
            "signals": [c.name for c in signal_columns(ctx.config)],
        }
        totals = {"docs": sum(r["rows_out"] for r in results), "tokens": sum(r["tokens"] for r in results)}
        return {"counts": sum_counts(results), "stats": stats, "totals": totals}


def annotate_shard(ctx: StageContext, index: int) -> dict[str, Any]:
    cfg: AnnotateConfig = ctx.config
    src = ctx.input().shard_path(index)
    writer = ctx.writer("data", output_schema(cfg), prefix=f"part-{index:05d}")
    rows = tokens = 0
    langs: dict[str, int] = {}
    pii_docs: dict[str, int] = {}
    f = pq.ParquetFile(src)
    for batch in f.iter_batches(batch_size=cfg.batch_rows, columns=DOCUMENT_SCHEMA.names):
        table = annotate_table(pa.Table.from_batches([batch]), cfg, ctx.extra.get("domain_weights"))
        writer.write(table)
        rows += table.num_rows
        tokens += int(np.sum(table.column("token_count").to_numpy()))
        if cfg.language:
            for k, v in zip(
                *np.unique(
                    table.column("lang").to_numpy(zero_copy_only=False).astype(str), return_counts=True
                )
            ):
                langs[str(k)] = langs.get(str(k), 0) + int(v)
        if cfg.pii:
            for kind in pii.KINDS:
                n = int(np.count_nonzero(table.column(f"pii_{kind}_count").to_numpy()))
                pii_docs[kind] = pii_docs.get(kind, 0) + n
        report("progress", stage="annotate", unit=index, done=rows, total=f.metadata.num_rows)
    writer.close()
    return {
        "rows_in": rows,
        "rows_out": rows,
        "rejected": {},
        "tokens": tokens,
        "langs": langs,
        "pii_docs": pii_docs,
    }


def _target_digest(spec: str) -> str:
    from pathlib import Path

    p = Path(spec)
    if p.is_dir():
        try:
            return Dataset(p).fingerprint
        except FileNotFoundError:
            return sha256_bytes("\n".join(sha256_file(f) for f in sorted(p.glob("*.parquet"))).encode())
    if p.is_file():
        return sha256_file(p)
    from ..errors import ConfigError

    raise ConfigError(f"annotate.domain_target {spec!r} does not exist")


def fit_domain(cfg: AnnotateConfig, corpus: Dataset) -> np.ndarray:
    """Log importance weights per hashed n-gram bucket: target sample vs the input corpus."""
    target = np.zeros(cfg.domain_buckets)
    texts = domain.read_texts(cfg.domain_target or "")
    for start in range(0, len(texts), cfg.batch_rows):
        target += domain.counts(TextBatch(texts[start : start + cfg.batch_rows]), cfg.domain_buckets)
    general = np.zeros(cfg.domain_buckets)
    paths = corpus.shard_paths()
    per_shard = max(1, cfg.domain_background_docs // max(1, len(paths)))
    for p in paths:  # the first rows of every shard: a deterministic, spread-out sample
        seen = 0
        for batch in pq.ParquetFile(p).iter_batches(batch_size=cfg.batch_rows, columns=["text"]):
            batch = batch.slice(0, per_shard - seen)
            general += domain.counts(TextBatch(batch.column(0)), cfg.domain_buckets)
            seen += batch.num_rows
            if seen >= per_shard:
                break
    return domain.log_weights(target, general)
