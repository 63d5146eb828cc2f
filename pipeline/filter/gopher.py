"""Gopher quality and repetition signals (Rae et al. 2021, "Scaling Language Models", App. A).

Definitions follow datatrove's GopherQualityFilter and GopherRepetitionFilter so that the same
thresholds decide the same documents; thresholds live in :mod:`pipeline.filter.config`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .batch import TextBatch, per_doc, ratio
from .columns import f32, i32

# Gopher's stop words: a document of natural English holds at least two of them (case-sensitive).
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# A token made only of punctuation or these ASCII symbols is not a word (RE2 syntax).
SYMBOL_ONLY = r"^[\p{P}\p{Cc}$+<=>^`|~]+$"
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

QUALITY_COLUMNS = [
    i32("gopher_word_count", "words (tokens holding a letter, digit or non-punctuation symbol)"),
    f32("gopher_mean_word_length", "mean characters per word"),
    f32("gopher_hash_to_word_ratio", "'#' characters per token"),
    f32("gopher_ellipsis_to_word_ratio", "'...' and '…' per token"),
    f32("gopher_bullet_lines_frac", "fraction of lines starting with '•' or '-'"),
    f32("gopher_ellipsis_lines_frac", "fraction of lines ending with '...' or '…'"),
    f32("gopher_alpha_words_frac", "fraction of tokens holding at least one letter"),
    i32("gopher_stop_words_distinct", f"how many of the stop words {', '.join(STOP_WORDS)} occur"),
]
REPETITION_COLUMNS = [
    f32("gopher_dup_para_frac", "fraction of paragraphs that repeat an earlier paragraph"),
    f32("gopher_dup_para_char_frac", "characters in repeated paragraphs / characters"),
    f32("gopher_dup_line_frac", "fraction of lines that repeat an earlier line"),
    f32("gopher_dup_line_char_frac", "characters in repeated lines / characters"),
    *[
        f32(
            f"gopher_top_{n}gram_char_frac",
            f"characters of the most frequent word {n}-gram times its count / characters",
        )
        for n in TOP_NGRAMS
    ],
    *[
        f32(
            f"gopher_dup_{n}gram_char_frac",
            f"characters in repeated word {n}-grams (greedy, non-overlapping) / characters",
        )
        for n in DUP_NGRAMS
    ],
]


def quality(b: TextBatch) -> dict[str, np.ndarray]:
    w = b.words
    tokens = w.count
    is_word = ~w.matches(SYMBOL_ONLY)
    n_words = per_doc(w.doc[is_word], None, b.n)
    lines = b.text_lines
    n_lines = lines.count
    stop_index = pc.index_in(w.values, value_set=pa.array(STOP_WORDS, pa.large_string()))
    has_stop = stop_index.is_valid().to_numpy(zero_copy_only=False)
    stop_key = w.doc[has_stop] * len(STOP_WORDS) + stop_index.filter(stop_index.is_valid()).to_numpy()
    distinct_stop = per_doc(np.unique(stop_key) // len(STOP_WORDS), None, b.n)
    return {
        "gopher_word_count": n_words,
        "gopher_mean_word_length": ratio(per_doc(w.doc[is_word], w.lengths[is_word], b.n), n_words),
        "gopher_hash_to_word_ratio": ratio(b.count("#"), tokens),
        "gopher_ellipsis_to_word_ratio": ratio(b.count("...") + b.count("…"), tokens),
        "gopher_bullet_lines_frac": ratio(per_doc(lines.doc, lines.matches(r"^\s*[•-]"), b.n), n_lines),
        "gopher_ellipsis_lines_frac": ratio(
            per_doc(lines.doc, lines.matches(r"(\.\.\.|…)\s*$"), b.n), n_lines
        ),
        "gopher_alpha_words_frac": ratio(per_doc(w.doc, w.matches(r"\p{L}"), b.n), tokens),
        "gopher_stop_words_distinct": distinct_stop,
    }


def repetition(b: TextBatch) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for unit, pieces, chars in (("para", b.paragraphs, b.chars), ("line", b.line_runs, b.chars)):
        dup = pieces.repeated()
        out[f"gopher_dup_{unit}_frac"] = ratio(per_doc(pieces.doc[dup], None, b.n), pieces.count)
        out[f"gopher_dup_{unit}_char_frac"] = ratio(per_doc(pieces.doc[dup], pieces.lengths[dup], b.n), chars)
    grams = NGrams(b)
    for n in TOP_NGRAMS:
        out[f"gopher_top_{n}gram_char_frac"] = ratio(grams.top_chars(n), b.chars)
    for n in DUP_NGRAMS:
        out[f"gopher_dup_{n}gram_char_frac"] = ratio(grams.duplicated_chars(n), b.chars)
    return out


class NGrams:
    """Word n-grams of a batch as 64-bit rolling hashes over dense word ids, one row per start."""

    _MIX = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, b: TextBatch):
        self.b = b
        w = b.words
        self.ids = w.ids.astype(np.uint64) + np.uint64(1)
        self.doc = w.doc
        self.cum = np.concatenate([[0], np.cumsum(w.lengths)])
        self.local = np.arange(len(w.doc)) - b.word_offsets[w.doc]
        self.doc_words = w.count
        self._repeated: dict[int, np.ndarray] = {}
        self._found: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # keys and counts of repeated starts

    def repeated_starts(self, n: int) -> np.ndarray:
        """Start positions of n-grams that occur more than once in their document.

        An n-gram can only repeat where its first n-1 words do, so only bigrams are hashed at
        every position; each longer n is searched among the repeated starts of the level
        below, a small set in ordinary text.
        """
        if n in self._repeated:
            return self._repeated[n]
        starts = np.arange(len(self.ids)) if n == 2 else self.repeated_starts(n - 1)
        starts = starts[self.local[starts] <= self.doc_words[self.doc[starts]] - n]
        with np.errstate(over="ignore"):
            key = self.ids[starts].copy()
            for k in range(1, n):
                key = key * self._MIX + self.ids[starts + k]
            key ^= self.doc[starts].astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        count = counts[inverse]
        repeated = count > 1
        self._repeated[n] = starts[repeated]
        self._found[n] = (key[repeated], count[repeated])
        return self._repeated[n]

    def top_chars(self, n: int) -> np.ndarray:
        """Characters of the most frequent n-gram (joined by spaces) times its count, per document.

        Ties go to the n-gram seen first; with no repeated n-gram that is the document's first
        n-gram, once. Documents with fewer than n words get NaN.
        """
        out = np.full(self.b.n, np.nan)
        has = self.doc_words >= n
        first = self.b.word_offsets[:-1][has]
        out[has] = self.cum[first + n] - self.cum[first] + (n - 1)
        rep = self.repeated_starts(n)
        if len(rep) == 0:
            return out
        _, count = self._found[n]
        doc = self.doc[rep]
        best = np.zeros(self.b.n, dtype=np.int64)
        np.maximum.at(best, doc, count)
        at_best = np.flatnonzero(count == best[doc])
        docs, first_best = np.unique(doc[at_best], return_index=True)
        pick = rep[at_best[first_best]]
        out[docs] = (self.cum[pick + n] - self.cum[pick] + (n - 1)) * best[docs]
        return out

    def duplicated_chars(self, n: int) -> np.ndarray:
        """Characters of repeated n-grams, scanning left to right and jumping past each repeat.

        Only positions of n-grams that occur more than once can change the result, so the
        sequential scan visits those alone: in ordinary text, a handful per document.
        """
        out = np.zeros(self.b.n)
        rel = self.repeated_starts(n)
        if len(rel) == 0:
            return out
        key, _ = self._found[n]
        doc = self.doc[rel].tolist()
        pos = self.local[rel].tolist()
        keys = key.tolist()
        lens = (self.cum[rel + n] - self.cum[rel]).tolist()
        current, seen, next_free, total = -1, set(), 0, 0
        for d, p, k, c in zip(doc, pos, keys, lens):
            if d != current:
                if current >= 0:
                    out[current] = total
                current, seen, next_free, total = d, set(), 0, 0
            if p < next_free:
                continue
            if k in seen:
                total += c
                next_free = p + n
            else:
                seen.add(k)
        out[current] = total
        return out
