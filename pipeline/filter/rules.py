"""The filter rules: which signal column each threshold applies to, and how a batch is judged.

A rule reads one signal column and fails a document whose value is below its ``min`` or above
its ``max`` (the language rule instead fails a language outside the keep-set). A null value
(the signal is undefined, e.g. no lines) passes. The first failing rule, in the order below, is
the document's reject reason ``filter.<rule>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import FilterConfig


@dataclass(frozen=True)
class Rule:
    name: str  # e.g. "gopher_quality.min_words"; the reject reason is "filter." + name
    column: str
    op: str  # "min", "max" or "in"
    threshold: float | tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"filter.{self.name}"

    def fails(self, values: pa.Array) -> np.ndarray:
        if self.op == "in":
            bad = pc.invert(pc.is_in(values, value_set=pa.array(list(self.threshold), values.type)))
        elif self.op == "min":
            bad = pc.less(values, self.threshold)
        else:
            bad = pc.greater(values, self.threshold)
        return pc.fill_null(bad, False).to_numpy(zero_copy_only=False)

    def threshold_text(self) -> str:
        return ",".join(self.threshold) if self.op == "in" else repr(self.threshold)


def build_rules(cfg: FilterConfig, domain_cutoff: float | None = None) -> list[Rule]:
    """Every enabled rule, in evaluation order. ``domain_cutoff`` is the score the top fraction needs."""
    rules: list[Rule] = []

    def add(group: str, field: str, column: str, op: str, value) -> None:
        if value is not None:
            rules.append(Rule(f"{group}.{field}", column, op, value))

    g = cfg.gopher_repetition
    if g.enabled:
        for unit in ("para", "line"):
            add(
                "gopher_repetition",
                f"max_dup_{unit}_frac",
                f"gopher_dup_{unit}_frac",
                "max",
                getattr(g, f"max_dup_{unit}_frac"),
            )
            add(
                "gopher_repetition",
                f"max_dup_{unit}_char_frac",
                f"gopher_dup_{unit}_char_frac",
                "max",
                getattr(g, f"max_dup_{unit}_char_frac"),
            )
        for n, v in sorted(g.max_top_ngram_char_frac.items()):
            add("gopher_repetition", f"max_top_{n}gram_char_frac", f"gopher_top_{n}gram_char_frac", "max", v)
        for n, v in sorted(g.max_dup_ngram_char_frac.items()):
            add("gopher_repetition", f"max_dup_{n}gram_char_frac", f"gopher_dup_{n}gram_char_frac", "max", v)
    q = cfg.gopher_quality
    if q.enabled:
        for field, column, op in (
            ("min_words", "gopher_word_count", "min"),
            ("max_words", "gopher_word_count", "max"),
            ("min_mean_word_length", "gopher_mean_word_length", "min"),
            ("max_mean_word_length", "gopher_mean_word_length", "max"),
            ("max_hash_to_word_ratio", "gopher_hash_to_word_ratio", "max"),
            ("max_ellipsis_to_word_ratio", "gopher_ellipsis_to_word_ratio", "max"),
            ("max_bullet_lines_frac", "gopher_bullet_lines_frac", "max"),
            ("max_ellipsis_lines_frac", "gopher_ellipsis_lines_frac", "max"),
            ("min_alpha_words_frac", "gopher_alpha_words_frac", "min"),
            ("min_stop_words", "gopher_stop_words_distinct", "min"),
        ):
            add("gopher_quality", field, column, op, getattr(q, field))
    c = cfg.c4
    if c.enabled:
        add("c4", "drop_lorem_ipsum", "c4_lorem_ipsum_lines", "max", 0 if c.drop_lorem_ipsum else None)
        add("c4", "drop_curly_bracket", "c4_curly_bracket_lines", "max", 0 if c.drop_curly_bracket else None)
        column = "c4_sentence_count_punct_lines" if c.terminal_punct_lines_only else "c4_sentence_count"
        add("c4", "min_sentences", column, "min", c.min_sentences)
    f = cfg.fineweb
    if f.enabled:
        add("fineweb", "min_line_punct_ratio", "fineweb_line_punct_ratio", "min", f.min_line_punct_ratio)
        add("fineweb", "max_short_line_ratio", "fineweb_short_line_ratio", "max", f.max_short_line_ratio)
        add(
            "fineweb",
            "max_dup_line_char_ratio",
            "fineweb_dup_line_char_ratio",
            "max",
            f.max_dup_line_char_ratio,
        )
        add(
            "fineweb",
            "max_newline_to_word_ratio",
            "fineweb_newline_to_word_ratio",
            "max",
            f.max_newline_to_word_ratio,
        )
    la = cfg.language
    if la.enabled:
        add("language", "keep", "lang", "in", tuple(la.keep) if la.keep else None)
        add("language", "min_score", "lang_score", "min", la.min_score)
    t = cfg.toxicity
    if t.enabled:
        add("toxicity", "max_toxicity_score", "toxicity_score", "max", t.max_toxicity_score)
        add("toxicity", "max_toxic_words_frac", "toxic_words_frac", "max", t.max_toxic_words_frac)
    d = cfg.domain
    if d.enabled:
        add("domain", "keep_top_fraction", "domain_score", "min", domain_cutoff)
        add("domain", "min_score", "domain_score", "min", d.min_score)
    b = cfg.bias
    if b.enabled:
        add(
            "bias",
            "max_identity_negative_mentions",
            "bias_identity_negative_mentions",
            "max",
            b.max_identity_negative_mentions,
        )
    return rules


def judge(table: pa.Table, rules: list[Rule]) -> tuple[np.ndarray, list[tuple[np.ndarray, Rule]]]:
    """(kept mask, [(rows rejected by rule, rule)...]); each row is charged to its first failing rule."""
    kept = np.ones(table.num_rows, dtype=bool)
    charged = []
    for rule in rules:
        if rule.column not in table.column_names:
            continue
        bad = kept & rule.fails(table.column(rule.column))
        if bad.any():
            charged.append((np.flatnonzero(bad), rule))
            kept &= ~bad
    return kept, charged
