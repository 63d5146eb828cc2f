"""The quality classifier's models: a linear model on hashed word n-grams, or a ready fastText model.

:class:`HashedLinear` is logistic regression over the averaged bag of hashed token unigrams
and bigrams (:func:`features`), the function class of fastText's supervised classifier on two
labels (an average of n-gram vectors into a linear layer is linear in the averaged bag)
without its factorisation: one weight per hash bucket. It is trained with AdaGrad on mini-batches, shuffled with a
seed, so the same documents give the same weights. Measured against fastText itself in
`benchmarks/quality_classifier.py` (README, Performance).

:class:`FastTextModel` scores with a ready fastText model file (``.bin`` or ``.ftz``, such as
DCLM's ``openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin``) through the ``fasttext``
module of ``fasttext-predict``: the probability of one label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import xxhash

from .batch import TextBatch

MODEL_FILE = "model.npz"
MIX = np.uint64(0x9E3779B97F4A7C15)  # combines two word hashes into a bigram's
END_OF_DOCUMENT = xxhash.xxh3_64_intdigest(b"</s>")


def features(b: TextBatch, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(document index, bucket) of every feature of a batch of documents.

    The features are fastText's: every lowercase token (words and punctuation, as
    `pipeline.filter.text` splits them), every bigram of neighbouring tokens, and one
    end-of-document token per document. Averaged over the document, that last one weighs
    1/(tokens + 1): how long the document is, which tells a lot about quality (measured in
    benchmarks/quality_classifier.py: without it, AUC 0.84 instead of 0.89 on the built-in corpus).
    """
    lower = b.lower_words
    doc = b.words.doc
    encoded = pc.dictionary_encode(lower)
    vocab = encoded.dictionary.to_pylist()
    # Each distinct token is hashed once (stable across batches, runs and machines).
    word_hash = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in vocab), np.uint64, len(vocab))
    h = word_hash[encoded.indices.to_numpy(zero_copy_only=False)] if len(lower) else np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        bigram = h[:-1] * MIX + h[1:]
    same = doc[:-1] == doc[1:]
    hashes = np.concatenate([h, bigram[same], np.full(b.n, END_OF_DOCUMENT, np.uint64)])
    docs = np.concatenate([doc, doc[:-1][same], np.arange(b.n)])
    return docs.astype(np.int64), (hashes % np.uint64(buckets)).astype(np.int64)


@dataclass(frozen=True)
class Features:
    """Hashed n-gram features of many documents, grouped by document (CSR layout)."""

    indptr: np.ndarray  # int64, documents + 1: features of document i are [indptr[i], indptr[i+1])
    buckets: np.ndarray  # int32 bucket of each feature

    @property
    def n_docs(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def of_texts(cls, texts: list[str], buckets: int, batch_docs: int = 1_024) -> Features:
        counts, parts = [], []
        for start in range(0, len(texts), batch_docs):
            chunk = texts[start : start + batch_docs]
            doc, bucket = features(TextBatch(chunk), buckets)
            order = np.argsort(doc, kind="stable")
            parts.append(bucket[order].astype(np.int32))
            counts.append(np.bincount(doc, minlength=len(chunk)))
        n = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
        return cls(indptr, np.concatenate(parts) if parts else np.zeros(0, np.int32))

    def take(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``docs`` of each feature, bucket) for the documents ``docs``."""
        starts, stops = self.indptr[docs], self.indptr[docs + 1]
        lengths = stops - starts
        total = int(lengths.sum())
        owner = np.repeat(np.arange(len(docs)), lengths)
        first = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return owner, self.buckets[first + np.arange(total)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@dataclass
class HashedLinear:
    """P(positive | text) = sigmoid(mean of the text's n-gram weights + bias)."""

    weights: np.ndarray  # float32, one per hash bucket
    bias: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def buckets(self) -> int:
        return len(self.weights)

    def logits(self, owner: np.ndarray, bucket: np.ndarray, n_docs: int) -> np.ndarray:
        n = np.bincount(owner, minlength=n_docs)
        s = np.bincount(owner, weights=self.weights[bucket], minlength=n_docs)
        return s / np.maximum(n, 1) + self.bias

    def score_batch(self, b: TextBatch) -> np.ndarray:
        """The positive-class probability of every document of a batch (0.5 for one with no words)."""
        doc, bucket = features(b, self.buckets)
        return _sigmoid(self.logits(doc, bucket, b.n))

    def score_texts(self, texts: list[str]) -> np.ndarray:
        return self.score_batch(TextBatch(texts)) if texts else np.zeros(0)

    @classmethod
    def fit(
        cls,
        x: Features,
        y: np.ndarray,
        buckets: int,
        epochs: int = 5,
        lr: float = 0.5,
        batch_docs: int = 32,
        l2: float = 1e-5,
        seed: int = 0,
        balanced: bool = True,
    ) -> HashedLinear:
        """AdaGrad on the class-balanced logistic loss, shuffled by ``seed``.

        Updates touch only the buckets a mini-batch holds (as fastText's SGD does), so a step
        costs its documents' features, not the table's size.
        """
        rng = np.random.default_rng(seed)
        w = np.zeros(buckets, np.float64)
        g2 = np.zeros(buckets, np.float64)  # AdaGrad's sums of squared gradients
        b, b2 = 0.0, 0.0
        pos = max(1, int(y.sum()))
        neg = max(1, len(y) - pos)
        class_w = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg)) if balanced else np.ones(len(y))
        for _ in range(epochs):
            order = rng.permutation(x.n_docs)
            for start in range(0, len(order), batch_docs):
                docs = order[start : start + batch_docs]
                owner, bucket = x.take(docs)
                n = np.maximum(np.bincount(owner, minlength=len(docs)), 1)
                z = np.bincount(owner, weights=w[bucket], minlength=len(docs)) / n + b
                g = (_sigmoid(z) - y[docs]) * class_w[docs] / len(docs)
                touched, inverse = np.unique(bucket, return_inverse=True)
                gw = np.bincount(inverse, weights=(g / n)[owner], minlength=len(touched)) + l2 * w[touched]
                g2[touched] += gw * gw
                w[touched] -= lr * gw / (np.sqrt(g2[touched]) + 1e-8)
                gb = float(g.sum())
                b2 += gb * gb
                b -= lr * gb / (np.sqrt(b2) + 1e-8)
        return cls(w.astype(np.float32), float(b))

    def predict_features(self, x: Features) -> np.ndarray:
        owner, bucket = x.take(np.arange(x.n_docs))
        return _sigmoid(self.logits(owner, bucket, x.n_docs))

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MODEL_FILE
        with open(path, "wb") as f:
            np.savez_compressed(
                f, weights=self.weights, bias=np.float64(self.bias), info=np.array(json.dumps(self.info))
            )
        return path

    @classmethod
    def load(cls, path: Path) -> HashedLinear:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["weights"], float(z["bias"]), json.loads(str(z["info"])))


@dataclass(frozen=True)
class FastTextModel:
    """A ready fastText classifier file; the score is the probability of ``label``."""

    path: str
    label: str

    def score_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        model = _load_fasttext(self.path)
        out = np.empty(len(texts))
        # One line per prediction (fastText splits words on whitespace anyway); fasttext-predict's
        # list form returns labels only, so texts go one by one, as language ID does.
        for i, text in enumerate(texts):
            labels, probs = model.predict(" ".join(text.split()), k=-1, threshold=0.0)
            out[i] = dict(zip(labels, probs, strict=True)).get(self.label, 0.0)
        return np.clip(out, 0.0, 1.0)  # float rounding can give 1.00001

    def score_batch(self, b: TextBatch) -> np.ndarray:
        return self.score_texts(b.texts.to_pylist())

    def labels(self) -> list[str]:
        """Every label the model knows (fasttext-predict has no label list: ask for all of them)."""
        labels, _ = _load_fasttext(self.path).predict("the", k=-1, threshold=0.0)
        return list(labels)


@lru_cache(maxsize=4)
def _load_fasttext(path: str):
    """One loaded model per process (threads share it; Dask or Ray workers load their own)."""
    import fasttext  # fasttext-predict's module: prediction only, no training

    return fasttext.load_model(path)
