"""Phase one, per input shard: documents to ids, the docs view, and each split's token stream.

Documents are encoded a batch at a time with the tokenizer's native (multi-threaded) batch
encoder; everything per token after that is numpy. Each document of a split is followed by the
end-of-text token and appended to that split's stream file for this shard, which the packing
phases cut into sequences.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Encoding

from .. import duckdb_session
from ..dataset import Dataset, ShardWriter
from ..observe import report
from ..rejects import REJECT_TEXT_LIMIT
from ..stage import StageContext
from .config import TokenizeConfig
from .formats import DOCS_VIEW, SPLITS, TOKENIZER_DIR, docs_schema, docs_table, is_val, stream_file, unit_hash
from .mixing import IndexWriter, index_file
from .tokenizer import TextTokenizer, load_tokenizer

REJECT_PREFIX = "tokenize."
# Lineage columns copied into rejects when the input has them.
LINEAGE = ("source", "source_file", "source_record")
SAMPLE_HASH_SEED = 1  # independent of the split hash (seed 0)
IN_MEMORY_ID_ROWS = 250_000  # inputs up to this many rows have their ids checked in memory (~15 MB)


def text_bytes_estimate(dataset: Dataset) -> int:
    """Uncompressed size of the text column, from Parquet metadata alone (no data read)."""
    total = 0
    for path in dataset.shard_paths():
        meta = pq.ParquetFile(path).metadata
        col = meta.schema.names.index("text")
        total += sum(
            meta.row_group(g).column(col).total_uncompressed_size for g in range(meta.num_row_groups)
        )
    return total


def training_batches(
    dataset: Dataset, cfg: TokenizeConfig, used: dict[str, int], include_val: bool = False
) -> Iterator[list[str]]:
    """Train-split texts for fitting a tokenizer: a hash sample of about ``train_sample_bytes``.

    Sampling by id hash spreads the sample over the whole input (not its first shards) and is
    the same on every run. Val documents are left out so a learned vocabulary never sees them,
    unless ``include_val`` (a character alphabet, which like nanoGPT's spans the whole text so
    that no val character is unknown). ``used`` receives the number of documents and bytes taken.
    """
    budget = cfg.train_sample_bytes
    rate = min(1.0, budget / max(1, text_bytes_estimate(dataset)))
    cutoff = np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
    used.update(docs=0, bytes=0)
    for batch in dataset.iter_batches(columns=["id", "text"], batch_size=cfg.batch_docs):
        ids = batch.column("id").to_pylist()
        keep = unit_hash(ids, SAMPLE_HASH_SEED) <= cutoff
        if not include_val:
            keep &= ~is_val(ids, cfg.val_fraction)
        texts = batch.column("text").filter(pa.array(keep))
        if len(texts) == 0:
            continue
        sizes = pc.binary_length(texts).to_numpy(zero_copy_only=False)
        n = int(np.searchsorted(np.cumsum(sizes), budget - used["bytes"], side="left")) + 1
        texts = texts.slice(0, n)
        used["docs"] += len(texts)
        used["bytes"] += int(sizes[:n].sum())
        yield texts.to_pylist()
        if used["bytes"] >= budget:
            return


def join_documents(flat: np.ndarray, lengths: np.ndarray, eot_id: int) -> np.ndarray:
    """The documents' ids with the end-of-text token after each one."""
    out = np.empty(flat.size + lengths.size, dtype=flat.dtype)
    is_eot = np.zeros(out.size, dtype=bool)
    is_eot[np.cumsum(lengths + 1) - 1] = True
    out[is_eot] = eot_id
    out[~is_eot] = flat
    return out


def byte_bounded(batches: Iterator[pa.RecordBatch], max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Split record batches so each holds at most ``max_bytes`` of text (or one longer document).

    Encodings take tens of bytes per text byte, so a batch of long documents is cut here.
    """
    for batch in batches:
        sizes = pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False)
        if sizes.sum() <= max_bytes:
            yield batch
            continue
        start, ends = 0, np.cumsum(sizes)
        while start < batch.num_rows:
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + max_bytes, side="right")))
            yield batch.slice(start, stop - start)
            start = stop


def find_duplicate_ids(
    dataset: Dataset, in_memory_rows: int = IN_MEMORY_ID_ROWS
) -> dict[str, tuple[int, int]]:
    """Ids held by more than one input row, each with the (shard, row) of its first occurrence.

    Upstream dedup makes ids unique; this guards the docs view's key when tokenize reads a
    dataset that keeps exact copies (ingest output). Up to ``in_memory_rows`` input rows the id
    columns are checked in Arrow (a millisecond, where a DuckDB query costs ten); above it, one
    DuckDB pass over the id column, which spills instead of holding every id.
    """
    files = [str(p) for p in dataset.shard_paths()]
    if sum(pq.ParquetFile(f).metadata.num_rows for f in files) <= in_memory_rows:
        return _duplicates_in_memory(files)
    index = {f: i for i, f in enumerate(files)}
    with duckdb_session.cursor() as con:
        rows = con.execute(
            "SELECT id, min(struct_pack(f := filename, r := file_row_number)) FROM "
            "read_parquet($files, filename = true, file_row_number = true) GROUP BY id HAVING count(*) > 1",
            {"files": files},
        ).fetchall()
    # Shard files sort by name in the manifest, so the smallest file name is the first shard.
    return {i: (index[first["f"]], int(first["r"])) for i, first in rows}


def _duplicates_in_memory(files: list[str]) -> dict[str, tuple[int, int]]:
    columns = [pq.ParquetFile(f).read(columns=["id"]).column("id") for f in files]
    ids = pa.chunked_array(columns, pa.string())
    if pc.count_distinct(ids, mode="all").as_py() == len(ids):
        return {}  # the usual case: no id twice
    first: dict[str, tuple[int, int]] = {}
    repeated = set()
    for shard, column in enumerate(columns):
        for row, i in enumerate(column.to_pylist()):
            if i in first:
                repeated.add(i)
            else:
                first[i] = (shard, row)
    return {i: first[i] for i in repeated}


def encode_shard(ctx: StageContext, shard: int) -> dict[str, Any]:
    """Encode one input shard: docs view rows, rejects, and one token stream file per split."""
    cfg: TokenizeConfig = ctx.config
    tok = stage_tokenizer(ctx.staging_dir / TOKENIZER_DIR, cfg.word_cache)
    f = pq.ParquetFile(ctx.input().shard_path(shard))
    lineage = [c for c in LINEAGE if c in f.schema_arrow.names]
    docs = ctx.writer(DOCS_VIEW, docs_schema(tok.dtype), f"docs-{shard:05d}", max_rows=cfg.docs_shard_rows)
    rejects = Rejects(ctx.rejects_writer(f"tokenize-{shard:05d}"), lineage)
    stream_file(ctx.staging_dir, "train", shard).parent.mkdir(parents=True, exist_ok=True)
    n_docs = dict.fromkeys(SPLITS, 0)
    n_tokens = dict.fromkeys(SPLITS, 0)
    by_source: dict[str, dict[str, int]] = {}
    index = IndexWriter(index_file(ctx.staging_dir, shard), cfg.mix.seed) if cfg.mix else None
    text_bytes = 0
    batches = byte_bounded(f.iter_batches(cfg.batch_docs, columns=["id", "text", *lineage]), cfg.batch_bytes)
    batches = drop_repeated_ids(batches, shard, ctx.extra.get("duplicates", {}), rejects)
    with ExitStack() as files:
        out = {s: files.enter_context(open(stream_file(ctx.staging_dir, s, shard), "wb")) for s in SPLITS}
        for batch, encodings in encode_ahead(tok, batches):
            flat, lengths = tok.to_arrays(encodings)
            batch = rejects.take(batch, lengths == 0, "no_tokens", value="0", threshold="1")
            lengths = lengths[lengths > 0]
            ids = batch.column("id").to_pylist()
            text_bytes += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
            val = is_val(ids, cfg.val_fraction)
            docs.write(docs_table(ids, flat, lengths, val))
            joined = join_documents(flat, lengths, tok.eot_id)
            in_val = np.repeat(val, lengths + 1)
            for s, mask in (("train", ~in_val), ("val", in_val)):
                joined[mask].tofile(out[s])
            for s, mask in (("train", ~val), ("val", val)):
                n_docs[s] += int(mask.sum())
                n_tokens[s] += int(lengths[mask].sum())
            sources = batch.column("source").to_pylist() if "source" in lineage else [None] * len(ids)
            count_by_source(by_source, sources, lengths, val)
            if index is not None:
                index.add(sources, ids, lengths, ~val)
            done = sum(n_docs.values()) + sum(rejects.counts.values())
            # Rows of this shard; the mapper reports shards done under "tokenize.encode".
            report(
                "progress", stage="tokenize.encode.shard", shard=shard, done=done, total=f.metadata.num_rows
            )
    docs.close()
    rejects.writer.close()
    if index is not None:
        index.close()
    rows_in = f.metadata.num_rows
    return {
        "shard": shard,
        "rows_in": rows_in,
        "rows_out": rows_in - sum(rejects.counts.values()),
        "rejected": rejects.counts,
        "docs": n_docs,
        "tokens": n_tokens,
        # Stream length: the documents' tokens plus one end-of-text token each.
        "stream": {s: n_tokens[s] + n_docs[s] for s in SPLITS},
        "text_bytes": text_bytes,
        "by_source": by_source,
    }


def count_by_source(
    totals: dict[str, dict[str, int]], sources: list[str | None], lengths: np.ndarray, val: np.ndarray
) -> None:
    """Add each document's tokens to its source's train or val count."""
    for s, n, v in zip(sources, lengths.tolist(), val.tolist(), strict=True):
        t = totals.setdefault(s or "", {"train": 0, "val": 0})
        t["val" if v else "train"] += n


_staged: dict[Path, TextTokenizer] = {}
_staged_lock = threading.Lock()
STAGED_TOKENIZERS = 4  # tokenizers kept per process


def remember_tokenizer(path: Path, tok: TextTokenizer) -> None:
    """Hand the tokenizer just saved at ``path`` to this process's encode units (no reload)."""
    with _staged_lock:
        _staged[path] = tok
        while len(_staged) > STAGED_TOKENIZERS:
            del _staged[next(iter(_staged))]


def stage_tokenizer(path: Path, word_cache: int) -> TextTokenizer:
    """The staged tokenizer, loaded once per process (not once per shard), its word cache set.

    The staging path is named by the version's fingerprint, which covers the tokenizer.
    """
    with _staged_lock:
        tok = _staged.get(path)
    if tok is None:
        tok = load_tokenizer(path)
        tok.set_word_cache(word_cache)
        remember_tokenizer(path, tok)
    return tok


def encode_ahead(
    tok: TextTokenizer, batches: Iterator[pa.RecordBatch]
) -> Iterator[tuple[pa.RecordBatch, list[Encoding]]]:
    """Each batch with its encodings, the next batch encoding in the background meanwhile.

    The native encoder releases the GIL, so the numpy work and Parquet writes of one batch
    overlap the encoding of the next (at most two batches in memory).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        pending = None
        for batch in batches:
            job = pool.submit(tok.encode_native, batch.column("text").to_pylist())
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (batch, job)
        if pending is not None:
            yield pending[0], pending[1].result()


def drop_repeated_ids(
    batches: Iterator[pa.RecordBatch], shard: int, first_seen: dict[str, tuple[int, int]], rejects: Rejects
) -> Iterator[pa.RecordBatch]:
    """Reject every occurrence of a repeated id but the first (``first_seen``: id -> shard, row)."""
    row = 0
    for batch in batches:
        start, row = row, row + batch.num_rows
        if first_seen:
            ids = batch.column("id").to_pylist()
            later = [first_seen.get(i, (shard, start + n)) != (shard, start + n) for n, i in enumerate(ids)]
            batch = rejects.take(batch, np.array(later, dtype=bool), "duplicate_id", copy_of=True)
        yield batch


class Rejects:
    """Moves masked rows of a batch into the rejects view, counting them by reason."""

    def __init__(self, writer: ShardWriter, lineage: list[str]):
        self.writer = writer
        self.lineage = lineage
        self.counts: dict[str, int] = {}

    def take(
        self,
        batch: pa.RecordBatch,
        mask: np.ndarray,
        rule: str,
        value: str | None = None,
        threshold: str | None = None,
        copy_of: bool = False,
    ) -> pa.RecordBatch:
        """Reject the rows where ``mask`` is set; return the others."""
        if not mask.any():
            return batch
        reason = REJECT_PREFIX + rule
        rows = batch.filter(pa.array(mask))
        n = rows.num_rows
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.writer.write(
            pa.table(
                {
                    "id": rows.column("id"),
                    "reason": _constant(reason, n),
                    "value": _constant(value, n),
                    "threshold": _constant(threshold, n),
                    # An exact id repeat: the kept document has this same id.
                    "duplicate_of": rows.column("id") if copy_of else _constant(None, n),
                    "detail": _constant(None, n),
                    **{c: rows.column(c) if c in self.lineage else pa.nulls(n) for c in LINEAGE},
                    "text": pc.utf8_slice_codeunits(rows.column("text"), 0, REJECT_TEXT_LIMIT),
                }
            )
        )
        return batch.filter(pa.array(~mask))


def _constant(value: str | None, n: int) -> pa.Array:
    return pa.array([value] * n, pa.string())
