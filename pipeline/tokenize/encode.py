"""Phase one, per input shard: documents to ids, the docs view, and each split's token stream.

Documents are encoded a batch at a time with the tokenizer's native (multi-threaded) batch
encoder; everything per token after that is numpy. Each document of a split is followed by the
end-of-text token and appended to that split's stream file for this shard, which the packing
phases cut into sequences.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Encoding

from .. import duckdb_session, validation
from ..dataset import DATA_VIEW, Dataset, ShardWriter
from ..observe import report
from ..rejects import REJECT_TEXT_LIMIT
from ..stage import StageContext
from .config import TokenizeConfig
from .formats import DOCS_VIEW, SPLITS, TOKENIZER_DIR, docs_schema, docs_table, is_val, stream_file, unit_hash
from .mixing import IndexWriter, index_file
from .packing import pack_alone
from .tokenizer import TextTokenizer, load_tokenizer

REJECT_PREFIX = "tokenize."
# Lineage columns copied into rejects when the input has them.
LINEAGE = ("source", "source_file", "source_record")
SAMPLE_HASH_SEED = 1  # independent of the split hash (seed 0)
K = TypeVar("K")
IN_MEMORY_ID_ROWS = 250_000  # inputs up to this many rows have their ids checked in memory (~15 MB)
# Consecutive input shards are encoded as one unit up to this many Parquet bytes (~10 MB of text).
UNIT_FILE_BYTES = 4_000_000


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


def encode_units(dataset: Dataset) -> list[list[int]]:
    """The input's shards grouped into encode units, by the file sizes in its manifest."""
    return group_shards([s["bytes"] for s in dataset.manifest["views"][DATA_VIEW]["shards"]], UNIT_FILE_BYTES)


def group_shards(sizes: list[int], unit_bytes: int) -> list[list[int]]:
    """Consecutive shards in units of at most ``unit_bytes`` (a larger shard is a unit alone).

    A unit has fixed costs (its files, its marker, the encoder idle while its last batch's rows
    are written); many small shards each paying them made small multi-shard inputs slow.
    """
    units: list[list[int]] = []
    total = 0
    for shard, size in enumerate(sizes):
        if units and total + size <= unit_bytes:
            units[-1].append(shard)
            total += size
        else:
            units.append([shard])
            total = size
    return units


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
    if ids_checked_in_memory(dataset, in_memory_rows):
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


def ids_checked_in_memory(dataset: Dataset, in_memory_rows: int = IN_MEMORY_ID_ROWS) -> bool:
    """Whether :func:`find_duplicate_ids` checks in Arrow (the row count is from the manifest)."""
    return dataset.num_rows() <= in_memory_rows


def _duplicates_in_memory(files: list[str]) -> dict[str, tuple[int, int]]:
    columns = [pq.ParquetFile(f).read(columns=["id"]).column("id") for f in files]
    # Built from the Arrow chunks: given the ChunkedArrays themselves, pyarrow goes through a
    # slow conversion path (a few ms for a few hundred ids).
    ids = pa.chunked_array([c for column in columns for c in column.chunks], pa.string())
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


def encode_shards(ctx: StageContext, shards: list[int]) -> dict[str, Any]:
    """Encode a unit of consecutive input shards; each shard's outputs are as if it were alone.

    The encoder runs on across shard boundaries: the next shard's first batch encodes while this
    shard's last rows and files are written. A unit that holds the whole input packs it too when
    it is small enough (:func:`~.packing.pack_alone`), while its last docs shard is written.
    """
    cfg: TokenizeConfig = ctx.config
    tok = stage_tokenizer(ctx.staging_dir / TOKENIZER_DIR, cfg.word_cache)
    stream_file(ctx.staging_dir, "train", shards[0]).parent.mkdir(parents=True, exist_ok=True)
    alone = cfg.mix is None and len(shards) == ctx.input().num_shards()
    packed = None
    opened: list[ShardEncoder] = []
    repeats = id_repeats(ctx.extra.get("duplicates", {}))

    def batches() -> Iterator[tuple[ShardEncoder, pa.RecordBatch | None]]:
        for shard in shards:
            enc = ShardEncoder(ctx, tok, shard, repeats)
            opened.append(enc)
            for batch in enc.batches():
                yield enc, batch
            yield enc, None  # the end of the shard

    results = []
    try:
        for enc, batch, encodings in encode_ahead(tok, batches()):
            if batch is not None:
                enc.add(batch, encodings)
            elif alone and enc.shard == shards[-1]:
                enc.close_streams()
                with ThreadPoolExecutor(2, thread_name_prefix="tokenize-pack") as pool:
                    closing = pool.submit(enc.close)
                    packed = pack_alone(ctx, stream_files(ctx.staging_dir, opened), pool)
                    results.append(closing.result())
            else:
                results.append(enc.close())
    finally:
        for enc in opened:
            enc.close_streams()
    return {"shards": results} if packed is None else {"shards": results, "packed": packed}


def stream_files(staging_dir: Path, encoders: list[ShardEncoder]) -> dict[str, list[tuple[str, int]]]:
    """Each split's stream: its non-empty per-shard files in shard order, with their token counts."""
    return {
        s: [
            (str(stream_file(staging_dir, s, e.shard)), e.n_tokens[s] + e.n_docs[s])
            for e in encoders
            if e.n_docs[s]
        ]
        for s in SPLITS
    }


class ShardEncoder:
    """One input shard's outputs: docs view rows, rejects, one token stream file per split."""

    def __init__(self, ctx: StageContext, tok: TextTokenizer, shard: int, repeats: IdRepeats):
        cfg: TokenizeConfig = ctx.config
        self.cfg, self.tok, self.shard = cfg, tok, shard
        self.file = pq.ParquetFile(ctx.input().shard_path(shard))
        self.lineage = [c for c in LINEAGE if c in self.file.schema_arrow.names]
        self.docs = ctx.writer(
            DOCS_VIEW,
            docs_schema(tok.dtype),
            f"docs-{shard:05d}",
            max_rows=cfg.docs_shard_rows,
            # The gate's per-document properties, from the rows as written (no read back).
            watch=validation.PropsAhead(validation.doc_token_props()),
        )
        self.rejects = Rejects(ctx.rejects_writer(f"tokenize-{shard:05d}"), self.lineage)
        self.repeats = repeats
        self.streams = {s: open(stream_file(ctx.staging_dir, s, shard), "wb") for s in SPLITS}
        self.n_docs = dict.fromkeys(SPLITS, 0)
        self.n_tokens = dict.fromkeys(SPLITS, 0)
        self.by_source: dict[str, dict[str, int]] = {}
        self.index = IndexWriter(index_file(ctx.staging_dir, shard), cfg.mix.seed) if cfg.mix else None
        self.text_bytes = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The shard's documents in batches of at most ``batch_docs`` and ``batch_bytes``."""
        columns = ["id", "text", *self.lineage]
        batches = byte_bounded(
            self.file.iter_batches(self.cfg.batch_docs, columns=columns), self.cfg.batch_bytes
        )
        return drop_repeated_ids(batches, self.shard, self.repeats, self.rejects)

    def add(self, batch: pa.RecordBatch, encodings: list[Encoding]) -> None:
        tok, cfg = self.tok, self.cfg
        flat, lengths = tok.to_arrays(encodings)
        batch = self.rejects.take(batch, lengths == 0, "no_tokens", value="0", threshold="1")
        lengths = lengths[lengths > 0]
        ids = batch.column("id").to_pylist()
        self.text_bytes += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
        val = is_val(ids, cfg.val_fraction)
        self.docs.write(docs_table(ids, flat, lengths, val))
        joined = join_documents(flat, lengths, tok.eot_id)
        in_val = np.repeat(val, lengths + 1)
        for s, mask in (("train", ~in_val), ("val", in_val)):
            joined[mask].tofile(self.streams[s])
        for s, mask in (("train", ~val), ("val", val)):
            self.n_docs[s] += int(mask.sum())
            self.n_tokens[s] += int(lengths[mask].sum())
        sources = batch.column("source").to_pylist() if "source" in self.lineage else [None] * len(ids)
        count_by_source(self.by_source, sources, lengths, val)
        if self.index is not None:
            self.index.add(sources, ids, lengths, ~val)
        done = sum(self.n_docs.values()) + sum(self.rejects.counts.values())
        # Rows of this shard; the mapper reports units done under "tokenize.encode".
        report(
            "progress",
            stage="tokenize.encode.shard",
            shard=self.shard,
            done=done,
            total=self.file.metadata.num_rows,
        )

    def close_streams(self) -> None:
        for f in self.streams.values():
            f.close()

    def close(self) -> dict[str, Any]:
        """Close every output."""
        self.close_streams()
        self.docs.close()
        self.rejects.writer.close()
        if self.index is not None:
            self.index.close()
        rows_in = self.file.metadata.num_rows
        n_docs, n_tokens = self.n_docs, self.n_tokens
        return {
            "shard": self.shard,
            "rows_in": rows_in,
            "rows_out": rows_in - sum(self.rejects.counts.values()),
            "rejected": self.rejects.counts,
            "docs": n_docs,
            "tokens": n_tokens,
            # Stream length: the documents' tokens plus one end-of-text token each.
            "stream": {s: n_tokens[s] + n_docs[s] for s in SPLITS},
            "text_bytes": self.text_bytes,
            "by_source": self.by_source,
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
    tok: TextTokenizer, batches: Iterator[tuple[K, pa.RecordBatch | None]]
) -> Iterator[tuple[K, pa.RecordBatch | None, list[Encoding]]]:
    """Each (key, batch) with the batch's encodings, the next batch encoding in the background meanwhile.

    The native encoder releases the GIL, so the numpy work and Parquet writes of one batch
    overlap the encoding of the next (at most two batches in memory). A ``None`` batch (a marker
    passed through in order) has no encodings; it is handed back with the batch before it only
    once the next batch is encoding, so the encoder does not wait while a shard is closed.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        queue: deque[tuple[K, pa.RecordBatch | None, Future[list[Encoding]] | None]] = deque()
        for key, batch in batches:
            job = None if batch is None else pool.submit(tok.encode_native, batch.column("text").to_pylist())
            queue.append((key, batch, job))
            if job is not None:
                while len(queue) > 1:
                    yield _done(queue.popleft())
        while queue:
            yield _done(queue.popleft())


def _done(
    pending: tuple[K, pa.RecordBatch | None, Future[list[Encoding]] | None],
) -> tuple[K, pa.RecordBatch | None, list[Encoding]]:
    key, batch, job = pending
    return key, batch, [] if job is None else job.result()


class IdRepeats:
    """Which rows repeat an id held by an earlier row, from :func:`find_duplicate_ids`'s
    ``first_seen`` (id -> shard, row of its first occurrence)."""

    def __init__(self, first_seen: dict[str, tuple[int, int]]):
        self.first_seen = first_seen

    def later(self, shard: int, start: int, batch: pa.RecordBatch) -> list[bool] | None:
        """Per row of ``batch`` (rows ``start``... of ``shard``): an earlier row has its id.
        None when no row of the input repeats an id."""
        if not self.first_seen:
            return None
        ids = batch.column("id").to_pylist()
        return [self.first_seen.get(i, (shard, start + n)) != (shard, start + n) for n, i in enumerate(ids)]


class IdsSeen(IdRepeats):
    """Repeated ids found as the rows go by: for a unit that reads every input row in order (no
    pre-pass over the input's id columns). The first occurrence is the first row read, as
    :func:`find_duplicate_ids` finds it."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def later(self, shard: int, start: int, batch: pa.RecordBatch) -> list[bool] | None:
        seen = self.seen
        out = []
        for i in batch.column("id").to_pylist():
            out.append(i in seen)
            seen.add(i)
        return out


def id_repeats(first_seen: dict[str, tuple[int, int]] | None) -> IdRepeats:
    """``None``: the input was left unchecked, for the unit that reads all of it to check."""
    return IdsSeen() if first_seen is None else IdRepeats(first_seen)


def drop_repeated_ids(
    batches: Iterator[pa.RecordBatch], shard: int, repeats: IdRepeats, rejects: Rejects
) -> Iterator[pa.RecordBatch]:
    """Reject every occurrence of a repeated id but the first."""
    row = 0
    for batch in batches:
        start, row = row, row + batch.num_rows
        later = repeats.later(shard, start, batch)
        if later is not None:
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
