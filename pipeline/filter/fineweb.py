"""FineWeb signals (Penedo et al. 2024, "The FineWeb Datasets", section 3.3: custom filters).

Lines are ``text.split("\\n")`` without the blank ones; a line "ends in punctuation" when its
last character is a sentence terminal (datatrove's list, `text.TERMINAL_PUNCT`). Same definitions as datatrove's
FineWebQualityFilter; the rules and their published thresholds are at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from .batch import TextBatch, per_doc, ratio
from .columns import f32
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal
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


def signals(b: TextBatch, words: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """FineWeb's signals of each text; ``words``: the texts' word counts, if already known."""
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
        "fineweb_newline_to_word_ratio": ratio(newlines, b.words.count if words is None else words),
    }


# -- rules: FineWeb's custom filters (Penedo et al. 2024, section 3.3) ---------------------------------
class FineWebRules(RuleSetConfig):
    min_line_punct_ratio: float | None = 0.12
    max_short_line_ratio: float | None = 0.67
    max_dup_line_char_ratio: float | None = 0.01
    max_newline_to_word_ratio: float | None = 0.3


def rules(c: FineWebRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("fineweb")
    r.add("min_line_punct_ratio", "fineweb_line_punct_ratio", "min", c.min_line_punct_ratio)
    r.add("max_short_line_ratio", "fineweb_short_line_ratio", "max", c.max_short_line_ratio)
    r.add("max_dup_line_char_ratio", "fineweb_dup_line_char_ratio", "max", c.max_dup_line_char_ratio)
    r.add("max_newline_to_word_ratio", "fineweb_newline_to_word_ratio", "max", c.max_newline_to_word_ratio)
    return r.rules


SIGNAL = Signal(
    name="fineweb",
    version="2",  # 2: words split as spaCy's English tokenizer does; datatrove's terminal marks
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b),
    settings={"fineweb": (bool, Field(True, description="FineWeb signals (fineweb_*)"))},
    # Judged after C4's line removal, on signals recomputed from the cleaned text (filter stage).
    rule_sets=(RuleSet("fineweb", FineWebRules, rules, judged_on="cleaned"),),
)
