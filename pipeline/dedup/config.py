"""Configuration of the dedup stage: what counts as the same text and how hard to look for it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NormalizeConfig(BaseModel):
    """How text is folded before hashing; whitespace runs always collapse to one space."""

    model_config = ConfigDict(extra="forbid")

    lowercase: bool = True
    punctuation: bool = Field(True, description="Unicode punctuation and symbols become spaces")
    digits: bool = Field(False, description="Every decimal digit becomes 0 (dates, counters, prices)")
    nfkc: bool = Field(False, description="Unicode NFKC first (full-width forms, ligatures); costs time")


class SpanConfig(BaseModel):
    """C4-style removal of lines (or paragraphs) repeated across many kept documents."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    unit: Literal["line", "paragraph"] = "line"
    min_docs: int = Field(10, ge=2, description="A span in at least this many kept documents is boilerplate")
    min_chars: int = Field(1, ge=1, description="Shorter spans (after folding) are never removed")


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="Remove documents whose normalized text equals an earlier one's")
    near: bool = Field(True, description="Remove near-duplicates found by MinHash LSH")
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    shingle: Literal["word", "char"] = Field(
        "word", description="Shingles are n-grams of words or of characters"
    )
    ngram: int = Field(5, ge=1, description="Shingle length in words or characters")
    num_perm: int = Field(112, ge=2, le=1024, description="MinHash permutations (signature length)")
    bands: int | None = Field(
        14, ge=1, description="LSH bands; with rows None both are chosen from threshold"
    )
    rows: int | None = Field(8, ge=1, description="Signature rows per LSH band")
    threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Jaccard similarity that makes a near-duplicate (verification, band choice)",
    )
    verify: Literal["none", "signature", "exact"] = Field(
        "exact",
        description="Check candidate pairs: none (every LSH collision links), signature (estimated Jaccard "
        ">= threshold) or exact (shingle-set Jaccard >= threshold, reads both texts)",
    )
    seed: int = Field(1, description="Seed of the MinHash permutations")
    minhash_backend: Literal["auto", "numpy", "rensa"] = Field(
        "auto",
        description="What computes signatures from shingle hashes: numpy, rensa (native, much faster; an "
        "optional package) or auto (rensa when installed). Backends permute differently, so the one "
        "resolved is part of the fingerprint",
    )
    partitions: int = Field(
        1, ge=1, description="Hash partitions of the exact and bucket phases (their units)"
    )
    spans: SpanConfig = Field(default_factory=SpanConfig)
    duckdb_threads: int = Field(0, ge=0, description="Threads per DuckDB query; 0 = DuckDB's default")
    duckdb_memory_limit: str = Field("2GB", description="DuckDB spills to disk beyond this")
    top_clusters: int = Field(5, ge=0, description="Largest clusters listed (with member samples) in stats")

    @model_validator(mode="after")
    def _bands_fit(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither (then they are chosen from threshold)")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def band_shape(self) -> tuple[int, int]:
        """(bands, rows): as configured, or the pair that best separates pairs at `threshold`."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        from .lsh import choose_bands

        return choose_bands(self.threshold, self.num_perm)
