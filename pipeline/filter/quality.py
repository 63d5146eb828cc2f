"""A trained quality classifier (DCLM's fastText classifier, FineWeb-Edu's classifier): ``quality_score``.

Positive documents are given as sources (``annotate.quality_positive``, the syntax of
``ingest.sources``); negatives too (``annotate.quality_negative``), or by default a random
sample of annotate's own input, as large as the positive set (DCLM trains against random web
text the same way). Texts identical to a positive are left out of the negatives. A seeded
tenth of both sets (``quality_heldout_fraction``) is held out; the model is trained on the rest
(`pipeline.filter.quality_model.HashedLinear`, logistic regression on hashed word uni- and
bigrams) and its held-out accuracy, AUC and scoring speed go into annotate's manifest
(``stats.quality``), the weights into ``quality/model.npz`` in the version.

Or ``annotate.quality_model`` names a ready fastText model file (``.bin``/``.ftz``) and
``quality_model_label`` its positive label: ``quality_score`` is that label's probability. With
positives given as well, the ready model is measured on them (and the negatives), not retrained.

The classifier is versioned by its training data: the content hashes of the positive and
negative sources (or of the input, for sampled negatives) and of a ready model file are part
of annotate's fingerprint, so new positives re-annotate and nothing upstream. Rule set
``filter.quality``: ``min_score`` (the probability of "positive") and ``keep_top_fraction``
(DCLM keeps the best-scoring 10%).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash
from pydantic import Field

from ..dataset import Dataset
from ..errors import ConfigError
from ..hashing import sha256_file
from ..ingest.config import SourceConfig
from .batch import TextBatch
from .columns import f32
from .domain import top_fraction_cutoff
from .quality_model import FastTextModel, Features, HashedLinear
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal

COLUMNS = [f32("quality_score", "probability that the document is like the positive (high-quality) set")]
REPORT_FILE = "report.json"
HOLDOUT_SEED = 0x5EED  # which documents are held out depends on their text alone


# -- training ---------------------------------------------------------------------------------
def sample_input(data: Dataset, k: int, seed: int, exclude: set[int]) -> tuple[list[str], int]:
    """A uniform sample of ``k`` input texts (smallest seeded id hash), minus texts in ``exclude``.

    Streams the input batch by batch, holding at most ``k`` candidates (bounded memory).
    Returns (texts, documents seen).
    """
    keep_h = np.zeros(0, np.uint64)
    keep_t: list[str] = []
    seen = 0
    for path in data.shard_paths():
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4_096, columns=["id", "text"]):
            ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
            seen += len(ids)
            h = np.fromiter((xxhash.xxh3_64_intdigest(i.encode(), seed) for i in ids), np.uint64, len(ids))
            pool_h = np.concatenate([keep_h, h])
            pool_t = keep_t + texts
            order = np.argsort(pool_h, kind="stable")
            chosen: list[int] = []
            for i in order:
                if len(chosen) >= k:
                    break
                if _text_hash(pool_t[i]) not in exclude:
                    chosen.append(int(i))
            keep_h = pool_h[chosen]
            keep_t = [pool_t[i] for i in chosen]
    return keep_t, seen


def _text_hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(text.split()).encode())


def held_out(texts: list[str], fraction: float) -> np.ndarray:
    """Which texts are held out for measuring the classifier: a seeded hash of the text."""
    h = np.fromiter(
        (xxhash.xxh3_64_intdigest(t.encode(), HOLDOUT_SEED) for t in texts), np.uint64, len(texts)
    )
    return h < np.uint64(int(fraction * 2.0**64))


def accuracy_and_auc(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    if len(y) == 0:
        return None, None
    acc = float(np.mean((p >= 0.5) == (y > 0)))
    pos, neg = p[y > 0], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return acc, None
    # AUC = P(score of a random positive > score of a random negative), ties counted half.
    ranks = _average_ranks(np.concatenate([pos, neg]))
    auc = (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    return acc, float(auc)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def training_sets(cfg: Any, data: Dataset) -> tuple[list[str], list[str], dict[str, Any]]:
    """(positives, negatives, what was read) for the configured sources."""
    from ..ingest.texts import read_texts

    pos = read_texts(cfg.quality_positive, cfg.quality_max_docs, cfg.quality_seed)
    names = ", ".join(s.path or s.hf_name or s.format for s in cfg.quality_positive)
    if not pos.texts:
        problems = ", ".join(f"{k} {v}" for k, v in sorted(pos.problems.items())) or "no records"
        raise ConfigError(
            f"annotate.quality_positive ({names}) holds no positive documents ({problems}): "
            "the quality classifier needs at least one"
        )
    info: dict[str, Any] = {
        "positive": {"available": pos.available, "used": len(pos.texts), "unreadable": pos.problems}
    }
    if cfg.quality_negative:
        neg = read_texts(cfg.quality_negative, cfg.quality_max_docs, cfg.quality_seed)
        negatives = neg.texts
        info["negative"] = {"available": neg.available, "used": len(negatives), "unreadable": neg.problems}
    else:
        exclude = {_text_hash(t) for t in pos.texts}
        negatives, seen = sample_input(data, len(pos.texts), cfg.quality_seed, exclude)
        info["negative"] = {"sampled_from_input": data.fingerprint, "available": seen, "used": len(negatives)}
    if not negatives:
        raise ConfigError(
            "annotate.quality_negative: no negative documents (the sources are empty, or the input has "
            "nothing but copies of the positives)"
        )
    return pos.texts, negatives, info


@dataclass(frozen=True)
class Prepared:
    """The classifier annotate scores with, and what its training and measurement found."""

    model: HashedLinear | FastTextModel
    info: dict[str, Any]


def prepare(cfg: Any, data: Dataset) -> Prepared:
    """Train the classifier (or open the ready model) and measure it on held-out documents."""
    if cfg.quality_model:
        ready = FastTextModel(str(Path(cfg.quality_model).resolve()), cfg.quality_model_label)
        labels = ready.labels()
        if cfg.quality_model_label not in labels:
            raise ConfigError(
                f"annotate.quality_model_label {cfg.quality_model_label!r} is not a label of "
                f"{cfg.quality_model} (labels: {', '.join(labels[:10])})"
            )
        info: dict[str, Any] = {"kind": "fasttext", "model": ready.path, "label": ready.label}
        if cfg.quality_positive:  # measured on the given sets, every document unseen by the model
            pos, neg, read = training_sets(cfg, data)
            info.update(read)
            info.update(_measure(ready, pos, neg))
        return Prepared(ready, info)
    pos, neg, read = training_sets(cfg, data)
    texts = pos + neg
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    test = held_out(texts, cfg.quality_heldout_fraction)
    t0 = time.perf_counter()
    x_train = Features.of_texts([t for t, h in zip(texts, test, strict=True) if not h], cfg.quality_buckets)
    model = HashedLinear.fit(
        x_train, y[~test], cfg.quality_buckets, epochs=cfg.quality_epochs, seed=cfg.quality_seed
    )
    info = {
        "kind": "hashed_linear",
        "buckets": cfg.quality_buckets,
        "epochs": cfg.quality_epochs,
        **read,
        "train_docs": int((~test).sum()),
        "train_seconds": round(time.perf_counter() - t0, 3),
    }
    info.update(
        _measure(
            model,
            [t for t, h, label in zip(texts, test, y, strict=True) if h and label],
            [t for t, h, label in zip(texts, test, y, strict=True) if h and not label],
        )
    )
    return Prepared(model, info)


def _measure(model: HashedLinear | FastTextModel, pos: list[str], neg: list[str]) -> dict[str, Any]:
    texts = pos + neg
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    t0 = time.perf_counter()
    p = model.score_texts(texts) if texts else np.zeros(0)
    seconds = time.perf_counter() - t0
    acc, auc = accuracy_and_auc(y, p)
    return {
        "heldout_docs": len(texts),
        "heldout_positive": len(pos),
        "heldout_accuracy": None if acc is None else round(acc, 4),
        "heldout_auc": None if auc is None else round(auc, 4),
        "docs_per_s": round(len(texts) / seconds, 1) if texts and seconds > 0 else None,
    }


def report(state: Prepared, directory: Path) -> dict[str, Any]:
    """Keep the trained weights in the version; the training report goes into the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    info = dict(state.info)
    if isinstance(state.model, HashedLinear):
        info["model_file"] = f"{directory.name}/{state.model.save(directory).name}"
    (directory / REPORT_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def identity(cfg: Any) -> dict[str, Any]:
    """The training data and model behind the scores: new positives re-run annotate."""
    from ..ingest.texts import sources_digest

    out: dict[str, Any] = {}
    if cfg.quality_positive:
        out["quality_positive"] = sources_digest(cfg.quality_positive)
    if cfg.quality_negative:
        out["quality_negative"] = sources_digest(cfg.quality_negative)
    if cfg.quality_model:
        p = Path(cfg.quality_model)
        if not p.is_file():
            raise ConfigError(f"annotate.quality_model {cfg.quality_model!r} is not a file")
        out["quality_model"] = sha256_file(p)
    return {"quality": out}


def compute(b: TextBatch, cfg: Any, state: Prepared) -> dict[str, np.ndarray]:
    return {"quality_score": state.model.score_batch(b)}


def enabled(cfg: Any) -> bool:
    if cfg.quality_positive is not None and not cfg.quality_positive:
        raise ConfigError("annotate.quality_positive is an empty list: give at least one positive source")
    return bool(cfg.quality_positive or cfg.quality_model)


# -- rules -----------------------------------------------------------------------------------------------
class QualityRules(RuleSetConfig):
    min_score: float | None = Field(
        None, description="Minimum quality_score, the classifier's probability of 'positive' (off by default)"
    )
    keep_top_fraction: float | None = Field(
        None, description="Keep this fraction of documents with the best quality_score (DCLM: 0.1)"
    )


def _scores(data: Dataset) -> np.ndarray | None:
    if "quality_score" not in data.schema.names:
        return None
    parts = [
        pq.read_table(p, columns=["quality_score"]).column(0).to_numpy(zero_copy_only=False)
        for p in data.shard_paths()
    ]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def prepare_rules(c: QualityRules, data: Dataset) -> dict[str, Any]:
    if c.keep_top_fraction is None:
        return {}
    s = _scores(data)
    return {} if s is None else {"quality_cutoff": top_fraction_cutoff(s, c.keep_top_fraction)}


def rules(c: QualityRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("quality")
    r.add("min_score", "quality_score", "min", c.min_score)
    r.add("keep_top_fraction", "quality_score", "min", facts.get("quality_cutoff"))
    return r.rules


SIGNAL = Signal(
    name="quality",
    version="1",
    columns=COLUMNS,
    compute=compute,
    settings={
        "quality_positive": (
            list[SourceConfig] | None,
            Field(
                None,
                description="Positive (high-quality) documents, as ingest sources; trains and enables quality_score",
            ),
        ),
        "quality_negative": (
            list[SourceConfig] | None,
            Field(
                None,
                description="Negative documents, as ingest sources; default: a random sample of the input",
            ),
        ),
        "quality_model": (
            str | None,
            Field(None, description="A ready fastText classifier (.bin/.ftz) instead of training one"),
        ),
        "quality_model_label": (
            str,
            Field("__label__hq", description="The ready model's positive label (DCLM's: __label__hq)"),
        ),
        "quality_max_docs": (
            int,
            Field(20_000, ge=1, description="Documents per class at most (a seeded uniform sample beyond)"),
        ),
        "quality_heldout_fraction": (
            float,
            Field(0.1, ge=0.0, lt=1.0, description="Share of both sets held out to measure the classifier"),
        ),
        "quality_buckets": (int, Field(1 << 18, ge=16, description="Hash buckets of word uni- and bigrams")),
        "quality_epochs": (int, Field(5, ge=1, description="Training passes over the documents")),
        "quality_seed": (int, Field(0, description="Seed of the samples and the training order")),
    },
    enabled=enabled,
    rule_sets=(RuleSet("quality", QualityRules, rules, judged_on="original", prepare=prepare_rules),),
    prepare=prepare,
    identity=identity,
    report=report,
)
