"""FineWeb signals (Penedo et al. 2024, "The FineWeb Datasets", section 3.3: custom filters).

Lines are ``text.split("\\n")`` without the blank ones; a line "ends in punctuation" when its
last character is a Unicode sentence terminal. Same definitions as datatrove's
FineWebQualityFilter; thresholds live in :mod:`pipeline.filter.config`.
"""

from __future__ import annotations

import numpy as np

from .batch import TextBatch, per_doc, ratio
from .columns import f32
from .text import TERMINAL_PUNCT_RE2

SHORT_LINE_CHARS = 30

COLUMNS = [
    f32("fineweb_line_punct_ratio", "fraction of non-blank lines ending in a sentence terminal"),
    f32("fineweb_short_line_ratio", f"fraction of non-blank lines of at most {SHORT_LINE_CHARS} characters"),
    f32(
        "fineweb_dup_line_char_ratio", "characters in repeated non-blank lines / characters outside newlines"
    ),
    f32("fineweb_newline_to_word_ratio", "newlines per token"),
]


def signals(b: TextBatch) -> dict[str, np.ndarray]:
    lines = b.nonempty_lines
    n = lines.count
    dup = lines.repeated()
    newlines = b.count("\n")
    return {
        "fineweb_line_punct_ratio": ratio(
            per_doc(lines.doc, lines.matches(TERMINAL_PUNCT_RE2 + "$"), b.n), n
        ),
        "fineweb_short_line_ratio": ratio(per_doc(lines.doc, lines.lengths <= SHORT_LINE_CHARS, b.n), n),
        "fineweb_dup_line_char_ratio": ratio(
            per_doc(lines.doc[dup], lines.lengths[dup], b.n), b.chars - newlines
        ),
        "fineweb_newline_to_word_ratio": ratio(newlines, b.words.count),
    }
