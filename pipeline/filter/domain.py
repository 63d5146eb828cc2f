"""Domain fit in the style of DSIR (Xie et al. 2023, "Data Selection for Language Models via
Importance Resampling"): how much more likely a document's words are under a target-domain
model than under a model of the general corpus.

Both models are bags of hashed word unigrams and bigrams (``buckets`` hash buckets, add-one
smoothing). The target model is fitted on a small sample (any JSONL/text/Parquet file or
dataset); the general model on up to ``background_docs`` documents of the input itself.
``domain_score`` is the mean log importance weight per n-gram, log p_target - log p_general,
so it does not grow with length: above 0 reads as "more like the target than the corpus is".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from ..errors import ConfigError
from .batch import TextBatch, per_doc, ratio
from .columns import f32

COLUMNS = [
    f32("domain_score", "mean log importance weight of the document's word n-grams, target vs corpus (DSIR)")
]
_WORD = r"[\pL\pN]"  # only tokens holding a letter or digit are features


def features(b: TextBatch, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(document index, bucket) of every hashed unigram and bigram of lowercased word tokens."""
    lower = b.lower_words
    keep = pc.match_substring_regex(lower, _WORD).to_numpy(zero_copy_only=False)
    words = lower.filter(pa.array(keep))
    doc = b.words.doc[keep]
    encoded = pc.dictionary_encode(words)
    # Hash each distinct word once (stable across batches and runs), then combine for bigrams.
    vocab = encoded.dictionary.to_pylist()
    word_hash = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in vocab), np.uint64, len(vocab))
    h = word_hash[encoded.indices.to_numpy(zero_copy_only=False)] if len(words) else np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        bigram = h[:-1] * np.uint64(0x9E3779B97F4A7C15) + h[1:]
    same = doc[:-1] == doc[1:]
    hashes = np.concatenate([h, bigram[same]])
    docs = np.concatenate([doc, doc[:-1][same]])
    return docs, (hashes % np.uint64(buckets)).astype(np.int64)


def counts(b: TextBatch, buckets: int) -> np.ndarray:
    _, bucket = features(b, buckets)
    return np.bincount(bucket, minlength=buckets).astype(np.float64)


def log_weights(target: np.ndarray, general: np.ndarray) -> np.ndarray:
    """log p_target(bucket) - log p_general(bucket), both add-one smoothed."""
    p = (target + 1) / (target.sum() + len(target))
    q = (general + 1) / (general.sum() + len(general))
    return np.log(p) - np.log(q)


def signals(b: TextBatch, weights: np.ndarray) -> dict[str, np.ndarray]:
    doc, bucket = features(b, len(weights))
    return {"domain_score": ratio(per_doc(doc, weights[bucket], b.n), per_doc(doc, None, b.n))}


def read_texts(spec: str, limit: int = 100_000) -> list[str]:
    """Texts of a target sample: a dataset directory, a Parquet, JSONL (``text`` field) or text file."""
    path = Path(spec)
    if path.is_dir():
        files = sorted((path / "data").glob("*.parquet")) or sorted(path.glob("*.parquet"))
        texts: list[str] = []
        for f in files:
            texts += pq.read_table(f, columns=["text"]).column("text").to_pylist()
        return texts[:limit]
    if not path.is_file():
        raise ConfigError(f"domain_target {spec!r} is neither a file nor a dataset directory")
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=["text"]).column("text").to_pylist()[:limit]
    if path.suffix in (".jsonl", ".json"):
        out = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    if isinstance(rec.get("text"), str):
                        out.append(rec["text"])
                if len(out) >= limit:
                    break
        return out
    return [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()][:limit]
