"""Configuration of the tokenize stage: which tokenizer, how sequences are packed and split."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .mixing import MixConfig

EOT_TOKEN = "<|endoftext|>"


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- the tokenizer --------------------------------------------------------------------------
    tokenizer: Literal["bpe", "char", "pretrained"] = Field(
        "bpe",
        description="bpe: train a byte-level BPE on the input; char: one token per character seen "
        "in the input; pretrained: load tokenizer_path",
    )
    tokenizer_path: str | None = Field(
        None, description="A tokenizer.json file or a local Hugging Face tokenizer directory (pretrained)"
    )
    vocab_size: int = Field(
        4_096, ge=260, le=1 << 20, description="BPE vocabulary size, special tokens included"
    )
    min_frequency: int = Field(2, ge=1, description="BPE: a pair seen fewer times is never merged")
    eot_token: str | None = Field(
        None,
        description=f"End-of-text token written after every document; default {EOT_TOKEN}, or a loaded "
        "tokenizer's own (tokenizer_meta.json, then the eos_token of a HF tokenizer_config.json)",
    )
    special_tokens: list[str] = Field(
        default_factory=list, description="Extra special tokens reserved in a trained vocabulary (after eot)"
    )
    train_sample_bytes: int = Field(
        50_000_000, ge=1, description="Text bytes of train-split documents sampled to train the tokenizer"
    )

    # -- split and packing ----------------------------------------------------------------------
    seq_len: int = Field(
        256, ge=1, description="Packed rows hold seq_len + 1 tokens (inputs and shifted targets)"
    )
    val_fraction: float = Field(
        0.05, ge=0.0, le=0.5, description="Share of documents (by id hash) in the val split"
    )
    seed: int = Field(0, ge=0, description="Seed of the global shuffle of packed sequences")
    mix: MixConfig | None = Field(
        None,
        description="Source mixing of the train split: per-source weights or token budgets "
        "(see pipeline.tokenize.mixing); default: the input's own proportions",
    )

    # -- engineering ----------------------------------------------------------------------------
    # Small batches keep the encoder busy: the next batch encodes while this one is written, so
    # a shard of a few hundred documents is not encoded, then written, one after the other.
    batch_docs: int = Field(256, ge=1, description="Documents per encode_batch call, at most")
    batch_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Text bytes per encode_batch call, at most (bounds memory with long documents)",
    )
    # tokenizers' own default. A larger cache looked cheaper counted in instructions on one thread,
    # but with the encoder's two threads it cost more CPU on every 10x stress input measured
    # (boilerplate 27 s against 17-24 s; README, tokenize performance).
    word_cache: int = Field(
        10_000,
        ge=1,
        description="Words a BPE tokenizer memoizes while encoding (tokenizers' default, 10,000); the "
        "ids are the same at any size",
    )
    shard_sequences: int = Field(
        16_384, ge=1, description="Packed sequences per output shard (shuffle bucket)"
    )
    row_group_rows: int = Field(1_024, ge=1, description="Parquet row group size of the packed view")
    docs_shard_rows: int = Field(50_000, ge=1, description="Rows per shard of the docs view")

    @model_validator(mode="after")
    def _check(self) -> TokenizeConfig:
        if self.tokenizer == "pretrained" and not self.tokenizer_path:
            raise ValueError("tokenizer 'pretrained' needs tokenizer_path")
        if self.tokenizer != "pretrained" and self.tokenizer_path:
            raise ValueError(
                f"tokenizer_path is only read with tokenizer 'pretrained', not {self.tokenizer!r}"
            )
        if (self.eot_token or EOT_TOKEN) in self.special_tokens:
            raise ValueError("special_tokens must not repeat eot_token")
        return self
