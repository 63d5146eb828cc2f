"""C4-style repeated-span removal: lines (or paragraphs) that recur across many kept documents.

A span is identified by a 64-bit hash of its folded text (the same folding as exact dedup), so
"Accept cookies" and "ACCEPT  COOKIES!" are one span. The signature phase records which spans
each document holds; the cluster phase counts, over documents that survive dedup, how many
documents hold each span; the apply phase drops spans counted in at least ``min_docs``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import NormalizeConfig, SpanConfig
from .minhash import range_hash
from .normalize import fold_collapse

SEPARATOR = {"line": "\n", "paragraph": "\n\n"}


def split(texts: pa.Array, cfg: SpanConfig) -> pa.ListArray:
    if cfg.unit == "line":
        return pc.split_pattern(texts, "\n")
    return pc.split_pattern_regex(texts, r"\n[ \t]*\n\s*")


def span_hashes(spans: pa.ListArray, norm: NormalizeConfig, cfg: SpanConfig) -> np.ndarray:
    """One uint64 per span (flattened), 0 for spans too short to ever be removed."""
    col = fold_collapse(spans.flatten(), norm)
    lengths = np.diff(col.offsets)
    h = range_hash(col, col.offsets[:-1], col.offsets[1:])
    h[h == 0] = 1  # 0 marks a span too short to remove
    h[lengths < cfg.min_chars] = 0
    return h


def doc_span_pairs(spans: pa.ListArray, hashes: np.ndarray, ords: np.ndarray) -> pa.Table:
    """Distinct (ord, span hash) pairs: each document counts once per span."""
    doc = np.repeat(ords, np.diff(spans.offsets.to_numpy()))
    keep = hashes != 0
    pairs = np.unique(np.stack([doc[keep], hashes[keep].view(np.int64)]), axis=1)
    return pa.table({"ord": pairs[0], "h": pairs[1].view(np.uint64)})


def strip(texts: list[str], spans: pa.ListArray, hashes: np.ndarray, frequent: np.ndarray, cfg: SpanConfig):
    """Texts without their frequent spans; also (spans removed, characters removed) per text."""
    drop = np.isin(hashes, frequent) & (hashes != 0)
    offs = spans.offsets.to_numpy()
    sep = SEPARATOR[cfg.unit]
    out, n_spans, n_chars = [], np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
    for i, text in enumerate(texts):
        d = drop[offs[i] : offs[i + 1]]
        if not d.any():
            out.append(text)
            continue
        parts = spans[i].values.to_pylist()
        kept = [p for p, x in zip(parts, d, strict=True) if not x]
        new = sep.join(kept).strip("\n")
        out.append(new)
        n_spans[i] = int(d.sum())
        n_chars[i] = len(text) - len(new)
    return out, n_spans, n_chars
