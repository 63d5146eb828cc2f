"""The token dataset's layout: view names, Arrow schemas, the split rule and scratch file names.

A published tokenize version holds ``data/`` (packed sequences of ``seq_len + 1`` ids, shards
``train-NNNNN-NNNN.parquet`` and ``val-NNNNN-NNNN.parquet``), ``docs/`` (one row per document),
``rejects/`` and ``tokenizer/`` (tokenizer.json + tokenizer_meta.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

DOCS_VIEW = "docs"
TOKENIZER_DIR = "tokenizer"
SCRATCH_DIR = "_scratch"  # phase-to-phase files inside the staging directory, removed before publish
SPLITS = ("train", "val")
SPLIT_CODES = {"train": 0, "val": 1}  # seeds the per-split random streams


def id_type(dtype: type[np.unsignedinteger] | np.dtype) -> pa.DataType:
    return pa.from_numpy_dtype(np.dtype(dtype))


def packed_schema(dtype: type[np.unsignedinteger] | np.dtype) -> pa.Schema:
    return pa.schema(
        [
            pa.field("split", pa.string(), nullable=False),
            pa.field("input_ids", pa.list_(id_type(dtype)), nullable=False),
        ]
    )


def docs_schema(dtype: type[np.unsignedinteger] | np.dtype) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("input_ids", pa.list_(id_type(dtype)), nullable=False),
            pa.field("n_tokens", pa.int32(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
        ]
    )


def docs_table(ids: list[str], flat: np.ndarray, lengths: np.ndarray, val: np.ndarray) -> pa.Table:
    """docs view rows from concatenated ids and per-document lengths (no copy of the ids)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "n_tokens": pa.array(lengths.astype(np.int32)),
            "split": pa.array(np.where(val, "val", "train")),
        }
    )


def unit_hash(ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """A uniform 64-bit hash of each document id (xxh3), for splits and samples."""
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(i.encode(), seed) for i in ids), dtype=np.uint64, count=len(ids)
    )


def is_val(ids: Sequence[str], val_fraction: float) -> np.ndarray:
    """The val split: documents whose id hash falls in the lowest ``val_fraction`` of the range.

    Depends on the id alone, so a document keeps its split across runs, seeds and corpus growth.
    """
    return unit_hash(ids) < np.uint64(int(val_fraction * 2.0**64))


def stream_file(staging_dir: Path, split: str, shard: int) -> Path:
    """One input shard's documents of one split, joined by end-of-text, as raw ids."""
    return staging_dir / SCRATCH_DIR / f"stream-{split}-{shard:05d}.bin"


def chunk_file(staging_dir: Path, split: str, chunk: int) -> Path:
    """One chunk of sequences, ordered by destination bucket (``.npy``)."""
    return staging_dir / SCRATCH_DIR / f"chunk-{split}-{chunk:05d}.npy"


def chunk_offsets_file(staging_dir: Path, split: str, chunk: int) -> Path:
    """Where each bucket's rows start in the chunk file (``buckets + 1`` offsets)."""
    return staging_dir / SCRATCH_DIR / f"chunk-{split}-{chunk:05d}.offsets.npy"
