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
:func:`pipeline.filter.english.split_chunk`, and the pieces are put back in order with numpy. A
call with few distinct chunks (``PYTHON_ONLY_CHUNKS``) skips the kernels, whose fixed cost would
exceed the Python algorithm's. The tests hold the fast paths to ``split_chunk`` on every chunk of
the stress variants, and ``split_chunk`` to spaCy itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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
    """An RE2 (Arrow) character class matching exactly ``chars`` (as ranges: quicker to compile)."""
    return _re2_codes({ord(c) for c in chars})


def _re2_codes(codes: set[int]) -> str:
    """An RE2 character class matching exactly the code points ``codes``."""
    s, out, i = sorted(codes), [], 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(f"\\x{{{s[i]:x}}}" + ("" if i == j else f"-\\x{{{s[j]:x}}}"))
        i = j + 1
    return "[" + "".join(out) + "]"


TERMINAL_PUNCT_RE2 = re2_class(TERMINAL_PUNCT)
# What str.isspace() accepts (Arrow's whitespace split agrees); RE2's \s alone is ASCII-only.
SPACE_RE2 = r"[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]"
# A whitespace run other than one plain space: the tokenizer makes it a token of its own.
SPACE_TOKEN_RE2 = (
    SPACE_RE2 + r"{2,}|[\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)
SPACE_MARK = "\x00"  # stands for such a run while counting sentences
NOT_SPACE_RUN_RE2 = r"[^\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]+"

# Arrow forms of the fast paths. A plain chunk: letters and digits only (Arrow's utf8_is_alnum,
# which has no pattern to compile), no affix or infix can apply; a chunk of letters with marks
# (most Indic scripts) is not plain but shaped, which gives it the same one token. UNIT_END: a
# digit then a unit at the end ("10km"), which the tokenizer splits off.
UNIT_END = "[0-9](?:" + "|".join(u.replace("/", "\\/") for u in english.UNITS) + ")$"


# A "shaped" chunk: an optional opening mark, a core, up to two closing marks. The core is runs
# of letters, marks and digits joined by single separators, with an optional final 's. Such a
# chunk's tokens follow from a few local rules, applied by Arrow kernels (_shaped_tokens).
_SEG = r"[\pL\pM\pN]+"
_SEPS = "-,:/=<>+*^'’._"
_LEADS = "§%=—–" + english.PUNCT + english.QUOTES + "".join(c for c in english.CURRENCY if len(c) == 1)
_TRAILS = english.PUNCT + english.QUOTES + "—–."
SHAPED = f"^{re2_class(_LEADS)}{{0,2}}{_SEG}(?:{re2_class(_SEPS)}{_SEG})*{re2_class(_TRAILS)}{{0,2}}$"
# SHAPED as two patterns with the letter class once (the costly part of compiling it, which
# Arrow does on every call): the same form with an optional separator after each run, and a
# character that is no mark or separator (so a letter, mark or digit in such a chunk) before at
# most two closing marks at the end, which rules out a separator ending the core.
SHAPED_LOOSE = f"^{re2_class(_LEADS)}{{0,2}}(?:{_SEG}{re2_class(_SEPS)}?)+{re2_class(_TRAILS)}{{0,2}}$"
SHAPED_END = f"[^{re2_class(_LEADS + _SEPS + _TRAILS)[1:-1]}]{re2_class(_TRAILS)}{{0,2}}$"
_HAS_INFIX_SEP = re2_class("-+*^:/=<>,")  # the separators INFIX_SPACES can cut at
# Cores the rules below do not cover: a period with a slash (an IP address with a path is a
# URL), a period not between digits as LETTER_PERIOD says (abbreviations, URLs, "a.B" splits),
# two closing marks that are one suffix ("..", "……") or a period after a dash.
UNSHAPED_CORE = r"\..*/|/.*\."
# A period not between digits: the core is one token either way (a URL stays whole; else no
# infix cuts it) unless another separator could be an infix or a period stands before an
# uppercase letter or a quote (english.INFIX_RE), when whether it is a URL decides.
LETTER_PERIOD = r"[^0-9]\.|\.[^0-9]"
PERIOD_UNSHAPED = r"[-,:/=<>+*^]|\." + _re2_codes(english.UPPER_CODES | {ord("'"), ord("’")})
UNSHAPED_TRAIL = r"^(?:\.\.|……|[—–]\.)$"
_DIGIT, _ALPHA = "[0-9]", _re2_codes(english.ALPHA_CODES)
_ALPHA_OR_DIGIT = _re2_codes(english.ALPHA_CODES | set(range(0x30, 0x3A)))
# Infixes (english.INFIX_RE) a core can hold, as "insert spaces around the separator". A match
# consumes the characters on both sides, so it is applied twice (for "a-b-c").
INFIX_SPACES = (
    f"({_DIGIT})([-+*^])({_DIGIT})|({_ALPHA_OR_DIGIT})([-:/=<>])({_ALPHA})|({_ALPHA})(,)({_ALPHA})",
    r"\1\4\7 \2\5\8 \3\6\9",
)


def _ascii_only(pattern: str) -> str:
    """``pattern`` (PERIOD_UNSHAPED, INFIX_SPACES) for ASCII strings alone: its classes less
    their other characters, which makes it quick to compile."""
    for codes in (
        english.UPPER_CODES | {ord("'"), ord("’")},
        english.ALPHA_CODES | set(range(0x30, 0x3A)),
        english.ALPHA_CODES,
    ):
        pattern = pattern.replace(_re2_codes(codes), _re2_codes({c for c in codes if c < 128}))
    return pattern


ASCII_PERIOD_UNSHAPED = _ascii_only(PERIOD_UNSHAPED)
ASCII_INFIX_SPACES = (_ascii_only(INFIX_SPACES[0]), INFIX_SPACES[1])
# Up to this many chunks holding other characters, the patterns above are not compiled for them
# (a few tenths of a millisecond each, on every call): they go to the full algorithm instead.
FEW_NON_ASCII = 64
POSSESSIVE = r"['’][sS]$"  # the suffix 's (a core's last separator is followed by a letter)
# A unit after a digit at the end of a chunk, or before its final 's and closing marks: such a
# chunk is left to the full algorithm.
UNIT_NEAR_END = UNIT_END[:-1] + f"(?:{POSSESSIVE[:-1]})?{re2_class(_TRAILS)}{{0,2}}$"
_PERIOD_AFTER = english.re.compile(f"[{english._PERIOD_AFTER}]")
_UPPER = english.re.compile(f"[{english.UPPER}]")
_SPECIAL_KEYS = pa.array(sorted(SPECIAL), pa.large_string())
_LEAD_SET = pa.array(sorted(set(_LEADS)), pa.large_string())
_TRAIL_SET = pa.array(sorted(set(_TRAILS)), pa.large_string())
_MERGE_PAIRS = pa.array(sorted(f"{a}\x1f{b}" for a, b in english._MERGE_PAIRS), pa.large_string())


def _bool(a: pa.Array) -> np.ndarray:
    return (pc.fill_null(a, False) if a.null_count else a).to_numpy(zero_copy_only=False)


def _is_special(values: pa.Array) -> np.ndarray:
    return _bool(pc.is_in(values, value_set=_SPECIAL_KEYS))


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))


def _where(values: pa.Array, mask: np.ndarray, fn) -> pa.Array:
    """``values`` with the rows in ``mask`` replaced by ``fn`` of them (only those are computed)."""
    if not mask.any():
        return values
    changed = fn(values.filter(pa.array(mask))).cast(values.type)
    index = np.arange(len(values))
    index[mask] = len(values) + np.arange(int(mask.sum()))
    return pa.concat_arrays([values, changed]).take(pa.array(index))


def _ascii_rows(values: pa.Array, rows: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` of ``values`` split into (ASCII ones, the others); the others are left to the
    full algorithm (``good`` cleared) if there are at most FEW_NON_ASCII of them, so that the
    full pattern need not be compiled for them."""
    if len(rows) == 0:
        return rows, rows
    ascii = _bool(pc.string_is_ascii(values.take(pa.array(rows))))
    other = rows[~ascii]
    if len(other) <= FEW_NON_ASCII:
        good[other] = False
        other = other[:0]
    return rows[ascii], other


def _shaped_tokens(chunks: pa.Array, unit: np.ndarray) -> tuple[np.ndarray, pa.ListArray]:
    """Tokens of the shaped chunks among ``chunks`` (see SHAPED): (which, their token lists).

    The tokenizer peels the marks (a period only after a lowercase letter, a digit or two
    capitals), then 's, then cuts the core at its infixes. A chunk is left to the full algorithm
    when any string it passes through on the way is a special case, when the core ends in a unit,
    or when two of its tokens would merge into an affixed special case (``)`` ``:``). ``unit``:
    the chunks that may end in a unit, less the marks and 's after it (UNIT_NEAR_END).
    """
    n = len(chunks)
    ok = _bool(pc.match_substring_regex(chunks, SHAPED_LOOSE)) & ~_is_special(chunks) & ~unit
    if ok.any():
        loose = np.flatnonzero(ok)
        ok[loose] = _bool(pc.match_substring_regex(chunks.take(pa.array(loose)), SHAPED_END))
    at = np.flatnonzero(ok)
    if len(at) == 0:
        return np.zeros(n, dtype=bool), pa.array([], pa.list_(pa.large_string()))
    # The shape holds: the first one or two characters are opening marks unless they are
    # letters or digits, and the last one or two are closing marks unless they are.
    c = chunks.take(pa.array(at))
    empty = pa.scalar("", pa.large_string())

    def mark(start: int, stop: int | None, marks: pa.Array) -> np.ndarray:
        return _bool(pc.is_in(pc.utf8_slice_codeunits(c, start, stop), value_set=marks))

    n_lead = mark(0, 1, _LEAD_SET).astype(np.int64)
    n_lead += (n_lead == 1) & mark(1, 2, _LEAD_SET)
    n_trail = mark(-1, None, _TRAIL_SET).astype(np.int64)
    n_trail += (n_trail == 1) & mark(-2, -1, _TRAIL_SET)
    core = c
    for k in (1, 2):
        core = _where(core, n_lead == k, lambda v, k=k: pc.utf8_slice_codeunits(v, k, 1 << 30))
        core = _where(core, n_trail == k, lambda v, k=k: pc.utf8_slice_codeunits(v, 0, -k))

    def pick(mask: np.ndarray, start: int, stop: int | None) -> pa.Array:
        return pc.if_else(pa.array(mask), pc.utf8_slice_codeunits(c, start, stop), empty)

    l1, l2 = pick(n_lead >= 1, 0, 1), pick(n_lead == 2, 1, 2)
    t1 = pc.if_else(pa.array(n_trail == 2), pc.utf8_slice_codeunits(c, -2, -1), pick(n_trail == 1, -1, None))
    t2 = pick(n_trail == 2, -1, None)
    trail = _join(t1, t2)
    good = ~_bool(pc.match_substring_regex(core, UNSHAPED_CORE))
    dotted = _bool(pc.match_substring_regex(core, LETTER_PERIOD))
    if dotted.any():
        for pattern, rows in zip(
            (ASCII_PERIOD_UNSHAPED, PERIOD_UNSHAPED), _ascii_rows(core, np.flatnonzero(dotted), good)
        ):
            if len(rows):
                good[rows] &= ~_bool(pc.match_substring_regex(core.take(pa.array(rows)), pattern))
    good &= ~_bool(pc.match_substring_regex(trail, UNSHAPED_TRAIL))
    # No string the peeling passes through may be a special case: the chunk less at most its
    # opening marks in front and its closing marks (and a final 's) at the end, up to two
    # characters each side (a superset of those strings; longer cuts are the stem below).
    possessive = _bool(pc.match_substring_regex(core, POSSESSIVE))
    peel_back = n_trail + 2 * possessive
    # (All cuts looked up at once: one hash table of the special cases instead of one per cut.)
    reached: list[np.ndarray] = []
    cuts: list[pa.Array] = []
    for front in (0, 1, 2):
        for back in (0, 1, 2):
            reach = good & (n_lead >= front) & (peel_back >= back)
            if (front or back) and reach.any():
                reached.append(np.flatnonzero(reach))
                cuts.append(
                    pc.utf8_slice_codeunits(c.take(pa.array(reached[-1])), front, -back if back else 1 << 30)
                )
    if reached:
        cut_rows = np.concatenate(reached)
        good[cut_rows[_is_special(pa.concat_arrays([x.cast(pa.large_string()) for x in cuts]))]] = False
    # The suffix 's: what precedes it must not be special or end in another 's.
    if possessive.any():
        stem = pc.utf8_slice_codeunits(core.filter(pa.array(possessive)), 0, -2)
        good[possessive] &= ~(_is_special(stem) | _bool(pc.match_substring_regex(stem, POSSESSIVE)))
    # A first closing period splits off after a lowercase letter, digit, mark... (english.SUFFIX_RE).
    period = _bool(pc.equal(t1, "."))
    split_t1 = _bool(pc.not_equal(t1, empty))
    if period.any():
        ends = pc.utf8_slice_codeunits(core.filter(pa.array(period)), -2).to_pylist()
        split_t1[period] = [
            bool(_PERIOD_AFTER.match(e[-1])) or (len(e) == 2 and all(_UPPER.match(ch) for ch in e))
            for e in ends
        ]
    space = pa.scalar(" ", pa.large_string())
    spaced = _where(
        core,
        possessive,
        lambda v: _join(pc.utf8_slice_codeunits(v, 0, -2), space, pc.utf8_slice_codeunits(v, -2)),
    )
    # Rewritten only where an infix is found (a match alone is quicker than a rewrite, which
    # has to capture); the second pass only where the first rewrote.
    with_sep = np.flatnonzero(_bool(pc.match_substring_regex(spaced, _HAS_INFIX_SEP)))
    for infix, rows in zip((ASCII_INFIX_SPACES, INFIX_SPACES), _ascii_rows(spaced, with_sep, good)):
        for _ in range(2):
            if len(rows):
                rows = rows[_bool(pc.match_substring_regex(spaced.take(pa.array(rows)), infix[0]))]
            if len(rows):
                cut = np.zeros(len(spaced), dtype=bool)
                cut[rows] = True
                spaced = _where(spaced, cut, lambda v, infix=infix: pc.replace_substring_regex(v, *infix))
    parts = [
        _where(l1, n_lead >= 1, lambda v: _join(v, space)),
        _where(l2, n_lead >= 2, lambda v: _join(v, space)),
        spaced,
        _where(t1, split_t1, lambda v: _join(space, v)),
        _where(t2, n_trail >= 2, lambda v: _join(space, v)),
    ]
    tokens = pc.utf8_split_whitespace(_join(*parts))
    # No two neighbouring tokens may form an affixed special case.
    flat = pc.list_flatten(tokens)
    owner = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    if len(flat) > 1:
        pairs = _join(flat.slice(0, len(flat) - 1), pa.scalar("\x1f", pa.large_string()), flat.slice(1))
        hit = _bool(pc.is_in(pairs, value_set=_MERGE_PAIRS)) & (owner[:-1] == owner[1:])
        good[np.unique(owner[:-1][hit])] = False
    which = np.zeros(n, dtype=bool)
    which[at[good]] = True
    return which, tokens.filter(pa.array(good))


# A closing mark that is a suffix of one character wherever it ends a chunk (no longer suffix
# ends in it; not the period, which depends on what precedes it).
_CLOSING = pa.array(sorted(english._ONE_CHAR_SUFFIX - english._ENDS_LONGER_SUFFIX - {"."}), pa.large_string())


def _closed_tokens(chunks: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, pa.ListArray]:
    """The chunks among ``rows`` (none a special case or ending in a unit) that are letters and
    digits and then one closing mark (``word,`` ``x)``: the most common of the others, in any
    text), and their tokens: the core and the mark. Only a prefix, a suffix or an infix could
    cut such a core, and its characters hold none; the core must not be a special case. (The
    shaped path would give the same tokens, through many more kernels.)"""
    empty = pa.array([], pa.list_(pa.large_string()))
    if len(rows) == 0:
        return rows, empty
    c = chunks.take(pa.array(rows))
    at = np.flatnonzero(_bool(pc.is_in(pc.utf8_slice_codeunits(c, -1), value_set=_CLOSING)))
    if len(at) == 0:
        return rows[:0], empty
    c = c.take(pa.array(at))
    core = pc.utf8_slice_codeunits(c, 0, -1)
    good = _bool(pc.utf8_is_alnum(core)) & ~_is_special(core)
    c, core = c.filter(pa.array(good)), core.filter(pa.array(good))
    k = len(c)
    # [core 0, mark 0, core 1, mark 1, ...] from [cores..., marks...]
    order = np.empty(2 * k, dtype=np.int64)
    order[0::2], order[1::2] = np.arange(k), k + np.arange(k)
    values = pa.concat_arrays([core, pc.utf8_slice_codeunits(c, -1)]).take(pa.array(order))
    offsets = pa.array(np.arange(0, 2 * k + 1, 2, dtype=np.int32))
    return rows[at[good]], pa.ListArray.from_arrays(offsets, values.cast(pa.large_string()))


# Up to this many distinct chunks, the Python algorithm alone is quicker than the kernels (whose
# patterns are compiled again on every call): a few milliseconds a call, which small inputs and
# the few lines split again (C4's lines that lost citation marks) would pay.
PYTHON_ONLY_CHUNKS = 2_000


def _chunk_tokens(
    chunks: pa.Array, cache: dict[str, list[str]] | None, known: Split | None = None
) -> tuple[pa.Array, np.ndarray]:
    """Tokens of each distinct chunk, flat, and the number of tokens of each chunk. Chunks that
    ``known`` (a split of related texts) holds take their tokens from it."""
    n = len(chunks)
    if n == 0:
        return pa.array([], pa.large_string()), np.zeros(0, dtype=np.int64)
    if known is not None and len(known.chunk_values):
        # Where each chunk is among the known ones (-1: not there). Both are distinct: the few
        # chunks make the hash table, the many known ones are looked up in it.
        found = pc.index_in(known.chunk_values, value_set=chunks)
        hit_known = found.is_valid().to_numpy(zero_copy_only=False)
        at = np.full(n, -1, dtype=np.int64)
        at[found.drop_null().to_numpy(zero_copy_only=False)] = np.flatnonzero(hit_known)
        hit = at >= 0
        if hit.any():
            new = np.flatnonzero(~hit)
            new_tokens, new_per = _chunk_tokens(chunks.take(pa.array(new)), cache)
            per = np.empty(n, dtype=np.int64)
            per[hit] = known.chunk_count[at[hit]]
            per[new] = new_per
            start = np.empty(n, dtype=np.int64)
            start[hit] = known.chunk_first[at[hit]] + len(new_tokens)
            start[new] = np.cumsum(new_per) - new_per
            source = pa.concat_arrays(
                [new_tokens.cast(pa.large_string()), known.chunk_source.cast(pa.large_string())]
            )
            return source.take(pa.array(_ranges(start, per))), per
    if n <= PYTHON_ONLY_CHUNKS:  # the kernels' fixed cost would outweigh their gain
        simple = np.zeros(n, dtype=bool)
        shaped_at = np.zeros(0, dtype=np.int64)
        shaped_tokens = pa.array([], pa.list_(pa.large_string()))
        other = np.arange(n)
    else:
        plain = _bool(pc.utf8_is_alnum(chunks))
        # A unit follows a digit, which a chunk of letters alone (most) lacks: the pattern (a
        # tenth of a microsecond a chunk) runs on the others.
        unit = ~_bool(pc.utf8_is_alpha(chunks))
        if unit.any():
            unit[unit] = _bool(pc.match_substring_regex(chunks.filter(pa.array(unit)), UNIT_NEAR_END))
        special = _is_special(chunks)
        simple = plain & ~special & ~unit
        rest = np.flatnonzero(~simple)
        closed_at, closed_tokens = _closed_tokens(chunks, rest[~special[rest] & ~unit[rest]])
        if len(closed_at):
            closed = np.zeros(n, dtype=bool)
            closed[closed_at] = True
            rest = rest[~closed[rest]]
        shaped, shaped_tokens = _shaped_tokens(chunks.take(pa.array(rest)), unit[rest])
        shaped_at = np.concatenate([closed_at, rest[shaped]])
        shaped_tokens = pa.concat_arrays([closed_tokens, shaped_tokens.cast(closed_tokens.type)])
        other = rest[~shaped]
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
    per_shaped = pc.list_value_length(shaped_tokens).to_numpy(zero_copy_only=False).astype(np.int64)
    per_chunk = np.ones(n, dtype=np.int64)
    per_chunk[shaped_at] = per_shaped
    per_chunk[other] = per_other
    start = np.concatenate([[0], np.cumsum(per_chunk)[:-1]]).astype(np.int64)
    index = np.empty(int(per_chunk.sum()), dtype=np.int64)
    index[start[simple]] = np.flatnonzero(simple)
    base = n
    for at, per, count in ((shaped_at, per_shaped, int(per_shaped.sum())), (other, per_other, len(pieces))):
        if len(at):
            first = np.concatenate([[0], np.cumsum(per)[:-1]])
            index[np.repeat(start[at] - first, per) + np.arange(count)] = base + np.arange(count)
        base += count
    source = pa.concat_arrays(
        [chunks, pc.list_flatten(shaped_tokens).cast(pa.large_string()), pa.array(pieces, pa.large_string())]
    )
    return source.take(pa.array(index)), per_chunk


@dataclass
class Split:
    """Texts split into tokens: every token, flat and in order, also as ids into ``vocab`` (its
    distinct tokens); tokens and chunks (maximal runs of non-whitespace characters) per text, and
    tokens per chunk (flat, in order)."""

    counts: np.ndarray
    chunks: np.ndarray
    ids: np.ndarray
    vocab: pa.Array
    chunk_tokens: np.ndarray
    # the distinct chunks, their tokens (flat) and how many each has: a later split of related
    # texts takes the chunks it shares with this one from here
    chunk_values: pa.Array
    chunk_source: pa.Array
    chunk_count: np.ndarray

    @cached_property
    def chunk_first(self) -> np.ndarray:
        return np.cumsum(self.chunk_count) - self.chunk_count

    @property
    def encoded(self) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(self.ids, pa.int64()), self.vocab)

    @cached_property
    def tokens(self) -> pa.Array:
        """Every token as a string (built only when asked for: the signals read the ids)."""
        return self.vocab.take(pa.array(self.ids))


def split_texts(
    texts: pa.Array, cache: dict[str, list[str]] | None = None, known: Split | None = None
) -> Split:
    """The tokens of every text. ``cache`` (chunk -> tokens) may be shared between calls on
    related texts, e.g. a batch's lines and some of them rewritten; so may ``known``, the split
    of the first, whose chunks are not split again."""
    texts = texts.cast(pa.large_string())
    chunks = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(chunks)
    chunk_doc = pc.list_parent_indices(chunks).to_numpy(zero_copy_only=False).astype(np.int64)
    # Arrow marks leading and trailing whitespace with an empty chunk: drop those.
    nonempty = pc.greater(pc.binary_length(flat), 0)
    if not pc.all(nonempty).as_py():
        flat = flat.filter(nonempty)
        chunk_doc = chunk_doc[nonempty.to_numpy(zero_copy_only=False)]
    per_text = np.bincount(chunk_doc, minlength=len(texts)).astype(np.int64)
    encoded = pc.dictionary_encode(flat)
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    distinct = encoded.dictionary.cast(pa.large_string())
    tokens, per_unique = _chunk_tokens(distinct, cache, known)
    # Expand: occurrence j of chunk ids[j] takes that chunk's tokens.
    first = np.concatenate([[0], np.cumsum(per_unique)[:-1]]).astype(np.int64)
    per_occurrence = per_unique[ids]
    total = int(per_occurrence.sum())
    occ_start = np.concatenate([[0], np.cumsum(per_occurrence)[:-1]]).astype(np.int64)
    index = np.repeat(first[ids] - occ_start, per_occurrence) + np.arange(total, dtype=np.int64)
    counts = np.bincount(chunk_doc, weights=per_occurrence, minlength=len(texts)).astype(np.int64)
    # The distinct chunks' tokens are few: their ids give every token's id.
    source = pc.dictionary_encode(tokens)
    source_ids = source.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return Split(
        counts, per_text, source_ids[index], source.dictionary, per_occurrence, distinct, tokens, per_unique
    )


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
    lines: pa.Array, cache: dict[str, list[str]] | None = None, known: Split | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sentences, words) in each line, as spaCy's sentencizer and tokenizer count them.

    A sentence starts at the first token after a final mark (a token that is exactly ``.``,
    ``!``, ``?`` or a counterpart in another script) that is not punctuation; whitespace runs
    other than a single space are tokens too (not punctuation, not words), so they can start one.
    """
    marked = pc.replace_substring_regex(lines.cast(pa.large_string()), SPACE_TOKEN_RE2, f" {SPACE_MARK} ")
    s = split_texts(marked, cache, known)
    marks = _bool(pc.equal(s.vocab, SPACE_MARK))[s.ids] if len(s.ids) else np.zeros(0, dtype=bool)
    line = np.repeat(np.arange(len(lines), dtype=np.int64), s.counts)
    words = s.counts - np.bincount(line[marks], minlength=len(lines))
    return count_sentences(s.counts, s.ids, s.vocab), words


def sentence_roles(vocab: pa.Array) -> np.ndarray:
    """The sentencizer's view of each distinct token: a final mark, other punctuation, or else."""
    role = np.full(len(vocab), _S, dtype=np.int8)
    if len(vocab):
        # A token of letters and digits (most) is no punctuation: the pattern runs on the others.
        maybe = ~_bool(pc.utf8_is_alnum(vocab))
        if maybe.any():
            punct = _bool(pc.match_substring_regex(vocab.filter(pa.array(maybe)), r"^\p{P}+$"))
            role[np.flatnonzero(maybe)[punct]] = _O
        role[_bool(pc.is_in(vocab, value_set=pa.array(sorted(SENTENCE_FINAL), vocab.type)))] = _T
    return role


def count_sentences(counts: np.ndarray, ids: np.ndarray, vocab: pa.Array) -> np.ndarray:
    """Sentences in each of ``len(counts)`` lines whose tokens are ``vocab[ids]`` (flat, in order)."""
    if len(ids) == 0:
        return np.zeros(len(counts), dtype=np.int64)
    return _count_by_role(counts, sentence_roles(vocab)[ids])


def own_sentence_counts(s: Split, lines: np.ndarray, texts: pa.Array, spaced: np.ndarray) -> np.ndarray:
    """Sentences in the texts ``lines`` of split ``s``, counted on their own tokens; for those
    ``spaced``, with a whitespace token before each chunk that follows whitespace other than one
    plain space, as :func:`sentence_counts` counts them. ``texts``: those texts, stripped (their
    chunks are ``s``'s); they are read only where ``spaced``. Spares splitting them again."""
    n = len(lines)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    roles = sentence_roles(s.vocab)
    # Counted for every text of the split at once, in its own token order (no gathering of the
    # chosen texts' tokens); the few spaced texts are counted again with their whitespace tokens.
    out = _count_by_role(s.counts, roles[s.ids])[lines]
    if spaced.any():
        out[spaced] = _spaced_sentence_counts(s, lines[spaced], texts.filter(pa.array(spaced)), roles)
    return out


def _spaced_sentence_counts(s: Split, lines: np.ndarray, texts: pa.Array, roles: np.ndarray) -> np.ndarray:
    """:func:`own_sentence_counts` of spaced texts: each chunk after whitespace other than one
    plain space has a whitespace token before it."""
    n = len(lines)
    # The chunks of the chosen texts, in order.
    per_text = s.chunks[lines]
    chunk = _ranges(np.concatenate([[0], np.cumsum(s.chunks)])[lines], per_text)
    mark = np.zeros(len(chunk), dtype=np.int64)  # 1: a whitespace token before the chunk
    # The whitespace between a stripped text's chunks: the pieces between its runs of
    # non-space characters, less the first and the last (empty).
    gaps = pc.split_pattern_regex(texts, NOT_SPACE_RUN_RE2)
    sizes = pc.list_value_length(gaps).to_numpy(zero_copy_only=False).astype(np.int64)
    if not np.array_equal(sizes, per_text + 1):
        raise ValueError("the texts do not hold the split's chunks")
    special = _bool(pc.not_equal(pc.list_flatten(gaps), " "))
    ends = np.cumsum(sizes)
    inner = np.ones(len(special), dtype=bool)
    inner[ends - 1] = False
    inner[ends - sizes] = False
    after_gap = np.ones(len(chunk), dtype=bool)  # every chunk of a text but its first
    first = np.concatenate([[0], np.cumsum(per_text)[:-1]])
    after_gap[first[per_text > 0]] = False
    mark[after_gap] = special[inner]
    tokens = s.chunk_tokens[chunk]
    size = tokens + mark
    counts = np.bincount(np.repeat(np.arange(n), per_text), weights=size, minlength=n).astype(np.int64)
    role_of = np.append(roles, np.int8(_S))  # the last: a whitespace token
    ids = np.full(int(size.sum()), len(role_of) - 1, dtype=np.int64)
    token_first = np.concatenate([[0], np.cumsum(s.chunk_tokens)])
    ids[_ranges(np.cumsum(size) - tokens, tokens)] = s.ids[_ranges(token_first[chunk], tokens)]
    return _count_by_role(counts, role_of[ids])


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``starts[i], starts[i] + 1, ..., starts[i] + lengths[i] - 1`` for every i, concatenated."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.repeat(starts.astype(np.int64) - offsets, lengths) + np.arange(total, dtype=np.int64)


def _count_by_role(counts: np.ndarray, role: np.ndarray) -> np.ndarray:
    """Sentences in each of ``len(counts)`` lines whose tokens have sentence roles ``role``.

    Between a starter and the previous one (or the line's start) there are only final marks and
    other punctuation, so a starter begins a sentence exactly when the nearest token before it
    in its line that is no other punctuation is a final mark: only those tokens are looked at.
    """
    n = len(counts)
    if len(role) == 0:
        return np.zeros(n, dtype=np.int64)
    at = np.flatnonzero(role != _O)
    kind = role[at]
    line = np.repeat(np.arange(n, dtype=np.int64), counts)[at]  # (quicker than a search per token)
    boundary = (kind[1:] == _S) & (kind[:-1] == _T) & (line[1:] == line[:-1])
    out = np.bincount(line[1:][boundary], minlength=n) + (counts > 0)
    return out.astype(np.int64)
