"""Annotate and filter: quality, language, toxicity, PII, bias and domain-fit signals, then rules.

`annotate` (:class:`AnnotateStage`) stores every signal as a column; `filter`
(:class:`FilterStage`) applies thresholds to them, replaces PII, and writes the bias audit.
"""

from .annotate import AnnotateStage
from .config import AnnotateConfig, FilterConfig
from .select import FilterStage

__all__ = ["AnnotateConfig", "AnnotateStage", "FilterConfig", "FilterStage"]
