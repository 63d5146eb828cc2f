"""A batch of documents split once into words, lines and paragraphs, shared by all signals.

Every signal is computed for a whole batch at a time with Arrow compute kernels and numpy over
flat arrays of pieces (one row per word, line or paragraph, with the index of its document), so
the cost per word is in C, not in a Python loop. Per-document results come back with
:func:`per_doc`, a weighted ``bincount`` over the pieces' document indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .text import Split, split_texts

# RE2 for "a character str.isspace() rejects": RE2's \s alone is ASCII-only.
NOT_SPACE = r"[^\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]"


@dataclass
class Pieces:
    """Pieces of every document in a batch, flat, with the document index of each.

    With ``by_value``, per-piece string functions (``lengths``, ``matches``) run once per
    distinct piece and are spread back by id: words repeat, so that is several times less work.
    """

    values: pa.Array  # string pieces
    doc: np.ndarray  # int64 document index of each piece
    n_docs: int
    by_value: bool = False
    encoded: pa.DictionaryArray | None = None  # the values dictionary-encoded, if known

    @cached_property
    def _encoded(self) -> pa.DictionaryArray:
        return self.encoded if self.encoded is not None else pc.dictionary_encode(self.values)

    @cached_property
    def lengths(self) -> np.ndarray:
        return self._apply(pc.utf8_length).astype(np.int64)

    @cached_property
    def ids(self) -> np.ndarray:
        """An id per distinct piece string (equal strings share an id)."""
        return self._encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    @property
    def count(self) -> np.ndarray:
        return per_doc(self.doc, None, self.n_docs)

    def where(self, mask: np.ndarray, with_ids: bool = False) -> Pieces:
        """The pieces in ``mask``; they keep the ids (``with_ids``: computed for all pieces once,
        then shared by every subset) and lengths already computed for them."""
        keep = pa.array(mask)
        encoded = None
        if with_ids or self.encoded is not None or "_encoded" in self.__dict__:
            encoded = pa.DictionaryArray.from_arrays(
                self._encoded.indices.filter(keep), self._encoded.dictionary
            )
        out = Pieces(self.values.filter(keep), self.doc[mask], self.n_docs, encoded=encoded)
        if "lengths" in self.__dict__:
            out.__dict__["lengths"] = self.lengths[mask]
        return out

    def matches(self, re2_pattern: str, ignore_case: bool = False) -> np.ndarray:
        return self._apply(lambda v: pc.match_substring_regex(v, re2_pattern, ignore_case=ignore_case))

    def _apply(self, fn) -> np.ndarray:
        if self.by_value:
            return fn(self._encoded.dictionary).to_numpy(zero_copy_only=False)[self.ids]
        return fn(self.values).to_numpy(zero_copy_only=False)

    def repeated(self) -> np.ndarray:
        """True for each piece equal to an earlier piece of the same document."""
        if len(self.doc) == 0:
            return np.zeros(0, dtype=bool)
        key = self.doc * (int(self.ids.max()) + 1) + self.ids
        # Arrow numbers distinct keys in order of first appearance (a hash, no sort): a piece is
        # a first occurrence where its number exceeds every number before it. Checked, with
        # sorting as the fallback.
        number = pc.dictionary_encode(pa.array(key)).indices.to_numpy(zero_copy_only=False)
        first = np.ones(len(key), dtype=bool)
        first[1:] = number[1:] > np.maximum.accumulate(number)[:-1]
        if not np.array_equal(number[first], np.arange(np.count_nonzero(first))):
            first[:] = False
            first[np.unique(key, return_index=True)[1]] = True
        return ~first


def per_doc(doc: np.ndarray, weights: np.ndarray | None, n_docs: int) -> np.ndarray:
    """Sum ``weights`` (or count pieces) per document."""
    return np.bincount(doc, weights=weights, minlength=n_docs)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float, NaN where den is 0 (the signal is undefined, stored as null)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _split(texts: pa.Array, pattern: str, regex: bool) -> Pieces:
    lists = pc.split_pattern_regex(texts, pattern) if regex else pc.split_pattern(texts, pattern)
    return Pieces(
        pc.list_flatten(lists),
        pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64),
        len(texts),
    )


class TextBatch:
    """Documents of one batch and their lazily computed splits."""

    def __init__(self, texts: pa.Array | list[str], chunk_cache: dict[str, list[str]] | None = None):
        # chunk -> tokens for chunks the word splitter handles in Python, shared by every split
        # of this batch (its lines, then C4's lines rewritten), and by the batches of a shard
        # if the caller passes one
        self.chunk_cache: dict[str, list[str]] = {} if chunk_cache is None else chunk_cache
        self._counts: dict[str, np.ndarray] = {}  # substring -> occurrences in each text
        if not isinstance(texts, pa.Array | pa.ChunkedArray):
            texts = pa.array(texts, pa.large_string())
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        self.texts = texts.cast(pa.large_string())
        self.n = len(self.texts)

    @cached_property
    def pylist(self) -> list[str]:
        return self.texts.to_pylist()

    @cached_property
    def chars(self) -> np.ndarray:
        return pc.utf8_length(self.texts).to_numpy(zero_copy_only=False).astype(np.int64)

    def count(self, substring: str) -> np.ndarray:
        """Non-overlapping occurrences of ``substring`` in each text (``str.count``), found in the
        texts' UTF-8 bytes, where an encoded string matches exactly where the string does: a
        numpy comparison for one byte or a run of one character, else Python's substring search
        (several times quicker than Arrow's kernel), neither building a string per text."""
        if substring not in self._counts:
            self._counts[substring] = _count_bytes(self._utf8, substring.encode(), lambda: self._raw)
        return self._counts[substring]

    def holding(self, needles: tuple[str, ...], lower: bool = False) -> np.ndarray:
        """Which texts hold one of ``needles`` (with ``lower``, once lowercased by Arrow): each
        match found in the texts' bytes, then the search goes on from the end of its text."""
        offsets = (self._lower_utf8 if lower else self._utf8)[1]
        raw, base = self._lower_raw if lower else self._raw
        out = np.zeros(self.n, dtype=bool)
        end = len(raw)
        for needle in needles:
            encoded = needle.encode()
            at = raw.find(encoded)
            while at >= 0:
                doc = int(np.searchsorted(offsets, base + at, side="right")) - 1
                nxt = int(offsets[doc + 1]) - base
                if at + len(encoded) <= nxt:  # not across the end of the text
                    out[doc] = True
                else:
                    nxt = at + 1
                at = raw.find(encoded, nxt, end)
        return out

    @cached_property
    def spaced_docs(self) -> np.ndarray:
        """Texts that may hold, within a line, whitespace other than one plain space (which the
        word splitter makes a token: two spaces, a tab, a no-break space...): see spaced_texts."""
        return spaced_texts(self.texts)

    @cached_property
    def _utf8(self) -> tuple[np.ndarray, np.ndarray]:
        return _utf8(self.texts)

    @cached_property
    def _lower_utf8(self) -> tuple[np.ndarray, np.ndarray]:
        return _utf8(pc.utf8_lower(self.texts))

    # The same as one ``bytes`` each (see _bytes), made once for every search of the batch.
    @cached_property
    def _raw(self) -> tuple[bytes, int]:
        return _bytes(*self._utf8)

    @cached_property
    def _lower_raw(self) -> tuple[bytes, int]:
        return _bytes(*self._lower_utf8)

    @cached_property
    def line_split(self) -> Split:
        """Tokens of every line of :attr:`lines` (`pipeline.filter.text.split_texts`). A token
        never spans a newline, so a document's tokens are its lines' tokens, in order."""
        return split_texts(self.lines.values, self.chunk_cache)

    @cached_property
    def words(self) -> Pieces:
        """Tokens of every document, the unit of every word count."""
        s = self.line_split
        encoded = s.encoded  # the signals read words by id: no string per word is built
        return Pieces(encoded, np.repeat(self.lines.doc, s.counts), self.n, by_value=True, encoded=encoded)

    @cached_property
    def lower_words(self) -> pa.Array:
        encoded = self.words._encoded  # lowercase each distinct word once
        return pc.utf8_lower(encoded.dictionary).take(encoded.indices)

    @cached_property
    def word_offsets(self) -> np.ndarray:
        """Start of each document's words in the flat word arrays (n + 1 entries)."""
        return np.concatenate([[0], np.cumsum(self.words.count)]).astype(np.int64)

    @cached_property
    def lines(self) -> Pieces:
        """``text.split("\\n")``: every line, empty ones included."""
        return _split(self.texts, "\n", regex=False)

    @cached_property
    def text_line_mask(self) -> np.ndarray:
        """Which of :attr:`lines` are :attr:`text_lines` (all but an empty piece after a final newline)."""
        lines = self.lines
        last = np.ones(len(lines.doc), dtype=bool)
        last[:-1] = lines.doc[1:] != lines.doc[:-1]
        return ~(last & (lines.lengths == 0))

    @cached_property
    def text_lines(self) -> Pieces:
        """``str.splitlines()``: as :attr:`lines`, without the empty piece after a final newline."""
        return self.lines.where(self.text_line_mask)

    @cached_property
    def nonempty_lines(self) -> Pieces:
        """Lines holding more than whitespace."""
        lines = self.lines
        return lines.where(lines.matches(NOT_SPACE), with_ids=True)

    @cached_property
    def line_runs(self) -> Pieces:
        """Pieces between runs of newlines (Gopher's line unit): the lines less the empty ones
        between two newlines (``re.split("\\n+", text)``)."""
        lines = self.lines
        edge = np.ones(len(lines.doc), dtype=bool)
        edge[1:-1] = (lines.doc[1:-1] != lines.doc[:-2]) | (lines.doc[1:-1] != lines.doc[2:])
        return lines.where((lines.lengths > 0) | edge, with_ids=True)

    @cached_property
    def paragraphs(self) -> Pieces:
        """Pieces of the stripped text between blank lines (Gopher's paragraph unit)."""
        return _split(pc.utf8_trim_whitespace(self.texts), r"\n{2,}", regex=True)


# Whitespace (NOT_SPACE's complement) but the newline and the plain space: ASCII bytes, and the
# UTF-8 bytes of the others (U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
# U+205F, U+3000) as a lead byte and the bytes allowed after it. A test checks every code point.
_ASCII_SPACE_BYTES = np.array([0x09, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F], dtype=np.uint8)
_SPACE_CHAR_BYTES = (
    (0xC2, [0x85, 0xA0]),
    (0xE1, [0x9A], [0x80]),
    (0xE2, [0x80], [*range(0x80, 0x8B), 0xA8, 0xA9, 0xAF]),
    (0xE2, [0x81], [0x9F]),
    (0xE3, [0x80], [0x80]),
)
# The same as lookup tables by byte value (one gather over the bytes, not a pass per value).
_IS_ASCII_SPACE = np.isin(np.arange(256), _ASCII_SPACE_BYTES)
_IS_SPACE_LEAD = np.isin(np.arange(256), [lead for lead, *_ in _SPACE_CHAR_BYTES])


def spaced_texts(texts: pa.Array) -> np.ndarray:
    """Which of ``texts`` (large_string) may hold whitespace other than one plain space, from
    their bytes: every such character but the newline, and two plain spaces in a row."""
    data, offsets = _utf8(texts)
    lo, hi = int(offsets[0]), int(offsets[-1])
    d = data[lo:hi]
    hit = _IS_ASCII_SPACE[d]
    hit[:-1] |= (d[:-1] == 0x20) & (d[1:] == 0x20)
    leads = np.flatnonzero(_IS_SPACE_LEAD[d])
    for lead, *rest in _SPACE_CHAR_BYTES:  # the others, by their UTF-8 bytes
        at = leads[(d[leads] == lead) & (leads < len(d) - len(rest))]
        for k, allowed in enumerate(rest, 1):
            at = at[np.isin(d[at + k], allowed)]
        hit[at] = True
    out = np.zeros(len(texts), dtype=bool)
    out[np.searchsorted(offsets, lo + np.flatnonzero(hit), side="right") - 1] = True
    return out


def _utf8(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A large_string array's bytes (its whole data buffer) and each text's start in them (n + 1)."""
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets


def _bytes(data: np.ndarray, offsets: np.ndarray) -> tuple[bytes, int]:
    """The texts' bytes as one ``bytes``, and where that starts in ``data``."""
    lo = int(offsets[0])
    return data[lo : int(offsets[-1])].tobytes(), lo


def _count_bytes(
    utf8: tuple[np.ndarray, np.ndarray], needle: bytes, raw: Callable[[], tuple[bytes, int]] | None = None
) -> np.ndarray:
    """Non-overlapping occurrences of ``needle`` (UTF-8) in each text of ``utf8`` (see _utf8);
    ``raw`` gives those bytes as one ``bytes`` (see _bytes), if already made."""
    data, offsets = utf8
    n = len(offsets) - 1
    k = len(needle)
    if n == 0 or k == 0:
        return np.zeros(n, dtype=np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if needle == needle[:1] * k:  # one byte, or a run of it ("..."): whole runs of it, k at a time
        at = lo + np.flatnonzero(data[lo:hi] == needle[0])
        doc = np.searchsorted(offsets, at, side="right") - 1
        if k == 1:
            return np.bincount(doc, minlength=n).astype(np.int64)
        start = np.ones(len(at), dtype=bool)
        start[1:] = (at[1:] != at[:-1] + 1) | (doc[1:] != doc[:-1])
        first = np.flatnonzero(start)
        runs = np.diff(np.append(first, len(at)))
        return np.bincount(doc[first], weights=runs // k, minlength=n).astype(np.int64)
    raw_bytes, base = raw() if raw is not None else _bytes(data, offsets)
    bounds = (offsets - base).tolist()
    return np.fromiter((raw_bytes.count(needle, a, b) for a, b in pairwise(bounds)), np.int64, n)


def term_hits(b: TextBatch, terms: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(token position, index into ``terms``) of every occurrence of a one- or two-word term.

    Tokens are lowercased; a two-word term matches two consecutive tokens of one document.
    """
    lower = b.lower_words
    value_set = pa.array(terms, pa.large_string())
    uni = pc.index_in(lower, value_set=value_set)
    pos = [np.flatnonzero(uni.is_valid().to_numpy(zero_copy_only=False))]
    idx = [uni.drop_null().to_numpy()]
    if any(" " in t for t in terms) and len(lower) > 1:
        pairs = pc.binary_join_element_wise(
            lower.slice(0, len(lower) - 1), lower.slice(1), pa.scalar(" ", pa.large_string())
        )
        same_doc = b.words.doc[:-1] == b.words.doc[1:]
        bi = pc.index_in(pairs, value_set=value_set)
        hit = bi.is_valid().to_numpy(zero_copy_only=False) & same_doc
        pos.append(np.flatnonzero(hit))
        idx.append(bi.to_numpy(zero_copy_only=False)[hit].astype(np.int64))
    return np.concatenate(pos).astype(np.int64), np.concatenate(idx).astype(np.int64)
