"""Folding text for comparison, vectorized over an Arrow array of documents.

Two documents are exact duplicates when their folded texts are equal: case, punctuation and
whitespace differences do not count (each configurable, see NormalizeConfig). Case and Unicode
folding run in Arrow compute kernels; separators (ASCII by a byte table, other characters by
their Unicode class, looked up once per distinct code point) and their collapsing run in numpy
over the UTF-8 bytes, so no Python loop touches a character.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import NormalizeConfig

SPACE = 0x20
# Byte classes for collapsing: ASCII whitespace always separates words; ASCII punctuation and
# symbols too when punctuation is folded (done here in numpy, far cheaper than a regex).
_SEPARATORS = np.zeros(256, dtype=bool)
_SEPARATORS[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True
_SEPARATORS_PUNCT = _SEPARATORS.copy()
_SEPARATORS_PUNCT[[ord(c) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]] = True
_SEPARATOR_BYTES = _SEPARATORS.astype(np.uint8).tobytes()
_SEPARATOR_BYTES_PUNCT = _SEPARATORS_PUNCT.astype(np.uint8).tobytes()
# Non-ASCII separators: punctuation, symbols and spaces, or spaces only. RE2's Unicode tables
# (Arrow's regex engine) decide, so the classes match Arrow's, not the Python build's.
_NON_ASCII_PUNCT = r"^[\p{P}\p{S}\p{Z}]$"
_NON_ASCII_SPACE = r"^\p{Z}$"
_CODE_POINTS = 0x110000
_KNOWN: dict[bool, np.ndarray] = {}  # punctuation -> per code point: -1 not looked up, 0 or 1


def _code_point_classes(cps: np.ndarray, punctuation: bool) -> np.ndarray:
    """1 where a (non-ASCII) code point separates words, else 0; code points not seen before in
    this process are classified in one regex call and remembered."""
    known = _KNOWN.get(punctuation)
    if known is None:
        known = np.full(_CODE_POINTS, -1, dtype=np.int8)
        known[0xD800:0xE000] = 0  # surrogates: only ill-formed UTF-8 decodes to them
        _KNOWN[punctuation] = known
    cls = known[cps]
    if (cls < 0).any():
        new = np.unique(cps[cls < 0])
        chars = pa.array([chr(c) for c in new.tolist()], pa.large_string())
        hit = pc.match_substring_regex(chars, _NON_ASCII_PUNCT if punctuation else _NON_ASCII_SPACE)
        known[new] = np.asarray(hit, dtype=np.int8)
        cls = known[cps]
    return cls


def _mark_non_ascii(raw: np.ndarray, sep: np.ndarray, punctuation: bool) -> None:
    """Set `sep` on every byte of each non-ASCII separator character of the UTF-8 buffer."""
    lead = np.flatnonzero(raw >= 0xC0)
    if not lead.size:
        return
    last = raw.size - 1  # clipped reads past a short character's end are never selected below
    b0, b1, b2, b3 = (raw[np.minimum(lead + k, last)].astype(np.int32) for k in range(4))
    b1, b2, b3 = b1 & 0x3F, b2 & 0x3F, b3 & 0x3F
    width = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
    cp = np.where(
        width == 2,
        (b0 & 0x1F) << 6 | b1,
        np.where(width == 3, (b0 & 0x0F) << 12 | b1 << 6 | b2, (b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3),
    )
    hit = _code_point_classes(np.minimum(cp, _CODE_POINTS - 1), punctuation) == 1  # clip ill-formed
    lead, width = lead[hit], width[hit]
    for k in range(4):
        sep[lead[width > k] + k] = True


def fold(texts: pa.Array, cfg: NormalizeConfig) -> pa.Array:
    """Case, Unicode form and digits folded; punctuation and spaces are left to :func:`split_words`."""
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    if cfg.nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    if cfg.lowercase:
        texts = pc.utf8_lower(texts)
    if cfg.digits:
        texts = pc.replace_substring_regex(texts, r"\p{Nd}", "0")
    return texts


@dataclass
class Collapsed:
    """Folded documents as one UTF-8 byte buffer: single spaces, no leading or trailing space."""

    buf: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(docs) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc_bytes(self, i: int) -> bytes:
        return self.buf[self.offsets[i] : self.offsets[i + 1]].tobytes()


@dataclass
class Words:
    """Folded documents as one UTF-8 byte buffer, separators left in place, and the byte range of
    every word (a maximal run of non-separator bytes inside one document), in document order."""

    buf: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(docs) + 1: each document's bytes
    sep: np.ndarray  # bool per byte: part of a separator
    starts: np.ndarray  # int64 first byte of each word
    stops: np.ndarray  # int64 one past its last byte
    bounds: np.ndarray  # int64, len(docs) + 1: each document's words are starts[bounds[i]:bounds[i+1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def collapse(self) -> Collapsed:
        """The words of each document joined by single spaces."""
        keep = ~self.sep
        # A word followed by another of its document keeps one separator byte, as the space.
        joined = np.ones(self.starts.size, dtype=bool)
        joined[self.bounds[1:][self.bounds[1:] > 0] - 1] = False
        spaces = self.stops[joined]
        keep[spaces] = True
        out = self.buf.copy()
        out[spaces] = SPACE
        letters = np.concatenate(([0], np.cumsum(self.stops - self.starts)))[self.bounds]
        n_words = np.diff(self.bounds)
        sizes = np.diff(letters) + np.maximum(n_words - 1, 0)
        return Collapsed(out[keep], np.concatenate(([0], np.cumsum(sizes))).astype(np.int64))


def _buffer(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes and offsets (from 0) of a large_string array, without copying."""
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    texts = texts.fill_null("")
    n_docs = len(texts)
    offs = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + n_docs + 1]
    raw = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]]
    return raw, offs - offs[0]


def split_words(folded: pa.Array, punctuation: bool = True) -> Words:
    """Separator bytes and word ranges of folded texts, in numpy.

    Separators: whitespace always; punctuation and symbols too when `punctuation`."""
    raw, offs = _buffer(folded)
    n = raw.size
    # One byte-table pass in C (bytes.translate: twice as fast as numpy's take), writable.
    table = _SEPARATOR_BYTES_PUNCT if punctuation else _SEPARATOR_BYTES
    sep = np.frombuffer(bytearray(raw).translate(table), dtype=bool)
    _mark_non_ascii(raw, sep, punctuation)
    solid = ~sep
    heads, tails = offs[:-1][offs[:-1] < n], offs[1:][offs[1:] > 0]
    # A word starts at a solid byte after a separator or at its document's start ...
    first = solid.copy()
    first[1:] &= sep[:-1]
    first[heads] = solid[heads]
    # ... and stops before a separator or at its document's end.
    last = np.zeros(n + 1, dtype=bool)
    last[1:] = solid
    last[1:n] &= sep[1:]
    last[tails] = solid[tails - 1]
    starts = np.flatnonzero(first)
    return Words(raw, offs, sep, starts, np.flatnonzero(last), np.searchsorted(starts, offs))


def collapse(folded: pa.Array, punctuation: bool = True) -> Collapsed:
    """Every run of separators becomes one space, and each document is trimmed."""
    return split_words(folded, punctuation).collapse()


def fold_words(texts: pa.Array, cfg: NormalizeConfig) -> Words:
    """The words of each text's comparison form."""
    return split_words(fold(texts, cfg), cfg.punctuation)


def fold_collapse(texts: pa.Array, cfg: NormalizeConfig) -> Collapsed:
    """The comparison form of each text: folded, then collapsed."""
    return collapse(fold(texts, cfg), cfg.punctuation)
