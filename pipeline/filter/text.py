"""Splitting a batch of texts into words and lines into sentences, as datatrove's filters count them.

Words are the tokens of spaCy's English tokenizer (rules in `pipeline.filter.english`), without
the whitespace tokens; one splitter serves every signal so that "a word" means the same thing in
Gopher, C4, FineWeb, toxicity and bias columns. Sentences are those of spaCy's rule-based
sentencizer over the same tokens.

Fast path for a whole batch: Arrow splits the texts at whitespace into chunks and the chunks are
dictionary-encoded, so each distinct chunk is split once. A chunk of letters, marks and digits
(most of them) is one token unless it is a special case (``cannot``, ``dont``) or ends in a unit
after a digit (``10km``); one such chunk with a single opening and/or closing mark (``(word``,
``word,``, ``"word."``) is those two or three tokens; both are decided by Arrow kernels. The other
distinct chunks (URLs, contractions, numbers with separators, code) go through
:func:`pipeline.filter.english.split_chunk`, and the pieces are put back in order with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import english
from .english import SENTENCE_FINAL, SPECIAL, split_chunk

# Sentence terminals as datatrove's TERMINAL_PUNCTUATION lists them (Unicode's Sentence_Terminal
# of its time plus three Khmer signs): FineWeb's "line ends in punctuation" and part of Gopher's
# symbol set.
TERMINAL_PUNCT = "".join(
    chr(c)
    for c in english._codes(
        "0021 002E 003F 0589 061D-061F 06D4 0700-0702 07F9 0837 0839 083D-083E 0964-0965 104A-104B "
        "1362 1367-1368 166E 1735-1736 17D4-17D6 17D9-17DA 1803 1809 1944-1945 1AA8-1AAB 1B5A-1B5B "
        "1B5E-1B5F 1B7D-1B7E 1C3B-1C3C 1C7E-1C7F 203C-203D 2047-2049 2E2E 2E3C 2E53-2E54 3002 A4FF "
        "A60E-A60F A6F3 A6F7 A876-A877 A8CE-A8CF A92F A9C8-A9C9 AA5D-AA5F AAF0-AAF1 ABEB FE52 "
        "FE56-FE57 FF01 FF0E FF1F FF61 10A56-10A57 10F55-10F59 10F86-10F89 11047-11048 110BE-110C1 "
        "11141-11143 111C5-111C6 111CD 111DE-111DF 11238-11239 1123B-1123C 112A9 1144B-1144C "
        "115C2-115C3 115C9-115D7 11641-11642 1173C-1173E 11944 11946 11A42-11A43 11A9B-11A9C "
        "11C41-11C42 11EF7-11EF8 11F43-11F44 16A6E-16A6F 16AF5 16B37-16B38 16B44 16E98 1BC9F 1DA88"
    )
)


def re2_class(chars: str) -> str:
    """An RE2 (Arrow) character class matching exactly ``chars``."""
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set(chars))) + "]"


TERMINAL_PUNCT_RE2 = re2_class(TERMINAL_PUNCT)
# What str.isspace() accepts (Arrow's whitespace split agrees); RE2's \s alone is ASCII-only.
SPACE_RE2 = r"[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]"
# A whitespace run other than one plain space: the tokenizer makes it a token of its own.
SPACE_TOKEN_RE2 = (
    SPACE_RE2 + r"{2,}|[\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)
SPACE_MARK = "\x00"  # stands for such a run while counting sentences

# Arrow forms of the fast paths. PLAIN: letters, marks and digits only (no affix or infix can
# apply). UNIT_END: a digit then a unit at the end ("10km"), which the tokenizer splits off.
PLAIN = r"^[\pL\pM\pN]+$"
UNIT_END = "[0-9](?:" + "|".join(u.replace("/", "\\/") for u in english.UNITS) + ")$"
_LEADS = "".join(
    c for c in "§%=—–" + english.PUNCT + english.QUOTES + "".join(x for x in english.CURRENCY if len(x) == 1)
)
_TRAILS = english.PUNCT + english.QUOTES + "—–"
WRAPPED = "^" + re2_class(_LEADS) + r"?[\pL\pM\pN]+" + re2_class(_TRAILS + ".") + "?$"
# A period after these (or after two uppercase letters) is split off ("word." -> "word", ".").
_PERIOD_AFTER = english.re.compile(f"[{english._PERIOD_AFTER}]")
_UPPER = english.re.compile(f"[{english.UPPER}]")
_SPECIAL_KEYS = pa.array(sorted(SPECIAL), pa.large_string())


def _bool(a: pa.Array) -> np.ndarray:
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False)


def _chunk_tokens(
    chunks: pa.Array, cache: dict[str, list[str]] | None
) -> tuple[pa.Array, np.ndarray]:
    """Tokens of each distinct chunk, flat, and the number of tokens of each chunk."""
    n = len(chunks)
    if n == 0:
        return pa.array([], pa.large_string()), np.zeros(0, dtype=np.int64)
    special = _bool(pc.is_in(chunks, value_set=_SPECIAL_KEYS))
    plain = _bool(pc.match_substring_regex(chunks, PLAIN))
    unit = plain & _bool(pc.match_substring_regex(chunks, UNIT_END))
    simple = plain & ~special & ~unit
    # Wrapped: one opening and/or closing mark around a simple core, in no special case.
    cand = np.flatnonzero(~plain & ~special & _bool(pc.match_substring_regex(chunks, WRAPPED)))
    wrapped = np.zeros(n, dtype=bool)
    lead = core = trail = pa.array([], pa.large_string())
    has_lead = has_trail = np.zeros(0, dtype=bool)
    split_period = np.zeros(0, dtype=bool)
    if len(cand):
        c = chunks.take(pa.array(cand))
        first = pc.utf8_slice_codeunits(c, 0, 1)
        last = pc.utf8_slice_codeunits(c, -1)
        has_lead = _bool(pc.is_in(first, value_set=pa.array(list(_LEADS), pa.large_string())))
        has_lead &= ~_bool(pc.match_substring_regex(first, PLAIN))
        has_trail = _bool(pc.is_in(last, value_set=pa.array(list(_TRAILS + "."), pa.large_string())))
        has_trail &= ~_bool(pc.match_substring_regex(last, PLAIN))
        core = pc.utf8_slice_codeunits(c, 0, 1 << 30)
        core = pc.if_else(pa.array(has_lead), pc.utf8_slice_codeunits(c, 1, 1 << 30), core)
        core = pc.if_else(pa.array(has_trail), pc.utf8_slice_codeunits(core, 0, -1), core)
        empty = pa.scalar("", pa.large_string())
        lead = pc.if_else(pa.array(has_lead), first, empty)
        trail = pc.if_else(pa.array(has_trail), last, empty)
        core_ok = _bool(pc.match_substring_regex(core, PLAIN))
        core_ok &= ~_bool(pc.is_in(core, value_set=_SPECIAL_KEYS))
        core_ok &= ~_bool(pc.match_substring_regex(core, UNIT_END))
        # Without its opening mark, or without its closing mark, it must not be a special case.
        no_lead = pc.binary_join_element_wise(core, trail, empty)
        no_trail = pc.binary_join_element_wise(lead, core, empty)
        core_ok &= ~(has_lead & _bool(pc.is_in(no_lead, value_set=_SPECIAL_KEYS)))
        core_ok &= ~(has_trail & _bool(pc.is_in(no_trail, value_set=_SPECIAL_KEYS)))
        keep = np.flatnonzero(core_ok)
        cand = cand[keep]
        wrapped[cand] = True
        take = pa.array(keep)
        lead, core, trail = lead.take(take), core.take(take), trail.take(take)
        has_lead, has_trail = has_lead[keep], has_trail[keep]
        # A final period is split off after a lowercase letter, digit or mark (see english.SUFFIX_RE).
        period = _bool(pc.equal(trail, "."))
        split_period = np.ones(len(keep), dtype=bool)
        if period.any():
            ends = pc.utf8_slice_codeunits(core.filter(pa.array(period)), -2).to_pylist()
            split_period[period] = [
                bool(_PERIOD_AFTER.match(e[-1])) or (len(e) == 2 and all(_UPPER.match(ch) for ch in e))
                for e in ends
            ]
        # No split: the core keeps its period ("J.") and the trail goes.
        merged = ~split_period
        if merged.any():
            joined = pc.binary_join_element_wise(core, trail, pa.scalar("", pa.large_string()))
            core = pc.if_else(pa.array(merged), joined, core)
            has_trail = has_trail & split_period
    other = np.flatnonzero(~simple & ~wrapped)
    pieces: list[str] = []
    per_other = np.zeros(len(other), dtype=np.int64)
    if len(other):
        cache = {} if cache is None else cache
        for k, chunk in enumerate(chunks.take(pa.array(other)).to_pylist()):
            toks = cache.get(chunk)
            if toks is None:
                toks = cache[chunk] = split_chunk(chunk)
            pieces += toks
            per_other[k] = len(toks)
    # Tokens per chunk and, for each output token, where it comes from in `source`.
    per_chunk = np.ones(n, dtype=np.int64)
    per_chunk[wrapped] = 1 + has_lead + has_trail
    per_chunk[other] = per_other
    start = np.concatenate([[0], np.cumsum(per_chunk)[:-1]]).astype(np.int64)
    base_lead = n
    base_core = base_lead + len(lead)
    base_trail = base_core + len(core)
    base_pieces = base_trail + len(trail)
    index = np.empty(int(per_chunk.sum()), dtype=np.int64)
    index[start[simple]] = np.flatnonzero(simple)
    w_start = start[cand] if len(cand) else np.zeros(0, dtype=np.int64)
    index[w_start[has_lead]] = base_lead + np.flatnonzero(has_lead)
    index[w_start + has_lead] = base_core + np.arange(len(cand))
    index[(w_start + has_lead + 1)[has_trail]] = base_trail + np.flatnonzero(has_trail)
    if len(other):
        o_start = np.repeat(start[other] - np.concatenate([[0], np.cumsum(per_other)[:-1]]), per_other)
        index[o_start + np.arange(len(pieces))] = base_pieces + np.arange(len(pieces))
    source = pa.concat_arrays(
        [chunks, lead.cast(pa.large_string()), core.cast(pa.large_string()), trail.cast(pa.large_string()),
         pa.array(pieces, pa.large_string())]
    )  # fmt: skip
    return source.take(pa.array(index)), per_chunk


@dataclass
class Split:
    """Texts split into tokens: every token, flat and in order; tokens and chunks (maximal runs
    of non-whitespace characters) per text."""

    tokens: pa.Array
    counts: np.ndarray
    chunks: np.ndarray


def split_texts(texts: pa.Array, cache: dict[str, list[str]] | None = None) -> Split:
    """The tokens of every text. ``cache`` (chunk -> tokens) may be shared between calls on
    related texts, e.g. a batch's lines and some of them rewritten."""
    texts = texts.cast(pa.large_string())
    chunks = pc.utf8_split_whitespace(texts)
    per_text = pc.list_value_length(chunks).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(chunks)
    chunk_doc = np.repeat(np.arange(len(texts), dtype=np.int64), per_text)
    encoded = pc.dictionary_encode(flat)
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    tokens, per_unique = _chunk_tokens(encoded.dictionary.cast(pa.large_string()), cache)
    # Expand: occurrence j of chunk ids[j] takes that chunk's tokens.
    first = np.concatenate([[0], np.cumsum(per_unique)[:-1]]).astype(np.int64)
    per_occurrence = per_unique[ids]
    total = int(per_occurrence.sum())
    occ_start = np.concatenate([[0], np.cumsum(per_occurrence)[:-1]]).astype(np.int64)
    index = np.repeat(first[ids] - occ_start, per_occurrence) + np.arange(total, dtype=np.int64)
    counts = np.bincount(chunk_doc, weights=per_occurrence, minlength=len(texts)).astype(np.int64)
    return Split(tokens.take(pa.array(index)), counts, per_text)


def word_lists(texts: pa.Array, cache: dict[str, list[str]] | None = None) -> tuple[pa.Array, np.ndarray]:
    """Every token of every text, flat and in order, and the number of tokens of each text."""
    s = split_texts(texts, cache)
    return s.tokens, s.counts


def split_words(text: str) -> list[str]:
    """The tokens of one text (words, numbers, URLs and single punctuation marks)."""
    return word_lists(pa.array([text], pa.large_string()))[0].to_pylist()


_S, _T, _O = 0, 1, 2  # sentence roles: starts a sentence after a final mark / final mark / other


# Where a line's own tokens may not give its sentences: a whitespace token (see sentence_counts)
# just before punctuation, which a final mark may precede and which then starts a sentence.
SPACE_TOKEN_BEFORE_PUNCT_RE2 = f"(?:{SPACE_TOKEN_RE2})" + r"\p{P}"


def sentence_counts(
    lines: pa.Array, cache: dict[str, list[str]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sentences, words) in each line, as spaCy's sentencizer and tokenizer count them.

    A sentence starts at the first token after a final mark (a token that is exactly ``.``,
    ``!``, ``?`` or a counterpart in another script) that is not punctuation; whitespace runs
    other than a single space are tokens too (not punctuation, not words), so they can start one.
    """
    marked = pc.replace_substring_regex(lines.cast(pa.large_string()), SPACE_TOKEN_RE2, f" {SPACE_MARK} ")
    s = split_texts(marked, cache)
    marks = pc.equal(s.tokens, SPACE_MARK).to_numpy(zero_copy_only=False)
    line = np.repeat(np.arange(len(lines), dtype=np.int64), s.counts)
    words = s.counts - np.bincount(line[marks], minlength=len(lines))
    return count_sentences(s.tokens, s.counts), words


def count_sentences(tokens: pa.Array, counts: np.ndarray) -> np.ndarray:
    """Sentences in each of ``len(counts)`` lines whose tokens are ``tokens`` (flat, in order)."""
    n = len(counts)
    if len(tokens) == 0:
        return np.zeros(n, dtype=np.int64)
    encoded = pc.dictionary_encode(tokens)
    values = encoded.dictionary
    role = np.full(len(values), _S, dtype=np.int8)
    role[_bool(pc.match_substring_regex(values, r"^\p{P}+$"))] = _O
    role[_bool(pc.is_in(values, value_set=pa.array(sorted(SENTENCE_FINAL), values.type)))] = _T
    role = role[encoded.indices.to_numpy(zero_copy_only=False)]
    line = np.repeat(np.arange(n, dtype=np.int64), counts)
    cum_final = np.cumsum(role == _T)
    starts = np.flatnonzero(role == _S)
    # Final marks since the previous starter of the same line (or since the line began).
    line_first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    before_line = np.where(line_first > 0, cum_final[np.maximum(line_first - 1, 0)], 0)
    prev = np.concatenate([[-1], starts[:-1]])
    same_line = (prev >= 0) & (line[np.maximum(prev, 0)] == line[starts])
    base = np.where(same_line, cum_final[np.maximum(prev, 0)], before_line[line[starts]])
    boundary = cum_final[starts] > base
    out = np.bincount(line[starts[boundary]], minlength=n) + (counts > 0)
    return out.astype(np.int64)
