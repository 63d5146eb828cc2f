"""Deduplication: exact, near-duplicate (MinHash LSH) and repeated-span removal."""

from .config import DedupConfig, NormalizeConfig, SpanConfig
from .report import summary_markdown
from .stage import DedupStage

__all__ = ["DedupConfig", "DedupStage", "NormalizeConfig", "SpanConfig", "summary_markdown"]
