"""Hashed word n-grams: the evaluation index, and the search of document batches against it.

Texts are folded and split into words exactly as dedup does (`pipeline.dedup.normalize`) and
each word is hashed from the UTF-8 buffer (`pipeline.dedup.minhash.word_hashes`). The hash of
the L words starting at word i is a polynomial over the word hashes, read from one prefix sum
per batch: ``(P[i+L] - P[i]) * B**-i`` (mod 2**64) with ``P[k] = sum(w[j] * B**j, j < k)``, so a
batch of documents costs one cumulative sum plus three array operations per n-gram length,
whatever the length. No n-gram is ever a Python string.

The index holds, sorted by key, one entry per n-gram of every evaluation text (its set, text
and word position) plus the word hashes of every evaluation text. A key found in a document is
verified word by word against the evaluation text it names before the document is rejected, so
a 64-bit key collision never rejects anything. Memory: 32 bytes per index entry, 8 per
evaluation word, and per batch a few arrays of 8 bytes per document word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..dedup.config import NormalizeConfig
from ..dedup.minhash import _powers, mix64, word_hashes
from ..dedup.normalize import Words, fold_words

_U64 = np.uint64
_LENGTH_SALT = 0x9E3779B97F4A7C15
_EXACT_SALT = 0xD6E8FEB86659FD93  # whole-document keys live apart from n-gram keys

# How an evaluation text is matched, by its length in words k (n: its set's n-gram length).
NGRAM, WHOLE, EXACT, NO_WORDS = 0, 1, 2, 3
MATCH_KINDS = ("ngram", "whole_text", "exact_document", "no_words")


def text_words(texts: pa.Array, norm: NormalizeConfig) -> tuple[Words, np.ndarray]:
    """The folded words of each text and their 64-bit hashes (document order)."""
    words = fold_words(texts, norm)
    return words, word_hashes(words) if words.starts.size else np.zeros(0, dtype=np.uint64)


def span_keys(hashes: np.ndarray, starts: np.ndarray, length: int, exact: bool = False) -> np.ndarray:
    """The key of the ``length`` words starting at each of ``starts`` (indices into ``hashes``)."""
    n = hashes.size
    pw, ipw = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.multiply(hashes, pw[:n], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    return _keys(prefix, ipw, starts, length, exact)


def _keys(prefix: np.ndarray, ipw: np.ndarray, starts: np.ndarray, length: int, exact: bool) -> np.ndarray:
    h = (np.take(prefix, starts + length) - np.take(prefix, starts)) * np.take(ipw, starts)
    salt = (length * _LENGTH_SALT) ^ (_EXACT_SALT if exact else 0)
    h ^= _U64(salt & 0xFFFFFFFFFFFFFFFF)  # the length is part of the key
    return mix64(h)


@dataclass
class EvalIndex:
    """Every evaluation n-gram, sorted by key, and the words to verify a match against."""

    keys: np.ndarray  # uint64, sorted
    text: np.ndarray  # int64: which evaluation text (row of ``ids``)
    pos: np.ndarray  # int32: the n-gram's first word in that text
    length: np.ndarray  # int32: words in the n-gram
    kind: np.ndarray  # int8: NGRAM, WHOLE or EXACT (a whole-document key: the text is under min_words)
    words: np.ndarray  # uint64: every evaluation text's word hashes, concatenated
    bounds: np.ndarray  # int64: text t's words are words[bounds[t]:bounds[t+1]]
    set_of: np.ndarray  # int32: the eval set of each text
    ids: list[str]  # the id of each evaluation text
    sets: list[str]  # eval set names, in priority order

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        texts: list[tuple[int, str, str]],
        sets: list[str],
        n_of: list[int],
        min_words: int,
        norm: NormalizeConfig,
    ) -> tuple[EvalIndex, list[dict[str, int]]]:
        """Index ``(set, id, text)`` triples; ``n_of[s]`` is set s's n-gram length.

        Also returns, per set: its texts, how many are matched by n-gram, whole (under n words) or
        as an exact document (under min_words), how many have no word at all, and the index entries.
        """
        counts: list[dict[str, Any]] = [{} for _ in sets]
        set_of = np.array([s for s, _, _ in texts], dtype=np.int32)
        words, hashes = text_words(pa.array([t for _, _, t in texts], pa.large_string()), norm)
        bounds = words.bounds.astype(np.int64)
        k = np.diff(bounds)
        n = np.array(n_of, dtype=np.int64)[set_of] if len(texts) else np.zeros(0, dtype=np.int64)
        kind = np.where(k >= n, NGRAM, np.where(k >= np.minimum(min_words, n), WHOLE, EXACT))
        kind[k == 0] = NO_WORDS
        parts: list[tuple[np.ndarray, ...]] = []
        # One entry per n-gram of each long text: texts grouped by their n.
        for length in np.unique(n[kind == NGRAM]).tolist():
            sel = np.flatnonzero((kind == NGRAM) & (n == length))
            per = k[sel] - length + 1
            text = np.repeat(sel, per)
            pos = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
            parts.append((text, pos, np.full(text.size, length), np.full(text.size, NGRAM)))
        for want in (WHOLE, EXACT):
            sel = np.flatnonzero(kind == want)
            parts.append((sel, np.zeros(sel.size, np.int64), k[sel], np.full(sel.size, want)))
        text, pos, length, entry_kind = (np.concatenate([p[i] for p in parts]) for i in range(4))
        keys = np.zeros(text.size, dtype=np.uint64)
        for L in np.unique(length).tolist():
            for ex in (False, True):
                sel = np.flatnonzero((length == L) & ((entry_kind == EXACT) == ex))
                if sel.size:
                    keys[sel] = span_keys(hashes, bounds[text[sel]] + pos[sel], L, ex)
        # Sorted by key, then by set priority, text and position: the first entry of a key is the
        # one a match is attributed to.
        order = np.lexsort((pos, text, set_of[text] if text.size else text, keys))
        per_set = (
            np.bincount(set_of[text], minlength=len(sets)) if text.size else np.zeros(len(sets), np.int64)
        )
        for s in range(len(sets)):
            mine = set_of == s
            by_kind = {name: int((mine & (kind == kd)).sum()) for kd, name in enumerate(MATCH_KINDS)}
            counts[s] = {
                "texts": int(mine.sum()),
                "matched_by": {name: by_kind[name] for name in MATCH_KINDS[:3]},
                "no_words": by_kind["no_words"],
                "ngrams_indexed": int(per_set[s]),
            }
        index = cls(
            keys=keys[order],
            text=text[order].astype(np.int64),
            pos=pos[order].astype(np.int32),
            length=length[order].astype(np.int32),
            kind=entry_kind[order].astype(np.int8),
            words=hashes,
            bounds=bounds,
            set_of=set_of,
            ids=[i for _, i, _ in texts],
            sets=list(sets),
        )
        return index, counts

    # -- storage (units of work may run in other processes) -----------------------------------------
    _ARRAYS = ("keys", "text", "pos", "length", "kind", "words", "bounds", "set_of")

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "index.npz", **{k: getattr(self, k) for k in self._ARRAYS})
        (directory / "names.json").write_text(json.dumps({"ids": self.ids, "sets": self.sets}))

    @classmethod
    def load(cls, directory: Path) -> EvalIndex:
        names = json.loads((directory / "names.json").read_text())
        with np.load(directory / "index.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in cls._ARRAYS}
        return cls(ids=names["ids"], sets=names["sets"], **arrays)

    @property
    def lengths(self) -> list[int]:
        """The n-gram lengths a document is searched with."""
        return np.unique(self.length[self.kind != EXACT]).tolist()

    @property
    def exact_lengths(self) -> list[int]:
        """The document lengths (in words) searched whole, for texts under min_words."""
        return np.unique(self.length[self.kind == EXACT]).tolist()


@dataclass
class Match:
    """The first verified overlap of one document with the evaluation texts."""

    doc: int  # row in the batch
    entry: int  # index entry matched
    start: int  # first matching word (index into the batch's words)
    sets: frozenset[int]  # every eval set this document overlaps


def search(index: EvalIndex, words: Words, hashes: np.ndarray) -> list[Match]:
    """The documents of a batch that overlap an evaluation text, each with its attribution.

    A document is attributed to the highest-priority eval set it overlaps, and within it to its
    earliest verified n-gram.
    """
    if not index.keys.size or not hashes.size:
        return []
    n = hashes.size
    pw, ipw = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.multiply(hashes, pw[:n], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    bounds = words.bounds
    doc_of = np.repeat(np.arange(len(words)), np.diff(bounds))
    found_doc, found_entry, found_start = [], [], []

    def lookup(starts: np.ndarray, length: int, exact: bool) -> None:
        if not starts.size:
            return
        keys = _keys(prefix, ipw, starts, length, exact)
        at = np.searchsorted(index.keys, keys)
        hit = at < index.keys.size
        hit[hit] = index.keys[at[hit]] == keys[hit]
        if hit.any():
            found_doc.append(doc_of[starts[hit]])
            found_entry.append(at[hit])
            found_start.append(starts[hit])

    for length in index.lengths:
        if length > n:
            continue
        starts = np.arange(n - length + 1)
        lookup(starts[doc_of[starts] == doc_of[starts + length - 1]], length, False)
    sizes = np.diff(bounds)
    for length in index.exact_lengths:
        lookup(bounds[:-1][sizes == length], length, True)
    if not found_doc:
        return []
    doc, entry, start = np.concatenate(found_doc), np.concatenate(found_entry), np.concatenate(found_start)
    # Every index entry sharing the key is a candidate (one n-gram in several eval texts).
    more_doc, more_entry, more_start = [doc], [entry], [start]
    nxt = entry + 1
    while True:
        same = nxt < index.keys.size
        same[same] = index.keys[np.minimum(nxt[same], index.keys.size - 1)] == index.keys[entry[same]]
        if not same.any():
            break
        more_doc.append(doc[same])
        more_entry.append(nxt[same])
        more_start.append(start[same])
        doc, entry, start, nxt = doc[same], entry[same], start[same], nxt[same] + 1
    doc, entry, start = np.concatenate(more_doc), np.concatenate(more_entry), np.concatenate(more_start)
    order = np.lexsort((start, index.set_of[index.text[entry]], doc))
    matches: list[Match] = []
    sets: set[int] = set()
    current, chosen = -1, None
    for d, e, s in zip(doc[order].tolist(), entry[order].tolist(), start[order].tolist(), strict=True):
        if d != current:
            if chosen is not None:
                matches.append(Match(current, chosen[0], chosen[1], frozenset(sets)))
            current, chosen, sets = d, None, set()
        if not _verified(index, hashes, e, s):
            continue
        sets.add(int(index.set_of[index.text[e]]))
        if chosen is None:
            chosen = (e, s)
    if chosen is not None:
        matches.append(Match(current, chosen[0], chosen[1], frozenset(sets)))
    return matches


def _verified(index: EvalIndex, hashes: np.ndarray, entry: int, start: int) -> bool:
    """The document's words equal the evaluation text's (not just a 64-bit key collision)."""
    t, length = int(index.text[entry]), int(index.length[entry])
    lo = int(index.bounds[t]) + int(index.pos[entry])
    return bool(np.array_equal(hashes[start : start + length], index.words[lo : lo + length]))


def span_text(words: Words, start: int, length: int) -> str:
    """The folded words ``start .. start + length - 1`` of a batch, joined by spaces."""
    buf = words.buf
    parts = [
        buf[a:b].tobytes()
        for a, b in zip(
            words.starts[start : start + length].tolist(),
            words.stops[start : start + length].tolist(),
            strict=True,
        )
    ]
    return b" ".join(parts).decode("utf-8", errors="replace")
