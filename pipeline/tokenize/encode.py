"""Phase one, per input shard: documents to ids, the docs view, and each split's token stream.

Documents are encoded a batch at a time with the tokenizer's native (multi-threaded) batch
encoder; everything per token after that is numpy. Each document of a split is followed by the
end-of-text token and appended to that split's stream file for this shard, which the packing
phases cut into sequences.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..dataset import REJECT_TEXT_LIMIT, Dataset
from ..observe import report
from ..stage import StageContext
from .config import TokenizeConfig
from .formats import DOCS_VIEW, SPLITS, TOKENIZER_DIR, docs_schema, is_val, stream_file, unit_hash
from .tokenizer import load_tokenizer

REJECT_PREFIX = "tokenize."
# Lineage columns copied into rejects when the input has them.
LINEAGE = ("source", "source_file", "source_record")
SAMPLE_HASH_SEED = 1  # independent of the split hash (seed 0)


def text_bytes_estimate(dataset: Dataset) -> int:
    """Uncompressed size of the text column, from Parquet metadata alone (no data read)."""
    total = 0
    for path in dataset.shard_paths():
        meta = pq.ParquetFile(path).metadata
        col = meta.schema.names.index("text")
        total += sum(meta.row_group(g).column(col).total_uncompressed_size for g in range(meta.num_row_groups))
    return total


def training_batches(dataset: Dataset, cfg: TokenizeConfig, used: dict[str, int]) -> Iterator[list[str]]:
    """Train-split texts for fitting a tokenizer: a hash sample of about ``train_sample_bytes``.

    Sampling by id hash spreads the sample over the whole input (not its first shards) and is
    the same on every run. Val documents are left out so the tokenizer never sees them.
    ``used`` receives the number of documents and bytes taken.
    """
    budget = cfg.train_sample_bytes
    rate = min(1.0, budget / max(1, text_bytes_estimate(dataset)))
    cutoff = np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
    used.update(docs=0, bytes=0)
    for batch in dataset.iter_batches(columns=["id", "text"], batch_size=cfg.batch_docs):
        ids = batch.column("id").to_pylist()
        keep = ~is_val(ids, cfg.val_fraction) & (unit_hash(ids, SAMPLE_HASH_SEED) <= cutoff)
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


def encode_shard(ctx: StageContext, shard: int) -> dict[str, Any]:
    """Encode one input shard: docs view rows, rejects, and one token stream file per split."""
    cfg: TokenizeConfig = ctx.config
    tok = load_tokenizer(ctx.staging_dir / TOKENIZER_DIR)
    path = ctx.input().shard_paths()[shard]
    f = pq.ParquetFile(path)
    lineage = [c for c in LINEAGE if c in f.schema_arrow.names]
    docs = ctx.writer(DOCS_VIEW, docs_schema(tok.dtype), f"docs-{shard:05d}", max_rows=cfg.docs_shard_rows)
    rejects = ctx.rejects_writer(f"tokenize-{shard:05d}")
    streams = {s: stream_file(ctx.staging_dir, s, shard) for s in SPLITS}
    streams["train"].parent.mkdir(parents=True, exist_ok=True)
    out = {s: open(p, "wb") for s, p in streams.items()}
    rows_in = 0
    rejected: dict[str, int] = {}
    n_docs = dict.fromkeys(SPLITS, 0)
    n_tokens = dict.fromkeys(SPLITS, 0)
    text_bytes = 0
    try:
        for batch in f.iter_batches(batch_size=cfg.batch_docs, columns=["id", "text", *lineage]):
            rows_in += batch.num_rows
            ids = batch.column("id").to_pylist()
            flat, lengths = tok.encode_arrays(batch.column("text").to_pylist())
            text_bytes += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
            empty = lengths == 0
            if empty.any():
                _reject_empty(rejects, batch, empty, lineage, rejected)
                kept = ~empty
                ids = [i for i, k in zip(ids, kept) if k]
                lengths = lengths[kept]
            val = is_val(ids, cfg.val_fraction)
            split = np.where(val, "val", "train")
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            docs.write(
                pa.table(
                    {
                        "id": pa.array(ids, pa.string()),
                        "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                        "n_tokens": pa.array(lengths.astype(np.int32)),
                        "split": pa.array(split),
                    }
                )
            )
            joined = join_documents(flat, lengths, tok.eot_id)
            in_val = np.repeat(val, lengths + 1)
            for s, mask in (("train", ~in_val), ("val", in_val)):
                joined[mask].tofile(out[s])
            n_docs["val"] += int(val.sum())
            n_docs["train"] += int((~val).sum())
            n_tokens["val"] += int(lengths[val].sum())
            n_tokens["train"] += int(lengths[~val].sum())
            report("progress", stage="tokenize", phase="encode", shard=shard, done=rows_in, total=f.metadata.num_rows)
    finally:
        for fh in out.values():
            fh.close()
    docs.close()
    rejects.close()
    return {
        "shard": shard,
        "rows_in": rows_in,
        "rows_out": rows_in - sum(rejected.values()),
        "rejected": rejected,
        "docs": n_docs,
        "tokens": n_tokens,
        # Stream length: the documents' tokens plus one end-of-text token each.
        "stream": {s: n_tokens[s] + n_docs[s] for s in SPLITS},
        "text_bytes": text_bytes,
    }


def _reject_empty(rejects, batch: pa.RecordBatch, empty: np.ndarray, lineage: list[str], counts: dict[str, int]) -> None:
    reason = REJECT_PREFIX + "no_tokens"
    rows = batch.filter(pa.array(empty))
    counts[reason] = counts.get(reason, 0) + rows.num_rows
    cols = {c: rows.column(c) for c in ("id", "text", *lineage)}
    n = rows.num_rows
    rejects.write(
        pa.table(
            {
                "id": cols["id"],
                "reason": pa.array([reason] * n),
                "value": pa.array(["0"] * n),
                "threshold": pa.array(["1"] * n),
                "duplicate_of": pa.nulls(n, pa.string()),
                "detail": pa.nulls(n, pa.string()),
                **{c: cols[c] if c in cols else pa.nulls(n) for c in LINEAGE},
                "text": pc.utf8_slice_codeunits(cols["text"], 0, REJECT_TEXT_LIMIT),
            }
        )
    )
