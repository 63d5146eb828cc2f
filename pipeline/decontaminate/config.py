"""Configuration of the decontaminate stage: which texts are evaluation texts, and what a match is.

The labeled stage's validation and test splits are always evaluation texts. ``eval_sets`` adds
more, in ingest's source syntax (a file, directory or glob, any format ingest reads, with
``text_field``). A pretraining document is contaminated when it shares a word n-gram (``n``
words, GPT-3's 13 by default) with an evaluation text; an evaluation text shorter than its n
is matched whole (its whole word sequence inside the document), and one shorter than
``min_words`` only by a document that is exactly that text.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..dedup.config import NormalizeConfig
from ..ingest.config import SourceConfig


class EvalSetConfig(SourceConfig):
    """One evaluation set: ingest's source syntax (``path``, ``format``, ``text_field``, ``id_field``
    ...), ``name`` (default: the file's stem) names it in reject reasons and statistics."""

    n: int | None = Field(
        None,
        ge=1,
        description="Words per n-gram for this set (shorter for short texts); default decontaminate.n",
    )

    @model_validator(mode="after")
    def _not_default(self) -> EvalSetConfig:
        if self.format == "default":
            raise ValueError("an eval set cannot be the built-in pretraining corpus (format 'default')")
        return self


class DecontaminateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(
        13, ge=1, description="Words per n-gram: a document sharing one with an eval text is rejected"
    )
    labeled_n: int | None = Field(
        None,
        ge=1,
        description="n for the labeled stage's validation and test texts (e.g. 8 for short sentences); default n",
    )
    min_words: int = Field(
        3,
        ge=1,
        description="Eval texts under n words are matched whole; those under min_words too (one or two "
        "words occur everywhere) only by a document that is exactly that text",
    )
    eval_sets: list[EvalSetConfig] = Field(
        default_factory=list, description="More evaluation texts (ingest's source syntax, with text_field)"
    )
    normalize: NormalizeConfig = Field(
        default_factory=NormalizeConfig,
        description="How texts are folded before words are compared (as dedup: case and punctuation ignored)",
    )
    batch_docs: int = Field(2_048, ge=1, description="Documents hashed per batch (bounds memory)")
    shard_rows: int = Field(50_000, ge=1, description="Rows per output shard")
