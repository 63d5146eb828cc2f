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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import Field

from ..dataset import Dataset
from ..errors import ConfigError
from ..hashing import sha256_bytes, sha256_file
from .batch import TextBatch, per_doc, ratio
from .columns import f32
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal

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
        for file in files:
            texts += pq.read_table(file, columns=["text"]).column("text").to_pylist()
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


def target_digest(spec: str) -> str:
    """What the target sample holds: a dataset's fingerprint, else the sha256 of its file(s)."""
    p = Path(spec)
    if p.is_dir():
        try:
            return Dataset(p).fingerprint
        except FileNotFoundError:
            return sha256_bytes("\n".join(sha256_file(f) for f in sorted(p.glob("*.parquet"))).encode())
    if p.is_file():
        return sha256_file(p)
    raise ConfigError(f"annotate.domain_target {spec!r} does not exist")


def fit(cfg: Any, corpus: Dataset) -> np.ndarray:
    """Log importance weights per hashed n-gram bucket: target sample vs the input corpus."""
    target = np.zeros(cfg.domain_buckets)
    texts = read_texts(cfg.domain_target or "")
    for start in range(0, len(texts), cfg.batch_rows):
        target += counts(TextBatch(texts[start : start + cfg.batch_rows]), cfg.domain_buckets)
    general = np.zeros(cfg.domain_buckets)
    paths = corpus.shard_paths()
    per_shard = max(1, cfg.domain_background_docs // max(1, len(paths)))
    for p in paths:  # the first rows of every shard: a deterministic, spread-out sample
        seen = 0
        for batch in pq.ParquetFile(p).iter_batches(batch_size=cfg.batch_rows, columns=["text"]):
            batch = batch.slice(0, per_shard - seen)
            general += counts(TextBatch(batch.column(0)), cfg.domain_buckets)
            seen += batch.num_rows
            if seen >= per_shard:
                break
    return log_weights(target, general)


# -- rules -----------------------------------------------------------------------------------------------
class DomainRules(RuleSetConfig):
    keep_top_fraction: float | None = Field(
        None, description="Keep this fraction of documents with the best domain_score"
    )
    min_score: float | None = Field(None, description="Minimum domain_score (mean log importance weight)")


def top_fraction_cutoff(scores: np.ndarray, fraction: float) -> float:
    """The lowest score among the best ``fraction`` of documents (ties are all kept)."""
    valid = np.sort(scores[~np.isnan(scores)])[::-1]
    if len(valid) == 0 or fraction >= 1:
        return float("-inf")
    k = max(1, int(np.ceil(fraction * len(valid))))
    return float(valid[k - 1])


def scores(data: Dataset) -> np.ndarray | None:
    """Every document's domain_score in the annotated dataset (None when it has none)."""
    if "domain_score" not in data.schema.names:
        return None
    parts = [
        pq.read_table(p, columns=["domain_score"]).column(0).to_numpy(zero_copy_only=False)
        for p in data.shard_paths()
    ]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def prepare_rules(c: DomainRules, data: Dataset) -> dict[str, Any]:
    if c.keep_top_fraction is None:
        return {}
    s = scores(data)
    return {} if s is None else {"domain_cutoff": top_fraction_cutoff(s, c.keep_top_fraction)}


def rules(c: DomainRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("domain")
    r.add("keep_top_fraction", "domain_score", "min", facts.get("domain_cutoff"))
    r.add("min_score", "domain_score", "min", c.min_score)
    return r.rules


SIGNAL = Signal(
    name="domain",
    version="2",  # 2: words split as spaCy's English tokenizer does
    columns=COLUMNS,
    compute=lambda b, cfg, weights: signals(b, weights),
    settings={
        "domain_target": (
            str | None,
            Field(
                None,
                description="Target-domain sample: a JSONL/text/Parquet file or a dataset directory; "
                "enables domain_score",
            ),
        ),
        "domain_buckets": (int, Field(1 << 16, description="Hashed n-gram buckets of the domain-fit model")),
        "domain_background_docs": (
            int,
            Field(20_000, description="Input documents sampled as the general-corpus model"),
        ),
    },
    enabled=lambda cfg: bool(cfg.domain_target),
    rule_sets=(RuleSet("domain", DomainRules, rules, prepare=prepare_rules),),
    prepare=fit,
    identity=lambda cfg: {"domain_target": target_digest(cfg.domain_target)},
)
