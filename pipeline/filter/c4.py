"""C4 signals (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2).

C4 cleans line by line and then judges the page. A line is *eligible* when it has no word over
1,000 characters and at least 3 whitespace-separated words; eligible lines that mention
"javascript" or a cookie/terms-of-use phrase are removed; the page is dropped if an eligible line
says "lorem ipsum" or holds a curly bracket, or if fewer than 5 sentences remain. Wikipedia-style
citation marks ([1], [edit]) are removed before the line's end is looked at. Sentences are those
of spaCy's rule-based sentencizer over the English tokenizer's tokens (`text.sentence_counts`),
as datatrove's C4QualityFilter counts them. The signals count these per document, so a threshold
can be chosen in `select` (as datatrove's C4QualityFilter).

:func:`remove_lines` is the cleaning itself, which the `filter` stage applies to the documents it
keeps: it deletes the offending lines (C4 also deletes lines without terminal punctuation, a
switch in the filter config) and reports each removed line with its rule, so the original text
is recoverable. Unlike C4 it leaves kept lines as they are (no stripping, citations kept);
:func:`as_written` gives a cleaned text as C4 writes it, which FineWeb's rules are judged on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .batch import TextBatch, per_doc, ratio, spaced_texts
from .columns import f32, i32
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal
from .text import SPACE_TOKEN_BEFORE_PUNCT_RE2, own_sentence_counts, sentence_counts

MIN_WORDS_PER_LINE = 3
MAX_WORD_LENGTH = 1000
CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"  # Python's re (\d: any decimal digit)
CITATION_RE2 = r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]"  # the same for Arrow
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# Every policy phrase holds one of these, which find the documents to search for them (three
# scans of a batch's bytes instead of one per phrase).
POLICY_ANCHORS = ("terms of use", "policy", "cookie")
END_PUNCT = r"[.?!\"']$"  # C4 keeps lines ending in these, but not in an ellipsis

# Line rules of remove_lines, in C4's order: a line is charged to the first that applies.
LINE_RULES = ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")
REMOVED_LINE = pa.struct(
    [pa.field("line", pa.int32()), pa.field("rule", pa.string()), pa.field("text", pa.large_string())]
)
REMOVED_LINES_FIELD = pa.field(
    "c4_removed_lines",
    pa.list_(REMOVED_LINE),
    metadata={
        "description": "lines the C4 cleaning removed: index in text.split('\\n') of the original, "
        "rule, text; the original is these and the kept lines, in index order, joined by newlines"
    },
)

COLUMNS = [
    f32("c4_lines_ending_punct_frac", "fraction of non-empty lines ending in . ? ! \" or ' (not '...')"),
    i32("c4_sentence_count", "sentences in the lines C4 keeps (eligible, no javascript, no policy phrase)"),
    i32(
        "c4_sentence_count_punct_lines",
        "as c4_sentence_count, counting only kept lines that end in punctuation",
    ),
    i32(
        "c4_kept_word_count",
        "words in the lines C4 keeps, as C4 writes them (the word count of the cleaned text)",
    ),
    i32(
        "c4_kept_word_count_punct_lines",
        "as c4_kept_word_count, counting only kept lines that end in punctuation",
    ),
    i32("c4_lorem_ipsum_lines", "eligible lines containing 'lorem ipsum'"),
    i32("c4_curly_bracket_lines", "eligible lines without 'javascript' holding '{'"),
    i32("c4_javascript_lines", "eligible lines mentioning 'javascript' (C4 removes them)"),
    i32("c4_policy_lines", "eligible lines with a cookie / terms-of-use phrase (C4 removes them)"),
]


def line_flags(b: TextBatch, sentences: bool = True) -> dict[str, np.ndarray]:
    """C4's verdict on every line of ``b.text_lines``: one boolean array per check, in C4's order.

    ``too_long_word``, ``no_terminal_punct`` (computed for every line; the `filter` stage decides
    whether it removes), ``too_few_words``, ``lorem_ipsum``, ``javascript``, ``curly_bracket`` and
    ``policy``; ``nonempty``; with ``sentences``, also ``sentences`` and ``words`` in each line C4
    keeps, as it writes the line (zero for the others).
    """
    lines = b.text_lines
    text = pc.utf8_trim_whitespace(lines.values)
    if sentences:  # the lines are split into tokens anyway: count their chunks there
        n_ws_words = b.line_split.chunks[b.text_line_mask]
    else:
        # Arrow's whitespace split cuts where NOT_SPACE does not match (every code point checked);
        # a stripped line's pieces are its words, but for an empty line's one empty piece.
        pieces = pc.list_value_length(pc.utf8_split_whitespace(text)).to_numpy(zero_copy_only=False)
        n_ws_words = np.where(pc.binary_length(text).to_numpy(zero_copy_only=False) > 0, pieces, 0)
    # Only a line longer than MAX_WORD_LENGTH can hold such a word: check those alone.
    long_word = np.zeros(len(n_ws_words), dtype=bool)
    long_lines = np.flatnonzero(pc.utf8_length(text).to_numpy(zero_copy_only=False) > MAX_WORD_LENGTH)
    if len(long_lines):
        words = pc.utf8_split_whitespace(text.take(pa.array(long_lines)))
        longest = np.zeros(len(long_lines), dtype=np.int64)
        np.maximum.at(
            longest,
            pc.list_parent_indices(words).to_numpy(zero_copy_only=False),
            pc.utf8_length(pc.list_flatten(words)).to_numpy(zero_copy_only=False),
        )
        long_word[long_lines] = longest > MAX_WORD_LENGTH
    # The text C4 judges: citation marks removed. Only lines of documents holding "[" can have
    # one; only those that do are rewritten.
    maybe_cited = np.flatnonzero(b.holding(("[",))[lines.doc])
    has_citation = np.zeros(len(n_ws_words), dtype=bool)
    if len(maybe_cited):
        has_citation[maybe_cited] = pc.match_substring_regex(
            text.take(pa.array(maybe_cited)), CITATION_RE2
        ).to_numpy(zero_copy_only=False)
    cited = np.flatnonzero(has_citation)
    cited_text = pc.replace_substring_regex(text.take(pa.array(cited)), CITATION_RE2, "")
    source, where = text, None
    if len(cited):
        source = pa.concat_arrays([text, cited_text.cast(text.type)])
        where = np.arange(len(text))
        where[cited] = len(text) + np.arange(len(cited))

    def written(rows: np.ndarray) -> pa.Array:
        """The text C4 judges of the lines ``rows``: stripped, citation marks removed."""
        return source.take(pa.array(rows if where is None else where[rows]))

    ends_punct = _ends_punct(text)
    if len(cited):
        ends_punct[cited] = _ends_punct(cited_text)
    few_words = n_ws_words < MIN_WORDS_PER_LINE
    eligible = ~few_words & ~long_word

    def has(needles: tuple[str, ...], lowercase: bool = True, anchors: tuple[str, ...] = ()) -> np.ndarray:
        """Eligible lines whose text (lowercased) holds one of ``needles``. Lowercasing maps each
        character alone, so only lines of documents holding one (lowercased), or lines that lost
        citation marks (which may join one up), can: only those are searched. ``anchors``:
        strings one of which every needle holds, to find those documents by."""
        docs = b.holding(anchors or needles, lower=lowercase)
        rows = np.flatnonzero(eligible & (docs[lines.doc] | has_citation))
        out = np.zeros(len(eligible), dtype=bool)
        if len(rows):
            values = pc.utf8_lower(written(rows)) if lowercase else written(rows)
            if len(needles) == 1:
                found = pc.match_substring(values, needles[0])
            else:
                found = pc.match_substring_regex(values, "|".join(needles))  # plain words
            out[rows] = found.to_numpy(zero_copy_only=False)
        return out

    javascript = has(("javascript",))
    curly = ~javascript & has(("{",), lowercase=False)
    policy = ~javascript & has(POLICY_PHRASES, anchors=POLICY_ANCHORS)
    kept = eligible & ~javascript & ~policy
    out = {
        "too_long_word": long_word,
        "no_terminal_punct": ~ends_punct,
        "too_few_words": few_words,
        "lorem_ipsum": has(("lorem ipsum",)),
        "javascript": javascript,
        "curly_bracket": curly,
        "policy": policy,
        "nonempty": n_ws_words > 0,
    }
    if sentences:
        out["sentences"], out["words"] = kept_line_counts(b, kept, has_citation, written)
    return out


def _ends_punct(text: pa.Array) -> np.ndarray:
    """Lines C4 keeps for their end: terminal punctuation, not an ellipsis."""
    ends = pc.match_substring_regex(text, END_PUNCT).to_numpy(zero_copy_only=False)
    return ends & ~pc.ends_with(text, "...").to_numpy(zero_copy_only=False)


def kept_line_counts(
    b: TextBatch, kept: np.ndarray, has_citation: np.ndarray, written: Callable[[np.ndarray], pa.Array]
) -> tuple[np.ndarray, np.ndarray]:
    """Sentences and words in each kept line of ``b.text_lines`` as C4 writes it (``written``:
    rows -> their text stripped, citation marks removed). A line's words are its own tokens,
    already split, and so are its sentences but where whitespace could start one
    (`text.own_sentence_counts`); a line that lost citation marks is split again (the chunks it
    shares with the lines, from their split)."""
    sentences = np.zeros(len(kept), dtype=np.int64)
    words = np.zeros(len(kept), dtype=np.int64)
    at = np.flatnonzero(kept)  # in text_lines
    if len(at) == 0:
        return sentences, words
    redo = has_citation[at]
    own = at[~redo]
    own_written = written(own)
    # Only lines holding whitespace other than single spaces (found from their bytes: a regex
    # on every line of a text with any, as code's indented ones, costs more) can be spaced.
    spaced = np.zeros(len(own), dtype=bool)
    maybe = np.flatnonzero(spaced_texts(own_written))
    if len(maybe):
        found = pc.match_substring_regex(own_written.take(pa.array(maybe)), SPACE_TOKEN_BEFORE_PUNCT_RE2)
        spaced[maybe] = found.to_numpy(zero_copy_only=False)
    split = b.line_split
    line = np.flatnonzero(b.text_line_mask)[own]  # in b.lines
    sentences[own] = own_sentence_counts(split, line, own_written, spaced)
    words[own] = split.counts[line]
    again = at[redo]
    if len(again):
        sentences[again], words[again] = sentence_counts(written(again), b.chunk_cache, split)
    return sentences, words


def signals(b: TextBatch) -> dict[str, np.ndarray]:
    f = line_flags(b)
    doc = b.text_lines.doc
    ends_punct = ~f["no_terminal_punct"]
    return {
        "c4_lines_ending_punct_frac": ratio(
            per_doc(doc, ends_punct & f["nonempty"], b.n), per_doc(doc, f["nonempty"], b.n)
        ),
        "c4_sentence_count": per_doc(doc, f["sentences"], b.n),
        "c4_sentence_count_punct_lines": per_doc(doc, f["sentences"] * ends_punct, b.n),
        "c4_kept_word_count": per_doc(doc, f["words"], b.n),
        "c4_kept_word_count_punct_lines": per_doc(doc, f["words"] * ends_punct, b.n),
        "c4_lorem_ipsum_lines": per_doc(doc, f["lorem_ipsum"], b.n),
        "c4_curly_bracket_lines": per_doc(doc, f["curly_bracket"], b.n),
        "c4_javascript_lines": per_doc(doc, f["javascript"], b.n),
        "c4_policy_lines": per_doc(doc, f["policy"], b.n),
    }


def remove_lines(texts: pa.Array, terminal_punct: bool = True) -> tuple[pa.Array, pa.Array]:
    """C4's line cleaning: (cleaned texts, the removed lines of each text).

    Lines are ``text.split("\\n")`` (without the empty piece after a final newline); kept lines
    are joined by newlines, unchanged. ``terminal_punct`` also removes lines that do not end in
    terminal punctuation, as C4 does. Each removed line is listed as a :data:`REMOVED_LINE`.
    """
    b = TextBatch(texts)
    flags = line_flags(b, sentences=False)
    lines = b.text_lines
    rules = [r for r in LINE_RULES if terminal_punct or r != "no_terminal_punct"]
    rule = np.full(len(lines.doc), -1, dtype=np.int64)
    for i in reversed(range(len(rules))):  # the first rule that applies wins
        rule[flags[rules[i]]] = i
    removed = rule >= 0

    def lists(mask: np.ndarray, values: pa.Array, type: pa.DataType | None = None) -> pa.ListArray:
        offsets = np.concatenate([[0], np.cumsum(per_doc(lines.doc, mask, b.n))]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), values, type=type)

    kept = lists(~removed, lines.values.filter(pa.array(~removed)))
    at = np.flatnonzero(removed)
    first_line = np.searchsorted(lines.doc, np.arange(b.n))
    entries = pa.StructArray.from_arrays(
        [
            pa.array((at - first_line[lines.doc[at]]).astype(np.int32)),
            pa.array(rules, pa.string()).take(pa.array(rule[at])),
            lines.values.take(pa.array(at)),
        ],
        fields=list(REMOVED_LINE),
    )
    cleaned = pc.binary_join(kept, pa.scalar("\n", pa.large_string()))
    return cleaned, lists(removed, entries, REMOVED_LINES_FIELD.type)


def as_written(texts: pa.Array) -> pa.Array:
    """Cleaned texts as C4 writes them: each line stripped, then its citation marks removed;
    the whole stripped (what datatrove's FineWeb filter sees after its C4 filter)."""
    texts = texts.cast(pa.large_string())
    lines = pc.split_pattern(texts, "\n")
    flat = pc.replace_substring_regex(pc.utf8_trim_whitespace(pc.list_flatten(lines)), CITATION_RE2, "")
    offsets = pc.list_value_length(lines).to_numpy(zero_copy_only=False).cumsum()
    rebuilt = pa.LargeListArray.from_arrays(pa.array(np.concatenate([[0], offsets]), pa.int64()), flat)
    return pc.utf8_trim_whitespace(pc.binary_join(rebuilt, pa.scalar("\n", pa.large_string())))


def removed_counts(removed: pa.Array) -> dict[str, dict[str, int]]:
    """Lines and characters removed per rule: {"lines": {rule: n}, "chars": {rule: n}}."""
    entries = pc.list_flatten(removed)
    rules = entries.field("rule").to_numpy(zero_copy_only=False)
    chars = pc.utf8_length(entries.field("text")).to_numpy(zero_copy_only=False)
    counts: dict[str, dict[str, int]] = {"lines": {}, "chars": {}}
    for name in LINE_RULES:
        mine = rules == name
        if mine.any():
            counts["lines"][name] = int(mine.sum())
            counts["chars"][name] = int(chars[mine].sum())
    return counts


# -- rules: C4's published choices (Raffel et al. 2020, section 2.2) ----------------------------------
class C4Rules(RuleSetConfig):
    min_sentences: int | None = 5
    terminal_punct_lines_only: bool = Field(
        True,
        description="As C4: lines not ending in terminal punctuation count no sentences and are "
        "removed (datatrove's filter_no_terminal_punct)",
    )
    remove_lines: bool = Field(
        True,
        description="As C4: delete offending lines (too long word, no terminal punctuation, under 3 "
        "words, javascript, policy) from kept documents; each is listed in c4_removed_lines",
    )
    drop_lorem_ipsum: bool = True
    drop_curly_bracket: bool = True


def rules(c: C4Rules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("c4")
    r.add("drop_lorem_ipsum", "c4_lorem_ipsum_lines", "max", 0 if c.drop_lorem_ipsum else None)
    r.add("drop_curly_bracket", "c4_curly_bracket_lines", "max", 0 if c.drop_curly_bracket else None)
    column = "c4_sentence_count_punct_lines" if c.terminal_punct_lines_only else "c4_sentence_count"
    r.add("min_sentences", column, "min", c.min_sentences)
    return r.rules


SIGNAL = Signal(
    name="c4",
    version="2",  # 2: sentences as spaCy's sentencizer counts them; citations with any digits
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b),
    settings={"c4": (bool, Field(True, description="C4 signals (c4_*)"))},
    rule_sets=(RuleSet("c4", C4Rules, rules, judged_on="original"),),
)
