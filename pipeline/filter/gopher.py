"""Gopher quality and repetition signals (Rae et al. 2021, "Scaling Language Models", App. A).

Definitions follow datatrove's GopherQualityFilter and GopherRepetitionFilter so that the same
thresholds decide the same documents; the rules and their published thresholds are at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .batch import TextBatch, per_doc, ratio
from .columns import f32, i32
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal
from .text import SPACE_RE2, TERMINAL_PUNCT, re2_class

# Gopher's stop words: a document of natural English holds at least two of them (case-sensitive).
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# A token made only of these characters is not a word: datatrove's punctuation set (ASCII
# punctuation, control characters, some CJK and typographic marks, sentence terminals).
SYMBOLS = (
    "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
    + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    + "«´»–—’“”„…∶━►、。〈〉《》「」【】！％（），．１：；？～"
    + TERMINAL_PUNCT
)
SYMBOL_ONLY = "^" + re2_class(SYMBOLS) + "+$"
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


def _token_kinds(b: TextBatch) -> tuple[np.ndarray, np.ndarray]:
    """(symbols only, holds a letter) of each token, decided once per distinct token. A token of
    letters alone (Arrow's utf8_is_alpha: most of them) holds no symbol, and if it is ASCII, a
    letter; the patterns run on the others."""
    vocab = b.words._encoded.dictionary
    letters = pc.utf8_is_alpha(vocab).to_numpy(zero_copy_only=False)
    symbols = np.zeros(len(vocab), dtype=bool)
    has_letter = letters & pc.string_is_ascii(vocab).to_numpy(zero_copy_only=False)
    for out, rows, pattern in ((symbols, ~letters, SYMBOL_ONLY), (has_letter, ~has_letter, r"\p{L}")):
        at = np.flatnonzero(rows)
        if len(at):
            out[at] = pc.match_substring_regex(vocab.take(pa.array(at)), pattern).to_numpy(
                zero_copy_only=False
            )
    ids = b.words.ids
    return symbols[ids], has_letter[ids]


def quality(b: TextBatch) -> dict[str, np.ndarray]:
    w = b.words
    tokens = w.count
    symbols, has_letter = _token_kinds(b)
    is_word = ~symbols
    word_doc = w.doc[is_word]
    n_words = per_doc(word_doc, None, b.n)
    lines = b.text_lines
    n_lines = lines.count
    vocab_stop = pc.index_in(w._encoded.dictionary, value_set=pa.array(STOP_WORDS, pa.large_string()))
    stop_index = pc.fill_null(vocab_stop, -1).to_numpy(zero_copy_only=False)[w.ids]
    has_stop = stop_index >= 0
    stop_key = w.doc[has_stop] * len(STOP_WORDS) + stop_index[has_stop]
    distinct_stop = per_doc(np.unique(stop_key) // len(STOP_WORDS), None, b.n)
    return {
        "gopher_word_count": n_words,
        "gopher_mean_word_length": ratio(per_doc(word_doc, w.lengths[is_word], b.n), n_words),
        "gopher_hash_to_word_ratio": ratio(b.count("#"), tokens),
        "gopher_ellipsis_to_word_ratio": ratio(b.count("...") + b.count("…"), tokens),
        "gopher_bullet_lines_frac": ratio(
            per_doc(lines.doc, lines.matches(f"^{SPACE_RE2}*[•-]"), b.n), n_lines
        ),
        "gopher_ellipsis_lines_frac": ratio(per_doc(lines.doc, ellipsis_lines(b), b.n), n_lines),
        "gopher_alpha_words_frac": ratio(per_doc(w.doc, has_letter, b.n), tokens),
        "gopher_stop_words_distinct": distinct_stop,
    }


def ellipsis_lines(b: TextBatch) -> np.ndarray:
    """Which of ``b.text_lines`` end in an ellipsis (then whitespace): searched only in documents
    holding one."""
    lines = b.text_lines
    out = np.zeros(len(lines.doc), dtype=bool)
    docs = (b.count("...") + b.count("…")) > 0
    rows = np.flatnonzero(docs[lines.doc])
    if len(rows):
        found = pc.match_substring_regex(lines.values.take(pa.array(rows)), rf"(\.\.\.|…){SPACE_RE2}*$")
        out[rows] = found.to_numpy(zero_copy_only=False)
    return out


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


def _repeated_keys(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where ``key`` (the bigrams: keys most of which occur once) holds a value that occurs more
    than once: (those positions, an id per value there, how often it occurs).

    Keys alone in their bucket of a 64-bit multiplicative hash (four buckets per key) occur once
    and are set aside with a cheap count; only the others are hashed exactly (Arrow), which
    costs far more per key.
    """
    if len(key) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    bits = max(len(key).bit_length() + 2, 8)
    with np.errstate(over="ignore"):
        bucket = ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)).astype(np.int64)
    shared = np.flatnonzero(np.bincount(bucket, minlength=1 << bits)[bucket] > 1)
    inverse = pc.dictionary_encode(pa.array(key[shared])).indices.to_numpy(zero_copy_only=False)
    count = np.bincount(inverse)[inverse]
    repeated = count > 1
    return shared[repeated], inverse[repeated], count[repeated]


class NGrams:
    """Word n-grams of a batch, one row per start: bigrams as 64-bit hashes over dense word ids,
    each longer n-gram as the pair of (n-1)-grams it is made of."""

    _MIX = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, b: TextBatch):
        self.b = b
        w = b.words
        self.ids = w.ids.astype(np.uint64) + np.uint64(1)
        self.doc = w.doc
        self.cum = np.concatenate([[0], np.cumsum(w.lengths)])
        self.local = np.arange(len(w.doc)) - b.word_offsets[w.doc]
        self.doc_words = w.count
        self.room = self.doc_words[w.doc] - self.local  # words from each position to its document's end
        self._repeated: dict[int, np.ndarray] = {}
        # of the repeated starts: which n-gram (an id, equal for equal n-grams, distinct between
        # documents) and its count
        self._found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def repeated_starts(self, n: int) -> np.ndarray:
        """Start positions of n-grams that occur more than once in their document.

        An n-gram can only repeat where its first n-1 words do and its last n-1 words do, so
        only bigrams are hashed at every position; each longer n is searched among the starts
        where the level below repeats at that position and the next, a small set in ordinary
        text. There an n-gram is the pair (id of the (n-1)-gram at the start, id of the one
        after it): an (n-1)-gram whose starts are all followed by the same one begins a single
        n-gram, which keeps its id; only the others' pairs are hashed (in a repeated passage,
        few).
        """
        if n in self._repeated:
            return self._repeated[n]
        if n == 2:
            with np.errstate(over="ignore"):
                starts = np.flatnonzero(self.room >= 2)
                rolling = self.ids[starts] * self._MIX + self.ids[starts + 1]
                key = rolling ^ (self.doc[starts].astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
            at, gram, count = _repeated_keys(key)
            self._repeated[2], self._found[2] = starts[at], (gram, count)
            return self._repeated[2]
        below = self.repeated_starts(n - 1)
        below_gram, _ = self._found[n - 1]
        if len(below) == 0:
            self._repeated[n], self._found[n] = below, self._found[n - 1]
            return below
        # The id of the (n-1)-gram at the next position, where it repeats (-1: it does not).
        after = np.full(len(self.room) + 1, -1, dtype=np.int64)
        after[below] = below_gram
        nxt = after[below + 1]
        fits = (self.room[below] >= n) & (nxt >= 0)
        starts, first, second = below[fits], below_gram[fits], nxt[fits]
        size = int(below_gram.max()) + 1
        low = np.full(size, size, dtype=np.int64)
        high = np.full(size, -1, dtype=np.int64)
        np.minimum.at(low, first, second)
        np.maximum.at(high, first, second)
        gram = first.copy()
        mixed = np.flatnonzero(low[first] != high[first])
        if len(mixed):
            pairs = pa.array(first[mixed] * size + second[mixed])
            gram[mixed] = size + pc.dictionary_encode(pairs).indices.to_numpy(zero_copy_only=False)
        count = np.bincount(gram)[gram]
        repeated = count > 1
        self._repeated[n], self._found[n] = starts[repeated], (gram[repeated], count[repeated])
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

        Only positions of n-grams that occur more than once can change the result. The first
        occurrence of an n-gram is visited (and marks it seen) unless a repeat less than n words
        before it is jumped from; a later occurrence of an n-gram whose first one is sure to be
        visited is a repeat wherever the scan visits it, so in a run of such at consecutive
        positions the scan visits every n-th, with no choice to make. The sequential scan goes
        over those runs whole and the other occurrences one by one: in ordinary text, a handful
        per document; in a repeated passage, one step for all of it.
        """
        out = np.zeros(self.b.n)
        rel = self.repeated_starts(n)
        if len(rel) == 0:
            return out
        gram, _ = self._found[n]
        # N-gram ids are distinct between documents and an n-gram never crosses a document's
        # end, so one scan over the batch's positions does for all documents.
        order = np.arange(len(gram))
        first_at = np.full(int(gram.max()) + 1, len(gram), dtype=np.int64)
        np.minimum.at(first_at, gram, order)
        first = first_at[gram] == order
        later = rel[~first]
        before = np.searchsorted(later, rel[first]) - 1
        # A first occurrence less than n words after a later occurrence (of another n-gram, in
        # the same document) may be jumped over: the scan decides it.
        open_first = (before >= 0) & (later[np.maximum(before, 0)] > rel[first] - n)
        sure = np.ones(int(gram.max()) + 1, dtype=bool)  # n-grams whose first occurrence is visited
        sure[gram[first][open_first]] = False
        scan = ~first
        scan[np.flatnonzero(first)[open_first]] = True
        pos, ids = rel[scan], gram[scan]
        simple = ~first[scan] & sure[ids]
        # Segments: runs of simple occurrences at consecutive positions, any other one alone.
        joined = np.zeros(len(pos), dtype=bool)
        joined[1:] = simple[1:] & simple[:-1] & (pos[1:] == pos[:-1] + 1)
        seg = np.flatnonzero(~joined)
        seg_end = np.append(seg[1:], len(pos)) - 1
        starts, ends = pos[seg].tolist(), pos[seg_end].tolist()
        runs, seg_ids = simple[seg].tolist(), ids[seg].tolist()
        seen = bytearray(int(gram.max()) + 1)
        dup_at, dup_count = [], []
        free = -1  # the scan's next position
        for start, stop, run, g in zip(starts, ends, runs, seg_ids):
            if stop < free:
                continue
            if run:
                at = max(start, free)
                k = (stop - at) // n + 1
                dup_at.append(at)
                dup_count.append(k)
                free = at + k * n
            elif seen[g]:
                dup_at.append(start)
                dup_count.append(1)
                free = start + n
            else:
                seen[g] = 1
        counts = np.array(dup_count, dtype=np.int64)
        at = np.repeat(np.array(dup_at, dtype=np.int64), counts)
        at += n * (np.arange(len(at)) - np.repeat(np.cumsum(counts) - counts, counts))
        return per_doc(self.doc[at], self.cum[at + n] - self.cum[at], self.b.n).astype(np.float64)


# -- rules: published defaults of Rae et al. 2021, appendix A.1.1, table A1 ------------------------
class GopherQualityRules(RuleSetConfig):
    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3
    max_mean_word_length: float | None = 10
    max_hash_to_word_ratio: float | None = 0.1
    max_ellipsis_to_word_ratio: float | None = 0.1
    max_bullet_lines_frac: float | None = 0.9
    max_ellipsis_lines_frac: float | None = 0.3
    min_alpha_words_frac: float | None = 0.8
    min_stop_words: int | None = 2


class GopherRepetitionRules(RuleSetConfig):
    max_dup_para_frac: float | None = 0.3
    max_dup_para_char_frac: float | None = 0.2
    max_dup_line_frac: float | None = 0.3
    max_dup_line_char_frac: float | None = 0.2
    max_top_ngram_char_frac: dict[int, float | None] = Field(
        default_factory=lambda: dict[int, float | None]({2: 0.2, 3: 0.18, 4: 0.16}),
        description="n -> max fraction",
    )
    max_dup_ngram_char_frac: dict[int, float | None] = Field(
        default_factory=lambda: dict[int, float | None](
            {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
        ),
        description="n -> max fraction",
    )


def quality_rules(c: GopherQualityRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("gopher_quality")
    r.add("min_words", "gopher_word_count", "min", c.min_words)
    r.add("max_words", "gopher_word_count", "max", c.max_words)
    r.add("min_mean_word_length", "gopher_mean_word_length", "min", c.min_mean_word_length)
    r.add("max_mean_word_length", "gopher_mean_word_length", "max", c.max_mean_word_length)
    r.add("max_hash_to_word_ratio", "gopher_hash_to_word_ratio", "max", c.max_hash_to_word_ratio)
    r.add("max_ellipsis_to_word_ratio", "gopher_ellipsis_to_word_ratio", "max", c.max_ellipsis_to_word_ratio)
    r.add("max_bullet_lines_frac", "gopher_bullet_lines_frac", "max", c.max_bullet_lines_frac)
    r.add("max_ellipsis_lines_frac", "gopher_ellipsis_lines_frac", "max", c.max_ellipsis_lines_frac)
    r.add("min_alpha_words_frac", "gopher_alpha_words_frac", "min", c.min_alpha_words_frac)
    r.add("min_stop_words", "gopher_stop_words_distinct", "min", c.min_stop_words)
    return r.rules


def repetition_rules(c: GopherRepetitionRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("gopher_repetition")
    for unit in ("para", "line"):
        r.add(f"max_dup_{unit}_frac", f"gopher_dup_{unit}_frac", "max", getattr(c, f"max_dup_{unit}_frac"))
        r.add(
            f"max_dup_{unit}_char_frac",
            f"gopher_dup_{unit}_char_frac",
            "max",
            getattr(c, f"max_dup_{unit}_char_frac"),
        )
    for n, v in sorted(c.max_top_ngram_char_frac.items()):
        r.add(f"max_top_{n}gram_char_frac", f"gopher_top_{n}gram_char_frac", "max", v)
    for n, v in sorted(c.max_dup_ngram_char_frac.items()):
        r.add(f"max_dup_{n}gram_char_frac", f"gopher_dup_{n}gram_char_frac", "max", v)
    return r.rules


SIGNAL = Signal(
    name="gopher",
    version="2",  # 2: words split as spaCy's English tokenizer does; datatrove's symbol set
    columns=QUALITY_COLUMNS + REPETITION_COLUMNS,
    compute=lambda b, cfg, state: {**quality(b), **repetition(b)},
    settings={"gopher": (bool, Field(True, description="Gopher quality and repetition signals (gopher_*)"))},
    # Repetition first: a repetitive page is charged to repetition, as in Gopher's own order.
    rule_sets=(
        RuleSet("gopher_repetition", GopherRepetitionRules, repetition_rules, judged_on="original"),
        RuleSet("gopher_quality", GopherQualityRules, quality_rules, judged_on="original"),
    ),
)
