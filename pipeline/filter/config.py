"""Configuration of the two filter stages, and every published default threshold, in one place.

``AnnotateConfig`` holds only what changes signal values (which signal groups run, language-ID
and domain-fit settings); ``FilterConfig`` holds every rule. A threshold set to ``null`` disables
that rule; ``enabled: false`` disables a whole rule set. Changing a ``FilterConfig`` value re-runs
only the `filter` stage: annotate's fingerprint does not depend on it.

Sources of the defaults:
- Gopher quality and repetition: Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
  Insights from Training Gopher", appendix A.1.1, table A1.
- C4: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer", section 2.2 (at least 5 sentences, lines of at least 3 words ending in
  terminal punctuation, no "lorem ipsum", no curly bracket, no javascript / policy lines).
- FineWeb: Penedo et al. 2024, "The FineWeb Datasets", section 3.3 (custom filters).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- annotate -----------------------------------------------------------------------------------
class AnnotateConfig(_Model):
    gopher: bool = Field(True, description="Gopher quality and repetition signals (gopher_*)")
    c4: bool = Field(True, description="C4 signals (c4_*)")
    fineweb: bool = Field(True, description="FineWeb signals (fineweb_*)")
    language: bool = Field(True, description="Language and its score (lang, lang_score)")
    langid_backend: Literal["fasttext", "cld2", "py3langid"] = Field(
        "fasttext",
        description="Language-ID model: fastText lid.176 (most accurate), CLD2 (fastest) or py3langid "
        "(used when the chosen one is not installed); see pipeline.filter.langid",
    )
    langid_max_chars: int = Field(1_000, description="Language ID reads this many leading characters")
    langid_languages: list[str] | None = Field(
        None, description="Only choose among these ISO 639-1 codes (None: every language the model knows)"
    )
    toxicity: bool = Field(True, description="Word-list and classifier toxicity (toxic_*, toxicity_score)")
    pii: bool = Field(True, description="PII counts per kind (pii_*_count)")
    bias: bool = Field(
        True, description="Identity-term counts and their toxic/negative co-occurrence (bias_*)"
    )
    bias_window: int = Field(
        10, description="Tokens either side of an identity term searched for negative words"
    )
    domain_target: str | None = Field(
        None,
        description="Target-domain sample: a JSONL/text/Parquet file or a dataset directory; enables domain_score",
    )
    domain_buckets: int = Field(1 << 16, description="Hashed n-gram buckets of the domain-fit model")
    domain_background_docs: int = Field(
        20_000, description="Input documents sampled as the general-corpus model"
    )
    batch_rows: int = Field(1_024, description="Documents annotated together (vectorized) at a time")


# -- filter rules -------------------------------------------------------------------------------
class GopherQualityRules(_Model):
    enabled: bool = True
    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3
    max_mean_word_length: float | None = 10
    max_hash_to_word_ratio: float | None = 0.1
    max_ellipsis_to_word_ratio: float | None = 0.1
    max_bullet_lines_frac: float | None = 0.9
    max_ellipsis_lines_frac: float | None = 0.3
    min_alpha_words_frac: float | None = 0.8
    min_stop_words: int | None = 2


class GopherRepetitionRules(_Model):
    enabled: bool = True
    max_dup_para_frac: float | None = 0.3
    max_dup_para_char_frac: float | None = 0.2
    max_dup_line_frac: float | None = 0.3
    max_dup_line_char_frac: float | None = 0.2
    max_top_ngram_char_frac: dict[int, float | None] = Field(
        default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16}, description="n -> max fraction"
    )
    max_dup_ngram_char_frac: dict[int, float | None] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> max fraction",
    )


class C4Rules(_Model):
    enabled: bool = True
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


class FineWebRules(_Model):
    enabled: bool = True
    min_line_punct_ratio: float | None = 0.12
    max_short_line_ratio: float | None = 0.67
    max_dup_line_char_ratio: float | None = 0.01
    max_newline_to_word_ratio: float | None = 0.3


class LanguageRules(_Model):
    enabled: bool = True
    keep: list[str] = Field(
        default_factory=lambda: ["en"], description="ISO 639-1 codes kept; empty: any language"
    )
    min_score: float | None = Field(0.65, description="Minimum language probability (FineWeb uses 0.65)")


class ToxicityRules(_Model):
    enabled: bool = True
    max_toxicity_score: float | None = Field(0.9, description="Maximum alt-profanity-check probability")
    max_toxic_words_frac: float | None = Field(
        0.02, description="Maximum fraction of tokens on the toxic word list"
    )


class DomainRules(_Model):
    enabled: bool = True
    keep_top_fraction: float | None = Field(
        None, description="Keep this fraction of documents with the best domain_score"
    )
    min_score: float | None = Field(None, description="Minimum domain_score (mean log importance weight)")


class BiasRules(_Model):
    enabled: bool = True
    max_identity_negative_mentions: int | None = Field(
        None, description="Drop documents with more identity-term mentions next to toxic/negative words (off)"
    )


class PIIConfig(_Model):
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: ["email", "phone", "ip", "credit_card"])
    placeholders: dict[str, str] = Field(
        default_factory=lambda: {
            "email": "<EMAIL>",
            "phone": "<PHONE>",
            "ip": "<IP_ADDRESS>",
            "credit_card": "<CREDIT_CARD>",
        }
    )


class FilterConfig(_Model):
    gopher_quality: GopherQualityRules = Field(default_factory=GopherQualityRules)
    gopher_repetition: GopherRepetitionRules = Field(default_factory=GopherRepetitionRules)
    c4: C4Rules = Field(default_factory=C4Rules)
    fineweb: FineWebRules = Field(default_factory=FineWebRules)
    language: LanguageRules = Field(default_factory=LanguageRules)
    toxicity: ToxicityRules = Field(default_factory=ToxicityRules)
    domain: DomainRules = Field(default_factory=DomainRules)
    bias: BiasRules = Field(default_factory=BiasRules)
    pii: PIIConfig = Field(default_factory=PIIConfig)
    keep_signals: bool = Field(
        True, description="Keep the signal columns in the output (for the bias audit after)"
    )
    report: bool = Field(
        True, description="Write the bias and domain-mix audit (report/ in the version directory)"
    )
    shard_rows: int = Field(50_000, description="Rows per output shard")
