"""The decontaminate stage: filtered documents in, those sharing an n-gram with an eval text out.

prepare  reads every evaluation text (the labeled validation and test splits, then each
         ``eval_sets`` source) and writes the hashed n-gram index (`ngrams.EvalIndex`) once;
scan     per input shard, a batch of documents at a time: fold and hash the words, look every
         n-gram up in the index, verify hits word by word, write the clean documents unchanged
         and each contaminated one to rejects.

A reject's ``reason`` is ``decontaminate.<eval set>`` (e.g. ``decontaminate.labeled.test``), its
``duplicate_of`` the id of the evaluation text it overlaps, its ``value`` the overlapping n-gram
(folded words), and ``detail`` all three with the match kind and the n-gram's word position.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import Dataset
from ..dedup.normalize import Words
from ..observe import report
from ..rejects import reject_row, reject_rows_table
from ..stage import Phase, Stage, StageContext, sum_counts
from .config import DecontaminateConfig
from .evalsets import eval_set_texts, labeled_set_name, labeled_texts, list_units, set_lengths, set_names
from .ngrams import MATCH_KINDS, EvalIndex, Match, search, span_text, text_words

PREFIX = "decontaminate."
LINEAGE = ("id", "text", "source", "source_file", "source_record")
INDEX_DIR = "_index"  # in staging while the stage runs; removed before publishing


class DecontaminateStage(Stage):
    name = "decontaminate"
    inputs = ("filter", "labeled")
    config_model = DecontaminateConfig
    description = "Reject pretraining documents sharing an n-gram with an evaluation text (labeled validation/test, eval_sets)."
    schedule = "data"
    version = "1"
    unique_ids = False  # ids pass through unchanged, as filter's

    def identity(
        self,
        config: DecontaminateConfig,  # type: ignore[override]
        inputs: dict[str, Dataset],
        parent: Dataset | None,
    ) -> dict:
        set_names(config)  # a name clash is a configuration error before any work
        ident = super().identity(config, inputs, parent)
        ident["eval_units"] = list_units(config)
        return ident

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        views = super().views(ctx)
        views["data"] = ctx.input("filter").schema
        return views

    def prepare(self, ctx: StageContext) -> None:
        cfg: DecontaminateConfig = ctx.config
        t0 = time.perf_counter()
        names, lengths = set_names(cfg), set_lengths(cfg)
        texts: list[tuple[int, str, str]] = []
        for split, doc_id, text in labeled_texts(ctx.input("labeled")):
            texts.append((names.index(labeled_set_name(split)), doc_id, text))
        skipped: dict[str, dict[str, int]] = {}
        units = ctx.identity["eval_units"]
        for i, src in enumerate(cfg.eval_sets):
            mine = [u for u in units if u["source"] == i]
            got, skipped[src.label] = eval_set_texts(src, mine, f"decontaminate.eval_sets[{i}]")
            s = names.index(src.label)
            texts += [(s, doc_id, text) for doc_id, text in got]
        index, counts = EvalIndex.build(texts, names, lengths, cfg.min_words, cfg.normalize)
        index.save(ctx.staging_dir / INDEX_DIR)
        ctx.extra["index_dir"] = str(ctx.staging_dir / INDEX_DIR)
        ctx.extra["eval_sets"] = {
            name: {
                "n": lengths[s],
                **counts[s],
                **({"skipped_records": skipped[name]} if skipped.get(name) else {}),
            }
            for s, name in enumerate(names)
        }
        ctx.extra["index_seconds"] = round(time.perf_counter() - t0, 3)
        ctx.extra["index_entries"] = int(index.keys.size)

    def summary_markdown(self, dataset: Dataset) -> str | None:
        from .summary import decontamination_section

        stats = dataset.manifest.get("stats", {})
        return "\n".join(decontamination_section(stats)) if stats.get("eval_sets") else None

    def phases(self) -> list[Phase]:
        return [Phase("scan", plan_scan, scan_shard)]

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        shutil.rmtree(ctx.staging_dir / INDEX_DIR, ignore_errors=True)
        cfg: DecontaminateConfig = ctx.config
        sets = ctx.extra["eval_sets"]
        for name, s in sets.items():
            s["docs_rejected"] = sum(r["rejected"].get(PREFIX + name, 0) for r in results)
            s["docs_overlapping"] = sum(r["overlapping"].get(name, 0) for r in results)
            s["texts_found"] = len({t for r in results for t in r["texts_found"].get(name, [])})  # distinct
        words = sum(r["words"] for r in results)
        scan_seconds = sum(r["seconds"] for r in results)
        scan_cpu = sum(r["cpu_seconds"] for r in results)
        stats = {
            "eval_sets": sets,
            "contaminated": {name: s["docs_rejected"] for name, s in sets.items()},
            "rule": (
                f"a document is rejected when it shares a run of n words (n per eval set; {cfg.n} by default) with "
                f"an eval text; eval texts under n words are matched whole (whole_text), and those under "
                f"{cfg.min_words} words only by a document that is exactly that text (exact_document)"
            ),
            "index_entries": ctx.extra["index_entries"],
            "index_seconds": ctx.extra["index_seconds"],
            "words_scanned": words,
            "scan_seconds": round(scan_seconds, 3),
            "scan_cpu_seconds": round(scan_cpu, 3),
        }
        totals = {
            "docs": sum(r["rows_out"] for r in results),
            "eval_texts": sum(s["texts"] for s in sets.values()),
        }
        return {"counts": sum_counts(results), "stats": stats, "totals": totals}


def plan_scan(ctx: StageContext, _: list[Any]) -> list[int]:
    return list(range(ctx.input("filter").num_shards()))


def scan_shard(ctx: StageContext, shard: int) -> dict[str, Any]:
    """Write one input shard's clean documents and reject the contaminated ones."""
    cfg: DecontaminateConfig = ctx.config
    t0, c0 = time.perf_counter(), time.thread_time()
    index = EvalIndex.load(Path(ctx.extra["index_dir"]))
    source = ctx.input("filter")
    schema = source.schema
    prefix = f"part-{shard:05d}"
    data = ctx.writer("data", schema, prefix, max_rows=cfg.shard_rows)
    rejects = ctx.rejects_writer(prefix)
    rows_in = words_total = 0
    rejected: dict[str, int] = {}
    overlapping: dict[str, int] = {}
    found: dict[str, set[int]] = {}  # eval set -> indices of the eval texts found
    for batch in pq.ParquetFile(source.shard_path(shard)).iter_batches(batch_size=cfg.batch_docs):
        rows_in += batch.num_rows
        words, hashes = text_words(batch.column("text"), cfg.normalize)
        words_total += int(hashes.size)
        matches = search(index, words, hashes)
        keep = np.ones(batch.num_rows, dtype=bool)
        bad = []
        for m in matches:
            keep[m.doc] = False
            bad.append(_reject(index, batch, words, m))
            name = index.sets[index.set_of[index.text[m.entry]]]
            rejected[PREFIX + name] = rejected.get(PREFIX + name, 0) + 1
            for s in m.sets:
                overlapping[index.sets[s]] = overlapping.get(index.sets[s], 0) + 1
            found.setdefault(name, set()).add(int(index.text[m.entry]))
        data.write(batch.filter(pa.array(keep)))
        if bad:
            rejects.write(reject_rows_table(bad))
        report("progress", stage="decontaminate.scan", shard=shard, done=rows_in)
    data.close()
    rejects.close()
    return {
        "rows_in": rows_in,
        "rows_out": rows_in - sum(rejected.values()),
        "rejected": rejected,
        "overlapping": overlapping,
        "texts_found": {k: sorted(v) for k, v in sorted(found.items())},
        "words": words_total,
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.thread_time() - c0, 3),
    }


def _reject(index: EvalIndex, batch: pa.RecordBatch, words: Words, m: Match) -> dict[str, Any]:
    """The reject row of a contaminated document: eval set, eval text id and the shared words."""
    t = int(index.text[m.entry])
    length = int(index.length[m.entry])
    set_name = index.sets[int(index.set_of[t])]
    ngram = span_text(words, m.start, length)
    col = {name: batch.column(name)[m.doc].as_py() for name in LINEAGE if name in batch.schema.names}
    return reject_row(
        PREFIX + set_name,
        doc_id=col.get("id"),
        value=ngram,
        threshold=str(length),
        duplicate_of=index.ids[t],
        detail={
            "eval_set": set_name,
            "eval_id": index.ids[t],
            "ngram": ngram,
            "n": length,
            "match": MATCH_KINDS[int(index.kind[m.entry])],
            "word": int(m.start - words.bounds[m.doc]),
        },
        source=col.get("source"),
        source_file=col.get("source_file"),
        record=col.get("source_record"),
        text=col.get("text"),
    )
