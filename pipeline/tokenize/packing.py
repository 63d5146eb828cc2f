"""Phases two and three: cut each split's token stream into sequences, shuffled across shards.

A split's stream is its documents joined by end-of-text, in input order (the encode phase wrote it
as one file per input shard). Sequence ``k`` is ``stream[k*L : k*L + L + 1]`` for ``L = seq_len``:
neighbours share one token, so every token but the first is a training target exactly once; the
tail shorter than a sequence is dropped and counted.

The global shuffle is the two-pass external shuffle, so memory is bounded by one chunk or one
bucket, never the corpus:

* scatter: each chunk of ``shard_sequences`` consecutive sequences sends every sequence to a
  uniformly random bucket and writes them ordered by bucket;
* gather: each bucket reads its rows from every chunk, permutes them uniformly and writes one
  output shard. Random buckets plus a random order inside each bucket is a uniform permutation of
  all sequences. Every random choice is seeded by (seed, split, chunk or bucket), so the output
  is the same on every run and under any scheduling.

An input encoded as one unit whose splits each fit one chunk (one bucket) is packed by that unit
itself (:func:`pack_alone`): scattering to a single bucket keeps the order, so the gather's
permutation of the whole stream is the output, written without the chunk files and the two
phases' units.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pyarrow as pa

from .. import validation
from ..dataset import DATA_VIEW
from ..stage import StageContext
from .config import TokenizeConfig
from .formats import SPLIT_CODES, SPLITS, chunk_file, chunk_offsets_file, packed_schema, stream_file
from .mixing import mixed_stream_file

SCATTER, GATHER = 0, 1  # the two random streams per split


def count_sequences(stream_tokens: int, seq_len: int) -> int:
    """Sequences of ``seq_len + 1`` tokens, overlapping by one, that fit in a stream."""
    return max(0, (stream_tokens - 1) // seq_len)


def stream_layout(ctx: StageContext, split: str, mixed: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The files that make a split's stream, in order, with their token counts.

    Unmixed: one file per input shard. The mixed train split: one file per (pass, input shard),
    pass by pass, so copies of a document lie a whole epoch apart.
    """
    if split == "train" and ctx.extra.get("mix") is not None:
        parts = sorted((p["pass"], p["shard"], p["tokens"]) for r in mixed for p in r["passes"])
        return [(str(mixed_stream_file(ctx.staging_dir, e, s)), n) for e, s, n in parts if n]
    encoded = ctx.extra["encoded"]
    return [
        (str(stream_file(ctx.staging_dir, split, r["shard"])), r["stream"][split])
        for r in encoded
        if r["stream"][split]
    ]


def plan_scatter(ctx: StageContext, mixed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks of consecutive sequences per split; records the stream layout in ``ctx.extra``.

    No units when the encode unit packed the splits itself (``ctx.extra["packed"]``).
    """
    cfg: TokenizeConfig = ctx.config
    ctx.extra["streams"], ctx.extra["buckets"], ctx.extra["chunks"] = {}, {}, {}
    units = []
    for split in SPLITS:
        streams = stream_layout(ctx, split, mixed)
        total = sum(n for _, n in streams)
        n_seq = count_sequences(total, cfg.seq_len)
        n_chunks = math.ceil(n_seq / cfg.shard_sequences)
        ctx.extra["streams"][split] = streams
        ctx.extra["buckets"][split] = n_chunks  # as many output shards as chunks: ~shard_sequences rows each
        ctx.extra["chunks"][split] = n_chunks
        if ctx.extra.get("packed") is not None:
            continue
        for c in range(n_chunks):
            start = c * cfg.shard_sequences
            units.append(
                {"split": split, "chunk": c, "start": start, "stop": min(n_seq, start + cfg.shard_sequences)}
            )
    return units


def read_stream(streams: list[tuple[str, int]], start: int, stop: int, dtype: np.dtype) -> np.ndarray:
    """Tokens ``[start, stop)`` of a split's stream, read from the per-shard files that hold them."""
    parts, pos = [], 0
    for path, n in streams:
        lo, hi = max(start, pos), min(stop, pos + n)
        if lo < hi:
            parts.append(np.fromfile(path, dtype=dtype, count=hi - lo, offset=(lo - pos) * dtype.itemsize))
        pos += n
        if pos >= stop:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def scatter_chunk(ctx: StageContext, unit: dict[str, Any]) -> dict[str, Any]:
    """Cut one chunk's sequences and write them grouped by their random destination bucket."""
    cfg: TokenizeConfig = ctx.config
    split, chunk, start, stop = unit["split"], unit["chunk"], unit["start"], unit["stop"]
    dtype = np.dtype(ctx.extra["tokenizer"]["dtype"])
    L = cfg.seq_len
    tokens = read_stream(ctx.extra["streams"][split], start * L, stop * L + 1, dtype)
    rows = cut_sequences(tokens, L)
    n_buckets = ctx.extra["buckets"][split]
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], SCATTER, chunk])
    bucket = rng.integers(0, n_buckets, size=len(rows))
    order = np.argsort(bucket, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=n_buckets))])
    np.save(chunk_file(ctx.staging_dir, split, chunk), rows[order])
    np.save(chunk_offsets_file(ctx.staging_dir, split, chunk), offsets)
    return {"split": split, "chunk": chunk, "rows": len(rows)}


def plan_gather(ctx: StageContext, scattered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if ctx.extra.get("packed") is not None:
        return []
    return [{"split": s, "bucket": b} for s in SPLITS for b in range(ctx.extra["buckets"][s])]


def gather_bucket(ctx: StageContext, unit: dict[str, Any]) -> dict[str, Any]:
    """Collect one bucket's sequences from every chunk, permute them, write one output shard."""
    cfg: TokenizeConfig = ctx.config
    split, b = unit["split"], unit["bucket"]
    dtype = np.dtype(ctx.extra["tokenizer"]["dtype"])
    L = cfg.seq_len
    pieces = []
    for c in range(ctx.extra["chunks"][split]):
        offsets = np.load(chunk_offsets_file(ctx.staging_dir, split, c))
        if offsets[b + 1] > offsets[b]:
            rows = np.load(chunk_file(ctx.staging_dir, split, c), mmap_mode="r")
            pieces.append(np.asarray(rows[offsets[b] : offsets[b + 1]]))
    rows = np.concatenate(pieces) if pieces else np.zeros((0, L + 1), dtype)
    write_permuted(ctx, split, b, rows)
    return {"split": split, "bucket": b, "rows": len(rows)}


def cut_sequences(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Every ``seq_len + 1`` window starting at a multiple of ``seq_len`` (a view, no copy)."""
    return np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)[::seq_len]


def write_permuted(ctx: StageContext, split: str, b: int, rows: np.ndarray) -> None:
    """Permute one bucket's rows (seeded by split and bucket) and write them as one output shard."""
    cfg: TokenizeConfig = ctx.config
    dtype = np.dtype(ctx.extra["tokenizer"]["dtype"])
    rng = np.random.default_rng([cfg.seed, SPLIT_CODES[split], GATHER, b])
    rows = rows[rng.permutation(len(rows))]
    writer = ctx.writer(
        DATA_VIEW,
        packed_schema(dtype),
        f"{split}-{b:05d}",
        max_rows=len(rows) + 1,
        row_group_rows=cfg.row_group_rows,
        watch=validation.PropsAhead(validation.packed_props()),  # the gate's, from the rows written
    )
    writer.write(sequences_table(rows, split))
    writer.close()


def sequences_table(rows: np.ndarray, split: str) -> pa.Table:
    """An (n, L+1) array of ids as the packed view's rows (one list per row, no copy of the ids)."""
    n, width = rows.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.table(
        {
            "split": pa.array([split] * n, pa.string()),
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1))),
        }
    )


def pack_alone(
    ctx: StageContext, streams: dict[str, list[tuple[str, int]]], executor: Executor
) -> dict[str, int] | None:
    """Pack every split now, when each fits one bucket; the packed rows per split, else None.

    What scatter and gather write for a single bucket: scatter sends every row of the one chunk
    to bucket 0 in order, gather permutes the bucket. The splits are written in ``executor``
    (Parquet releases the GIL while it encodes and compresses).
    """
    cfg: TokenizeConfig = ctx.config
    sequences = {s: count_sequences(sum(n for _, n in streams[s]), cfg.seq_len) for s in SPLITS}
    if any(n > cfg.shard_sequences for n in sequences.values()):
        return None
    dtype = np.dtype(ctx.extra["tokenizer"]["dtype"])

    def pack(split: str) -> None:
        n, L = sequences[split], cfg.seq_len
        rows = cut_sequences(read_stream(streams[split], 0, n * L + 1, dtype), L)
        write_permuted(ctx, split, 0, rows)

    jobs = [executor.submit(pack, s) for s in SPLITS if sequences[s]]
    for job in jobs:
        job.result()
    return sequences
