"""Splitting text into words: the unit every word count, ratio and n-gram is made of.

One word splitter serves every signal so that "a word" means the same thing in Gopher, C4,
FineWeb, toxicity and bias columns. It follows the shape of spaCy's English tokenizer (which
datatrove's filters use): a word runs from a letter or digit to the last letter or digit before
the next space, keeping inner symbols (``3.5``, ``1,000``, ``O'Neil``, ``joe@x.org``, ``f(x``)
but splitting at hyphens between words; contractions split as ``do|n't`` and ``it|'s``; URLs,
dotted abbreviations (``U.S.``) and initials (``J.``) stay whole; every other symbol is a token
of its own, except that an ellipsis or a run of dashes is one token.

Fast path for a whole batch: Arrow splits the texts on whitespace; chunks made only of letters
and digits (most of them) are tokens as they are; only the other chunks go through the token
regex, all in one ``findall`` call, and the pieces are put back in order with numpy.
"""

from __future__ import annotations

import re
import sys
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

# Unicode's Sentence_Terminal property: . ! ? and their counterparts in other scripts.
TERMINAL_PUNCT = "".join(chr(c) for c in range(sys.maxunicode + 1) if regex.match(r"\p{STerm}", chr(c)))
TERMINAL_PUNCT_CLASS = "[" + regex.escape(TERMINAL_PUNCT) + "]"  # for the `regex` module
TERMINAL_PUNCT_RE2 = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in TERMINAL_PUNCT) + "]"  # for Arrow


def _char_ranges(categories: tuple[str, ...]) -> str:
    out, start = [], None
    for c in range(sys.maxunicode + 2):
        inside = c <= sys.maxunicode and unicodedata.category(chr(c)) in categories
        if inside and start is None:
            start = c
        elif not inside and start is not None:
            out.append(re.escape(chr(start)) + ("" if c - 1 == start else "-" + re.escape(chr(c - 1))))
            start = None
    return "".join(out)


_FORMAT = _char_ranges(("Cf",))
# Characters that cannot end a word: whitespace, dashes, ASCII and general punctuation.
_NOT_LAST = r"\s\u0964\u0965!-/:-@\[-`{-~\u00a1-\u00bf\u2010-\u205e\u3000-\u303f\uff01-\uff0f\uff1a-\uff20"
_CONTRACTION = re.compile(r"(?<=\w)(n['’]t|['’](?:s|re|ve|ll|d|m))\b", re.IGNORECASE)
TOKEN_RE = re.compile(
    rf"""
    \n                                                        # chunk separator (fast path)
  | (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]'’]            # a URL, minus trailing punctuation
  | n['’]t\b | ['’](?:s|re|ve|ll|d|m)\b                        # contractions, split off beforehand
  | (?:[^\W_]\.){{2,}}                                         # U.S., e.g.
  | (?<!\w)[A-Z]\.(?!\S)                                       # an initial: J.
  | (?:[/\\{_FORMAT}]*|-(?=\d))[^\W_](?:[^\s\-…]*[^{_NOT_LAST}…])?  # a word
  | \.\.+ | … | -+                                             # an ellipsis or a dash run
  | \S                                                        # any other symbol
    """,
    re.VERBOSE | re.IGNORECASE,
)
PLAIN_CHUNK = r"^[\pL\pM\pN]+$"  # RE2: a chunk that is one token as it stands


def word_lists(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every token of every text, flat and in order, and the number of tokens of each text."""
    chunks = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(chunks)
    chunk_doc = pc.list_parent_indices(chunks).to_numpy(zero_copy_only=False)
    plain = pc.match_substring_regex(flat, PLAIN_CHUNK).to_numpy(zero_copy_only=False)
    other = np.flatnonzero(~plain)
    joined = "\n".join(flat.take(pa.array(other)).to_pylist()) + "\n" if len(other) else ""
    pieces = TOKEN_RE.findall(_CONTRACTION.sub(r" \1", joined))
    pieces = pa.array(pieces, pa.large_string())
    is_sep = pc.equal(pieces, "\n").to_numpy(zero_copy_only=False)
    sep_at = np.flatnonzero(is_sep)
    per_chunk = np.ones(len(flat), dtype=np.int64)
    per_chunk[other] = np.diff(np.concatenate([[-1], sep_at])) - 1
    start = np.concatenate([[0], np.cumsum(per_chunk)[:-1]])
    index = np.empty(int(per_chunk.sum()), dtype=np.int64)
    index[start[plain]] = np.flatnonzero(plain)
    piece_pos = np.flatnonzero(~is_sep)  # position of each real piece in `pieces`
    # piece k of other-chunk j goes to start[j] + k; its rank among real pieces is piece_pos order
    chunk_of_piece = np.searchsorted(sep_at, piece_pos)
    first_piece = np.concatenate([[0], sep_at[:-1] + 1])
    index[start[other[chunk_of_piece]] + piece_pos - first_piece[chunk_of_piece]] = len(flat) + piece_pos
    source = pa.concat_arrays([flat.cast(pa.large_string()), pieces])
    tokens = source.take(pa.array(index))
    counts = np.bincount(chunk_doc, weights=per_chunk, minlength=len(texts)).astype(np.int64)
    return tokens, counts


def split_words(text: str) -> list[str]:
    """The tokens of one text (words, numbers, URLs and single punctuation marks)."""
    return word_lists(pa.array([text], pa.large_string()))[0].to_pylist()
