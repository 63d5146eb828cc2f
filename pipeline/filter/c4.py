"""C4 signals (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2).

C4 cleans line by line and then judges the page. A line is *eligible* when it has no word over
1,000 characters and at least 3 whitespace-separated words; eligible lines that mention
"javascript" or a cookie/terms-of-use phrase are removed; the page is dropped if an eligible line
says "lorem ipsum" or holds a curly bracket, or if fewer than 5 sentences remain. Wikipedia-style
citation marks ([1], [edit]) are removed before the line's end is looked at. The signals count
these per document, so a threshold can be chosen in `select` (as datatrove's C4QualityFilter).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .batch import TextBatch, per_doc, ratio
from .columns import f32, i32
from .text import TERMINAL_PUNCT_RE2

MIN_WORDS_PER_LINE = 3
MAX_WORD_LENGTH = 1000
CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
END_PUNCT = r"[.?!\"']$"  # C4 keeps lines ending in these, but not in an ellipsis
# A sentence ends at a terminal mark that stands as its own token (after a word or number, not
# in an initial like "J.") and is followed, after closing quotes or brackets, by more text (RE2).
SENTENCE_BREAK = (
    rf"(?:\pL\pL|\p{{Ll}}|\pN|[\p{{Pe}}\p{{Pf}}\"'%]){TERMINAL_PUNCT_RE2}+[\p{{Pe}}\p{{Pf}}\"']*\s+\S"
)

COLUMNS = [
    f32("c4_lines_ending_punct_frac", "fraction of non-empty lines ending in . ? ! \" or ' (not '...')"),
    i32("c4_sentence_count", "sentences in the lines C4 keeps (eligible, no javascript, no policy phrase)"),
    i32(
        "c4_sentence_count_punct_lines",
        "as c4_sentence_count, counting only kept lines that end in punctuation",
    ),
    i32("c4_lorem_ipsum_lines", "eligible lines containing 'lorem ipsum'"),
    i32("c4_curly_bracket_lines", "eligible lines without 'javascript' holding '{'"),
    i32("c4_javascript_lines", "eligible lines mentioning 'javascript' (C4 removes them)"),
    i32("c4_policy_lines", "eligible lines with a cookie / terms-of-use phrase (C4 removes them)"),
]


def signals(b: TextBatch) -> dict[str, np.ndarray]:
    lines = b.text_lines
    text = pc.utf8_trim_whitespace(lines.values)
    ws_words = pc.utf8_split_whitespace(text)
    n_ws_words = pc.list_value_length(ws_words).to_numpy(zero_copy_only=False)
    longest = np.zeros(len(n_ws_words), dtype=np.int64)
    np.maximum.at(
        longest,
        pc.list_parent_indices(ws_words).to_numpy(zero_copy_only=False),
        pc.utf8_length(pc.list_flatten(ws_words)).to_numpy(zero_copy_only=False),
    )
    long_word = longest > MAX_WORD_LENGTH
    eligible = (n_ws_words >= MIN_WORDS_PER_LINE) & ~long_word
    text = pc.replace_substring_regex(text, CITATION, "")
    lower = pc.utf8_lower(text)

    def has(pattern: str, source=lower) -> np.ndarray:
        return pc.match_substring(source, pattern).to_numpy(zero_copy_only=False)

    ends_punct = pc.match_substring_regex(text, END_PUNCT).to_numpy(zero_copy_only=False) & ~pc.ends_with(
        text, "..."
    ).to_numpy(zero_copy_only=False)
    javascript = eligible & has("javascript")
    curly = eligible & ~javascript & has("{", text)
    policy = eligible & ~javascript & np.logical_or.reduce([has(p) for p in POLICY_PHRASES])
    kept = eligible & ~javascript & ~policy
    breaks = pc.count_substring_regex(text.filter(pa.array(kept)), SENTENCE_BREAK)
    sentences = breaks.to_numpy(zero_copy_only=False).astype(np.int64) + 1
    kept_doc = lines.doc[kept]
    nonempty = n_ws_words > 0
    return {
        "c4_lines_ending_punct_frac": ratio(
            per_doc(lines.doc, ends_punct & nonempty, b.n), per_doc(lines.doc, nonempty, b.n)
        ),
        "c4_sentence_count": per_doc(kept_doc, sentences, b.n),
        "c4_sentence_count_punct_lines": per_doc(kept_doc, sentences * ends_punct[kept], b.n),
        "c4_lorem_ipsum_lines": per_doc(lines.doc, eligible & has("lorem ipsum"), b.n),
        "c4_curly_bracket_lines": per_doc(lines.doc, curly, b.n),
        "c4_javascript_lines": per_doc(lines.doc, javascript, b.n),
        "c4_policy_lines": per_doc(lines.doc, policy, b.n),
    }
