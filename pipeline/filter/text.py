"""Splitting text into words: the unit every word count, ratio and n-gram is made of.

One word splitter serves every signal so that "a word" means the same thing in Gopher, C4,
FineWeb, toxicity and bias columns. It follows the shape of spaCy's English tokenizer (which
datatrove's filters use): a word runs from a letter or digit to the last letter or digit before
the next space, keeping inner symbols (``3.5``, ``1,000``, ``O'Neil``, ``joe@x.org``, ``f(x``)
but splitting at hyphens between words; contractions split as ``do|n't`` and ``it|'s``; URLs,
dotted abbreviations (``U.S.``) and initials (``J.``) stay whole; every other symbol is a token
of its own, except that an ellipsis or a run of dashes is one token.

Fast path for a whole batch: Arrow splits the texts on whitespace; chunks made only of letters
and digits (most of them) are tokens as they are, and a word with one opening and/or closing
mark (``(word``, ``word,``) is split by Arrow kernels; only the other chunks (a tenth) go through
the token regex, all in one ``findall`` call, and the pieces are put back in order with numpy.
"""

from __future__ import annotations

import re
import sys
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

# Every code point once, so that character classes are found by one C-level scan each
# (a Python loop over 1.1 M code points cost ~7 s at import, in every worker process).
_ALL_CHARS = "".join(map(chr, range(sys.maxunicode + 1)))
# Unicode's Sentence_Terminal property: . ! ? and their counterparts in other scripts.
TERMINAL_PUNCT = "".join(regex.findall(r"\p{STerm}", _ALL_CHARS))
TERMINAL_PUNCT_CLASS = "[" + regex.escape(TERMINAL_PUNCT) + "]"  # for the `regex` module
TERMINAL_PUNCT_RE2 = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in TERMINAL_PUNCT) + "]"  # for Arrow


def _char_ranges(chars: str, category: str) -> str:
    """A regex character-class body for the ``chars`` of one Unicode general category."""
    codes = [ord(c) for c in chars if unicodedata.category(c) == category]
    out, i = [], 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        first, last = chr(codes[i]), chr(codes[j])
        out.append(re.escape(first) + ("" if i == j else "-" + re.escape(last)))
        i = j + 1
    return "".join(out)


_FORMAT = _char_ranges(_ALL_CHARS, "Cf")
del _ALL_CHARS
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
# RE2 (Arrow) forms of the shortcuts. A chunk of letters and digits is one token as it stands;
# one between a single opening and a single closing mark (``(word``, ``word,``, ``"word."``) is
# those two or three tokens. Only the other chunks go through TOKEN_RE.
PLAIN_CHUNK = r"^[\pL\pM\pN]+$"
LEADS, TRAILS = '(["“', ".,;:!?)]\"'”’"
WRAPPED_CHUNK = r"^[(\[\"“]?[\pL\pN][\pL\pM\pN]*[.,;:!?)\]\"'”’]?$"
STRIP_WRAP = r"^[(\[\"“]|[.,;:!?)\]\"'”’]$"
# Chunks TOKEN_RE splits differently: an initial ("J.") and words holding a character that
# cannot end a word (superscripts, CJK marks; see _NOT_LAST).
NOT_WRAPPED = r"^[(\[\"“]?[\pL\pN]\.$|[\x{a1}-\x{bf}\x{3000}-\x{303f}]"
# _CONTRACTION without lookarounds: the letter before and the character after are kept as groups.
CONTRACTION_RE2 = r"(?i)([\pL\pN_])(n['’]t|['’](?:s|re|ve|ll|d|m))([^\pL\pN_]|$)"


def word_lists(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every token of every text, flat and in order, and the number of tokens of each text."""
    chunks = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(chunks).cast(pa.large_string())
    chunk_doc = pc.list_parent_indices(chunks).to_numpy(zero_copy_only=False)
    plain = pc.match_substring_regex(flat, PLAIN_CHUNK).to_numpy(zero_copy_only=False)
    wrapped, (lead, word, trail) = _wrapped(flat, plain)
    other = np.flatnonzero(~plain & ~wrapped)
    split = pc.replace_substring_regex(flat.take(pa.array(other)), CONTRACTION_RE2, r"\1 \2\3")
    joined = "\n".join(split.to_pylist()) + "\n" if len(other) else ""
    pieces = pa.array(TOKEN_RE.findall(joined), pa.large_string())
    is_sep = pc.equal(pieces, "\n").to_numpy(zero_copy_only=False)
    sep_at = np.flatnonzero(is_sep)
    # Tokens per chunk, and where each chunk's first token goes in the output.
    has_lead = pc.utf8_length(lead).to_numpy(zero_copy_only=False) > 0
    has_trail = pc.utf8_length(trail).to_numpy(zero_copy_only=False) > 0
    per_chunk = np.ones(len(flat), dtype=np.int64)
    per_chunk[other] = np.diff(np.concatenate([[-1], sep_at])) - 1
    w_at = np.flatnonzero(wrapped)
    per_chunk[w_at] += has_lead.astype(np.int64) + has_trail
    start = np.concatenate([[0], np.cumsum(per_chunk)[:-1]])
    # index[k] = position of output token k in `source` (flat, pieces, leads, words, trails).
    base_pieces = len(flat)
    base_lead = base_pieces + len(pieces)
    base_word, base_trail = base_lead + len(lead), base_lead + 2 * len(lead)
    index = np.empty(int(per_chunk.sum()), dtype=np.int64)
    index[start[plain]] = np.flatnonzero(plain)
    piece_pos = np.flatnonzero(~is_sep)  # position of each real piece in `pieces`
    # piece k of other-chunk j goes to start[j] + k; its rank among real pieces is piece_pos order
    chunk_of_piece = np.searchsorted(sep_at, piece_pos)
    first_piece = np.concatenate([[0], sep_at[:-1] + 1])
    index[start[other[chunk_of_piece]] + piece_pos - first_piece[chunk_of_piece]] = base_pieces + piece_pos
    w_start = start[w_at]
    index[w_start[has_lead]] = base_lead + np.flatnonzero(has_lead)
    index[w_start + has_lead] = base_word + np.arange(len(w_at))
    index[(w_start + has_lead + 1)[has_trail]] = base_trail + np.flatnonzero(has_trail)
    source = pa.concat_arrays([flat, pieces, lead, word, trail])
    tokens = source.take(pa.array(index))
    counts = np.bincount(chunk_doc, weights=per_chunk, minlength=len(texts)).astype(np.int64)
    return tokens, counts


def _wrapped(flat: pa.Array, plain: np.ndarray) -> tuple[np.ndarray, tuple[pa.Array, pa.Array, pa.Array]]:
    """Chunks that are a word with one opening and/or closing mark, and those three parts."""
    candidates = np.flatnonzero(~plain)
    chunks = flat.take(pa.array(candidates))
    ok = pc.and_not(
        pc.match_substring_regex(chunks, WRAPPED_CHUNK), pc.match_substring_regex(chunks, NOT_WRAPPED)
    )
    chunks = chunks.filter(ok)
    wrapped = np.zeros(len(flat), dtype=bool)
    wrapped[candidates[ok.to_numpy(zero_copy_only=False)]] = True
    first = pc.utf8_slice_codeunits(chunks, 0, 1)
    last = pc.utf8_slice_codeunits(chunks, -1)
    empty = pa.scalar("", pa.large_string())
    lead = pc.if_else(pc.is_in(first, value_set=pa.array(list(LEADS), pa.large_string())), first, empty)
    trail = pc.if_else(pc.is_in(last, value_set=pa.array(list(TRAILS), pa.large_string())), last, empty)
    word = pc.replace_substring_regex(chunks, STRIP_WRAP, "")
    return wrapped, (lead, word, trail)


def split_words(text: str) -> list[str]:
    """The tokens of one text (words, numbers, URLs and single punctuation marks)."""
    return word_lists(pa.array([text], pa.large_string()))[0].to_pylist()
