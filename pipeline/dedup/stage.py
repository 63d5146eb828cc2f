"""The dedup stage: exact, near-duplicate (MinHash LSH) and repeated-span removal.

Phases (each unit is one input shard unless said otherwise):

1. ``signatures``  fold each text, hash it (exact key), MinHash it, hash its LSH bands; write
                   the rows to ``work/sigs`` (span hashes to ``work/lines``, and with exact
                   verification the shingle hashes to ``work/shingles``).
2. ``exact``       per hash partition: DuckDB groups the exact keys of this run and of every
                   document earlier versions kept; all but the earliest of a group are removed.
3. ``buckets``     per hash partition: DuckDB groups band hashes out of core; each bucket
                   member is paired with the bucket's earliest document.
4. ``verify``      per shard: drop candidate pairs below the threshold (estimated or exact
                   Jaccard, as configured; exact reads back only the pairs' shingles).
5. ``cluster``     one unit: union-find over the verified pairs; the earliest document of a
                   cluster is kept. Then documents whose id repeats a kept one's, and (if on)
                   the spans that recur in many kept documents.
6. ``apply``       per shard: write kept documents (spans removed), rejects with the kept
                   document's id, and the ``index`` view that later versions dedup against;
                   pick up the snippets of the largest clusters' members on the way.

Incremental: with a parent version, every query also sees the parent chain's index views, whose
documents sort before this run's, so nothing an earlier version accepted is admitted again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import DATA_VIEW, REJECTS_VIEW, text_slices
from ..observe import report
from ..rejects import reject_rows_table
from ..schema import DOCUMENT_SCHEMA, REJECT_SCHEMA
from ..stage import Phase, Stage, StageContext, sum_counts
from . import spans as span_rules
from .clusters import UnionFind, size_histogram
from .config import DedupConfig
from .lsh import bucket_pairs_sql
from .minhash import (
    EMPTY,
    MinHasher,
    band_hashes,
    distinct_sorted,
    document_keys,
    estimate_jaccard,
    has_signature,
    resolve_backend,
    sorted_jaccard,
    word_hashes,
)
from .normalize import fold_words
from .report import build_stats, summary_markdown
from .workspace import (
    INDEX_VIEW,
    LOCAL_MASK,
    Workspace,
    band_column,
    close_databases,
    make_ord,
    open_database_ahead,
    signature_schema,
    spill_directory,
)

RULES = ("exact", "near_duplicate", "duplicate_id", "empty_after_spans")
BATCH_ROWS = 1_024
BATCH_BYTES = 2 << 20  # text per vectorized batch: numpy temporaries take ~50 bytes per text byte


class DedupStage(Stage):
    name = "dedup"
    inputs = ("ingest",)
    config_model = DedupConfig
    description = "Remove exact and near duplicates (MinHash LSH) against everything accepted before."
    schedule = "data"
    version = "2"  # 2: words hashed from 8-byte chunks, exact keys from word hashes

    def identity(self, config: DedupConfig, inputs, parent) -> dict[str, Any]:  # type: ignore[override]
        # Signatures of different backends are not comparable: the resolved backend is hashed,
        # so a version is only ever searched against parents that used the same one.
        return {
            **super().identity(config, inputs, parent),
            "minhash": resolve_backend(config.minhash_backend),
        }

    def summary_markdown(self, dataset) -> str | None:
        return summary_markdown(dataset.manifest.get("stats", {}))

    def prepare(self, ctx: StageContext) -> None:
        cfg: DedupConfig = ctx.config
        open_database_ahead(spill_directory(ctx.staging_dir), cfg.duckdb_memory_limit, cfg.duckdb_threads)

    def phases(self) -> list[Phase]:
        return [
            Phase("signatures", _plan_shards, signature_unit),
            Phase("exact", _plan_exact, exact_unit),
            Phase("buckets", _plan_buckets, bucket_unit),
            Phase("verify", _plan_verify, verify_unit),
            Phase("cluster", _plan_cluster, cluster_unit),
            Phase("apply", _plan_apply, apply_unit),
        ]

    def views(self, ctx: StageContext) -> dict[str, pa.Schema]:
        bands, _ = ctx.config.band_shape()
        return {
            DATA_VIEW: DOCUMENT_SCHEMA,
            REJECTS_VIEW: REJECT_SCHEMA,
            INDEX_VIEW: signature_schema(bands, ctx.config.num_perm),
        }

    def finish(self, ctx: StageContext, results: list[dict[str, Any]]) -> dict[str, Any]:
        counts = sum_counts(results)
        snippets = {o: s for r in results for o, s in r["snippets"]}
        for c in ctx.extra.get("cluster", {}).get("near", {}).get("largest_clusters", []):
            c["members"] = [
                {"id": m["id"], "snippet": m.get("snippet", snippets.get(m["ord"]))} for m in c["members"]
            ]
        ws = Workspace(ctx)
        stats = build_stats(ctx.config, counts, results, ctx.extra, ws.gen)
        close_databases(ws.duckdb_tmp)
        shutil.rmtree(ctx.staging_dir / "work", ignore_errors=True)
        totals = {"docs": counts["rows_out"], "chars": sum(r["chars"] for r in results)}
        return {"counts": counts, "stats": stats, "totals": totals}


# -- planning: units of each phase; the previous phase's small results are kept for the report --
def _shards(ctx: StageContext) -> list[int]:
    return list(range(ctx.input().num_shards()))


def _plan_shards(ctx: StageContext, _: list) -> list[int]:
    return _shards(ctx)


def _plan_exact(ctx: StageContext, results: list) -> list[int]:
    ctx.extra["signatures"] = {"no_shingles": sum(r["no_shingles"] for r in results)}
    return list(range(ctx.config.partitions)) if ctx.config.exact else []


def _plan_buckets(ctx: StageContext, results: list) -> list[int]:
    ctx.extra["exact"] = results
    return list(range(ctx.config.partitions)) if ctx.config.near else []


def _plan_verify(ctx: StageContext, results: list) -> list[int]:
    ctx.extra["buckets"] = {"pairs": sum(r["pairs"] for r in results)}
    return _shards(ctx) if ctx.config.near else []


def _plan_cluster(ctx: StageContext, results: list) -> list[int]:
    ctx.extra["verify"] = {k: sum(r[k] for r in results) for k in ("candidates", "verified")}
    return [0]


def _plan_apply(ctx: StageContext, results: list) -> list[int]:
    ctx.extra["cluster"] = results[0]
    ctx.extra["snippets_wanted"] = sorted(
        m["ord"] for c in results[0]["near"]["largest_clusters"] for m in c["members"] if "snippet" not in m
    )
    return _shards(ctx)


def snippet(text: str) -> str:
    """The start of a text, whitespace collapsed: what reports show of a document."""
    return " ".join(text.split())[:160]


# -- 1. signatures ------------------------------------------------------------------------------
def signature_unit(ctx: StageContext, shard: int) -> dict[str, Any]:
    cfg: DedupConfig = ctx.config
    ws = Workspace(ctx)
    bands, rows = cfg.band_shape()
    schema = signature_schema(bands, cfg.num_perm)
    backend = ctx.identity.get("minhash") or resolve_backend(cfg.minhash_backend)
    hasher = MinHasher(cfg.num_perm, cfg.ngram, cfg.shingle, cfg.seed, backend)
    source = pq.ParquetFile(ws.input.shard_path(shard))
    row0 = no_shingles = 0
    lines: list[pa.Table] = []
    keep_shingles = cfg.near and cfg.verify == "exact"  # what exact verification reads back
    shingle_counts: list[np.ndarray] = []
    # Random hashes do not dictionary-encode: trying costs more than the rest of the write.
    with (
        pq.ParquetWriter(ws.sig_path(shard), schema, compression="none", use_dictionary=False) as out,
        ws.shingle_path(shard).open("wb") if keep_shingles else contextlib.nullcontext() as shingle_file,
    ):
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=["id", "text"]):
            for piece in text_slices(batch, BATCH_BYTES):
                words = fold_words(piece.column("text"), cfg.normalize)
                n = len(words)
                ords = make_ord(ws.gen, shard, np.arange(row0, row0 + n, dtype=np.int64))
                word_hash = word_hashes(words)
                h1, h2 = document_keys(word_hash, words.bounds)
                if cfg.near:
                    sh = hasher.shingles(words, word_hash)
                    sig = hasher.signatures(sh)
                    if shingle_file is not None:  # keep_shingles
                        sh.hashes.tofile(shingle_file)
                        shingle_counts.append(np.bincount(sh.doc, minlength=n))
                else:
                    sig = np.full((n, cfg.num_perm), EMPTY, dtype=np.uint32)
                ok = has_signature(sig)
                no_shingles += int((~ok).sum())
                bh = band_hashes(sig, bands, rows)
                columns = {"ord": ords, "id": piece.column("id"), "h1": h1, "h2": h2}
                for b in range(bands):
                    columns[band_column(b)] = pa.array(bh[:, b], mask=~ok)
                columns["signature"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), cfg.num_perm)
                out.write_table(pa.table(columns, schema=schema))
                if cfg.spans.enabled:
                    parts = span_rules.split(piece.column("text"), cfg.spans)
                    hashes = span_rules.span_hashes(parts, cfg.normalize, cfg.spans)
                    lines.append(span_rules.doc_span_pairs(parts, hashes, ords))
                row0 += n
                report("progress", stage="dedup.signatures", shard=shard, done=row0)
    if keep_shingles:
        counts = np.concatenate([np.zeros(1, np.int64), *shingle_counts])
        np.save(ws.shingle_offsets_path(shard), np.cumsum(counts))
    if cfg.spans.enabled:
        empty = pa.table({"ord": pa.array([], pa.int64()), "h": pa.array([], pa.uint64())})
        pq.write_table(pa.concat_tables([empty, *lines]), ws.lines_path(shard), compression="none")
    return {"shard": shard, "rows": row0, "no_shingles": no_shingles}


# -- 2. exact -----------------------------------------------------------------------------------
def exact_unit(ctx: StageContext, part: int) -> dict[str, Any]:
    ws = Workspace(ctx)
    con = ws.connect()
    parts = ctx.config.partitions
    con.execute(
        f"""CREATE TEMP TABLE groups AS
        SELECT h1, h2, min(ord) AS keeper, max(ord) AS last, count(*) AS n FROM allsigs
        WHERE h1 % {parts} = {part} GROUP BY h1, h2 HAVING count(*) > 1"""
    )
    out = ws.path("exact", f"exact-{part:03d}.parquet")
    con.execute(
        f"""COPY (SELECT c.ord, g.keeper FROM cur c JOIN groups g USING (h1, h2)
        WHERE c.ord <> g.keeper ORDER BY c.ord) TO '{out}' (FORMAT parquet)"""
    )
    sizes = con.execute(f"SELECT n FROM groups WHERE last >= {ws.new_base}").fetchnumpy()["n"]
    return {"groups": int(sizes.size), "histogram": size_histogram(np.asarray(sizes))}


# -- 3. buckets ---------------------------------------------------------------------------------
def bucket_unit(ctx: StageContext, part: int) -> dict[str, Any]:
    ws = Workspace(ctx)
    con = ws.connect()
    ws.view(con, "exact", "exact", "NULL::BIGINT AS ord, NULL::BIGINT AS keeper")
    out = ws.path("pairs", f"pairs-{part:03d}.parquet")
    bands, _ = ctx.config.band_shape()
    row = con.execute(bucket_pairs_sql(bands, part, ctx.config.partitions, ws.new_base, str(out))).fetchone()
    assert row is not None  # COPY returns its row count
    return {"pairs": int(row[0])}


# -- 4. verify ----------------------------------------------------------------------------------
def verify_unit(ctx: StageContext, shard: int) -> dict[str, Any]:
    cfg: DedupConfig = ctx.config
    ws = Workspace(ctx)
    con = ws.connect()
    ws.view(con, "pairs", "pairs", "NULL::BIGINT AS ord, NULL::BIGINT AS rep")
    lo, hi = make_ord(ws.gen, shard, 0), make_ord(ws.gen, shard + 1, 0)
    got = con.execute(
        f"SELECT DISTINCT ord, rep FROM pairs WHERE ord >= {lo} AND ord < {hi} ORDER BY ord, rep"
    ).fetchnumpy()
    a, r = np.asarray(got["ord"], dtype=np.int64), np.asarray(got["rep"], dtype=np.int64)
    if a.size == 0:
        return {"candidates": 0, "verified": 0}
    sigs = ws.signatures(np.concatenate([a, r]))  # one read of each signature file
    est = estimate_jaccard(sigs[: a.size], sigs[a.size :])
    exact = np.full(a.size, np.nan)
    if cfg.verify == "exact":
        exact = _exact_jaccard(ws, cfg, a, r)
        keep = exact >= cfg.threshold
    elif cfg.verify == "signature":
        keep = est >= cfg.threshold
    else:
        keep = np.ones(a.size, dtype=bool)
    table = pa.table(
        {
            "ord": a[keep],
            "rep": r[keep],
            "est": est[keep].astype(np.float32),
            "jaccard": pa.array(exact[keep].astype(np.float32), from_pandas=True),
        }
    )
    pq.write_table(table, ws.path("verified", f"verified-{shard:05d}.parquet"), compression="none")
    return {"candidates": int(a.size), "verified": int(keep.sum())}


def _exact_jaccard(ws: Workspace, cfg: DedupConfig, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Shingle-set Jaccard of each pair, in groups of pairs."""
    hasher = MinHasher(cfg.num_perm, cfg.ngram, cfg.shingle, cfg.seed)
    out = np.zeros(a.size)
    order = np.argsort(r, kind="stable")  # pairs sharing a representative read it once
    for s in range(0, a.size, BATCH_ROWS):
        idx = order[s : s + BATCH_ROWS]
        docs = np.unique(np.concatenate([a[idx], r[idx]]))
        sets = {
            int(o): distinct_sorted(h) for o, h in zip(docs, _shingles(ws, cfg, hasher, docs), strict=True)
        }
        for i in idx:
            out[i] = sorted_jaccard(sets[int(a[i])], sets[int(r[i])])
    return out


def _shingles(ws: Workspace, cfg: DedupConfig, hasher: MinHasher, docs: np.ndarray) -> list[np.ndarray]:
    """Shingle hashes of each document: this run's as the signature phase kept them, those of
    documents earlier versions accepted hashed again from their texts."""
    out: list[np.ndarray] = [np.zeros(0, np.uint64)] * docs.size
    new = np.flatnonzero(docs >= ws.new_base)
    for i, h in zip(new, ws.shingles(docs[new]), strict=True):
        out[i] = h
    old = np.flatnonzero(docs < ws.new_base)
    if old.size:
        texts = pa.array(ws.texts(docs[old]), pa.large_string())
        sh = hasher.shingles(fold_words(texts, cfg.normalize))
        for j, i in enumerate(old):
            out[i] = sh.of(j)
    return out


# -- 5. cluster ---------------------------------------------------------------------------------
def cluster_unit(ctx: StageContext, _: int) -> dict[str, Any]:
    cfg: DedupConfig = ctx.config
    ws = Workspace(ctx)
    con = ws.connect()
    ws.view(con, "exact", "exact", "NULL::BIGINT AS ord, NULL::BIGINT AS keeper")
    ws.view(
        con,
        "verified",
        "verified",
        "NULL::BIGINT AS ord, NULL::BIGINT AS rep, NULL::FLOAT AS est, NULL::FLOAT AS jaccard",
    )
    near_stats = _components(ws, con, cfg)
    ws.view(con, "near", "near", "NULL::BIGINT AS ord, NULL::BIGINT AS keeper, NULL::BIGINT AS cluster_size")
    con.execute(
        """CREATE TEMP TABLE removed AS
        SELECT ord, 'exact' AS rule, keeper, NULL::BIGINT AS cluster_size FROM exact
        UNION ALL SELECT ord, 'near_duplicate', keeper, cluster_size FROM near"""
    )
    # Ids must be unique downstream: a survivor whose id an earlier survivor holds goes too.
    con.execute(
        f"""INSERT INTO removed
        WITH s AS (SELECT ord, id FROM allsigs a WHERE NOT EXISTS (SELECT 1 FROM removed r WHERE r.ord = a.ord)),
        f AS (SELECT id, min(ord) AS keeper FROM s GROUP BY id HAVING count(*) > 1)
        SELECT s.ord, 'duplicate_id', f.keeper, NULL FROM s JOIN f USING (id)
        WHERE s.ord <> f.keeper AND s.ord >= {ws.new_base}"""
    )
    out = ws.path("removed.parquet")
    con.execute(
        f"""COPY (
          SELECT r.ord, r.rule, r.keeper, k.id AS keeper_id, r.cluster_size, v.jaccard
          FROM removed r JOIN allsigs k ON k.ord = r.keeper
          LEFT JOIN (SELECT ord, max(jaccard) AS jaccard FROM verified GROUP BY ord) v
            ON v.ord = r.ord AND r.rule = 'near_duplicate'
          ORDER BY r.ord
        ) TO '{out}' (FORMAT parquet, ROW_GROUP_SIZE 65536)"""
    )
    frequent = 0
    if cfg.spans.enabled:
        files = ws.files("lines")
        spans_out = ws.path("spans.parquet")
        con.execute(
            f"""COPY (SELECT h FROM read_parquet({files!r}) l
            WHERE NOT EXISTS (SELECT 1 FROM removed r WHERE r.ord = l.ord)
            GROUP BY h HAVING count(*) >= {cfg.spans.min_docs} ORDER BY h) TO '{spans_out}' (FORMAT parquet)"""
        )
        frequent = pq.ParquetFile(spans_out).metadata.num_rows
    return {"near": near_stats, "frequent_spans": frequent}


def _components(ws: Workspace, con, cfg: DedupConfig) -> dict[str, Any]:
    nodes = con.execute(
        "SELECT x FROM (SELECT ord AS x FROM verified UNION SELECT rep FROM verified) ORDER BY x"
    ).fetchnumpy()["x"]
    nodes = np.asarray(nodes, dtype=np.int64)
    uf = UnionFind(nodes.size)
    for batch in con.sql("SELECT ord, rep FROM verified").to_arrow_reader(1 << 20):
        u = np.searchsorted(nodes, batch.column("ord").to_numpy())
        v = np.searchsorted(nodes, batch.column("rep").to_numpy())
        uf.union(u, v)
    roots = uf.roots()
    sizes = np.bincount(roots, minlength=nodes.size)
    dup = (roots != np.arange(nodes.size)) & (nodes >= ws.new_base)
    table = pa.table(
        {"ord": nodes[dup], "keeper": nodes[roots[dup]], "cluster_size": sizes[roots[dup]].astype(np.int64)}
    )
    pq.write_table(table, ws.path("near", "near.parquet"), compression="none")
    cluster_roots = np.unique(roots[dup])
    top = sorted(cluster_roots.tolist(), key=lambda c: (-int(sizes[c]), int(nodes[c])))[: cfg.top_clusters]
    samples = [nodes[roots == c][:5] for c in top]
    members = np.concatenate([np.zeros(0, np.int64), *samples])
    ids, texts = {}, {}
    if members.size:  # one query for all samples
        ids = dict(
            con.execute(
                f"SELECT ord, id FROM allsigs WHERE ord IN ({','.join(map(str, members))})"
            ).fetchall()
        )
        # The apply phase reads this run's texts anyway and fills in their snippets; only those
        # of documents earlier versions kept are read here.
        old = members[members < ws.new_base]
        texts = dict(zip(old.tolist(), ws.texts(old), strict=True))
    largest = [
        {
            "cluster": int(nodes[c]),
            "size": int(sizes[c]),
            "members": [
                {"id": ids[m], "ord": m} | ({"snippet": snippet(texts[m])} if m in texts else {})
                for m in sample.tolist()
            ],
        }
        for c, sample in zip(top, samples, strict=True)
    ]
    return {
        "clusters": int(cluster_roots.size),
        "removed": int(dup.sum()),
        "cluster_size_histogram": size_histogram(sizes[cluster_roots]),
        "largest_clusters": largest,
    }


# -- 6. apply -----------------------------------------------------------------------------------
def apply_unit(ctx: StageContext, shard: int) -> dict[str, Any]:
    cfg: DedupConfig = ctx.config
    ws = Workspace(ctx)
    lo, hi = make_ord(ws.gen, shard, 0), make_ord(ws.gen, shard + 1, 0)
    removed = pq.read_table(ws.path("removed.parquet"), filters=[("ord", ">=", lo), ("ord", "<", hi)])
    gone = {int(o): i for i, o in enumerate(removed.column("ord").to_pylist())}
    rem = removed.to_pydict()
    est = np.full(len(gone), np.nan)
    near = np.flatnonzero(np.array(rem["rule"], dtype=object) == "near_duplicate")
    if near.size:
        pairs = np.concatenate(
            [np.asarray(rem["ord"], np.int64)[near], np.asarray(rem["keeper"], np.int64)[near]]
        )
        sigs = ws.signatures(pairs)
        est[near] = estimate_jaccard(sigs[: near.size], sigs[near.size :])
    frequent = np.zeros(0, np.uint64)
    if cfg.spans.enabled:
        frequent = pq.read_table(ws.path("spans.parquet")).column("h").to_numpy()

    prefix = f"part-{shard:05d}"
    data = ctx.writer(DATA_VIEW, DOCUMENT_SCHEMA, prefix)
    rejects = ctx.rejects_writer(prefix)
    rejected: dict[str, int] = {}
    by_source: dict[str, dict[str, int]] = {}
    kept_ords: list[int] = []
    chars = spans_removed = span_chars = docs_changed = 0
    wanted = [o - lo for o in ctx.extra.get("snippets_wanted", []) if lo <= o < hi]  # rows
    snippets: list[list[Any]] = []  # [ord, snippet] pairs: JSON data, as a resumed run reads them
    row0 = 0
    for batch in pq.ParquetFile(ws.input.shard_path(shard)).iter_batches(batch_size=BATCH_ROWS):
        n = batch.num_rows
        rows = np.arange(row0, row0 + n)
        ords = make_ord(ws.gen, shard, rows)
        is_gone = np.array([int(o) in gone for o in ords], dtype=np.bool_)
        texts = batch.column("text").to_pylist()
        snippets += [[lo + r, snippet(texts[r - row0])] for r in wanted if row0 <= r < row0 + n]
        sources = batch.column("source").to_pylist()
        out_rows, reject_rows = [], []
        keep = np.flatnonzero(~is_gone)
        new_texts = {int(k): texts[k] for k in keep}
        if cfg.spans.enabled and keep.size:
            kept_texts = pa.array([texts[k] for k in keep], pa.large_string())
            parts = span_rules.split(kept_texts, cfg.spans)
            hashes = span_rules.span_hashes(parts, cfg.normalize, cfg.spans)
            stripped, n_spans, n_chars = span_rules.strip(
                [texts[k] for k in keep], parts, hashes, frequent, cfg.spans
            )
            new_texts = {int(k): t for k, t in zip(keep, stripped, strict=True)}
            spans_removed += int(n_spans.sum())
            span_chars += int(n_chars.sum())
            docs_changed += int((n_spans > 0).sum())
        doc_cols = {name: batch.column(name).to_pylist() for name in DOCUMENT_SCHEMA.names}
        for i in range(n):
            src = by_source.setdefault(sources[i], {"rows_in": 0, "rows_out": 0})
            src["rows_in"] += 1
            o = int(ords[i])
            rule, detail, value, threshold, dup_of = None, None, None, None, None
            if is_gone[i]:
                j = gone[o]
                rule, dup_of = rem["rule"][j], rem["keeper_id"][j]
                detail = {"cluster": rem["keeper"][j]}
                if rule == "near_duplicate":
                    detail.update(cluster_size=rem["cluster_size"][j], jaccard_est=round(float(est[j]), 4))
                    if rem["jaccard"][j] is not None and not np.isnan(rem["jaccard"][j]):
                        detail["jaccard"] = round(float(rem["jaccard"][j]), 4)
                    value, threshold = str(round(float(est[j]), 4)), str(cfg.threshold)
            elif not new_texts[i].strip():
                rule, value = "empty_after_spans", str(len(texts[i]))
                detail = {"chars_before": len(texts[i])}
            if rule is None:
                doc = {k: doc_cols[k][i] for k in DOCUMENT_SCHEMA.names}
                doc["text"] = new_texts[i]
                out_rows.append(doc)
                src["rows_out"] += 1
                chars += len(doc["text"])
                kept_ords.append(o)
                continue
            reason = f"dedup.{rule}"
            rejected[reason] = rejected.get(reason, 0) + 1
            src[reason] = src.get(reason, 0) + 1
            reject_rows.append(
                {
                    "id": doc_cols["id"][i],
                    "reason": reason,
                    "value": value,
                    "threshold": threshold,
                    "duplicate_of": dup_of,
                    "detail": json.dumps(detail, sort_keys=True),
                    "source": sources[i],
                    "source_file": doc_cols["source_file"][i],
                    "source_record": doc_cols["source_record"][i],
                    "text": texts[i],
                }
            )
        data.write_rows(out_rows)
        if reject_rows:
            rejects.write(reject_rows_table(reject_rows))
        row0 += n
        report("progress", stage="dedup.apply", shard=shard, done=row0)
    data.close()
    rejects.close()
    _write_index(ctx, ws, shard, np.asarray(kept_ords, dtype=np.int64))
    return {
        "shard": shard,
        "rows_in": row0,
        "rows_out": row0 - sum(rejected.values()),
        "rejected": rejected,
        "by_source": by_source,
        "chars": chars,
        "spans": {"spans_removed": spans_removed, "chars_removed": span_chars, "docs_changed": docs_changed},
        "snippets": snippets,
    }


def _write_index(ctx: StageContext, ws: Workspace, shard: int, kept: np.ndarray) -> None:
    """The kept documents' signature rows, ords made local, for later versions to dedup against."""
    sigs = pq.read_table(ws.sig_path(shard))
    ords = sigs.column("ord").to_numpy()
    rows = sigs.filter(pa.array(np.isin(ords, kept)))
    rows = rows.set_column(0, "ord", pa.array(rows.column("ord").to_numpy() & LOCAL_MASK))
    index = ctx.writer(INDEX_VIEW, sigs.schema, f"part-{shard:05d}", max_rows=1 << 40)
    index.write(rows)
    index.close()
