"""Markdown for contamination per evaluation set: the run report and the stage's artifact."""

from __future__ import annotations

from typing import Any


def decontamination_section(stats: dict[str, Any]) -> list[str]:
    """Contamination per evaluation set: documents rejected, and how the set's texts are matched."""
    lines = [
        "| eval set | texts | n | by n-gram | whole text (under n words) | exact document | "
        "documents rejected | documents overlapping | eval texts found |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, e in stats["eval_sets"].items():
        by = e.get("matched_by", {})
        lines.append(
            f"| {name} | {e['texts']:,} | {e['n']} | {by.get('ngram', 0):,} | {by.get('whole_text', 0):,} | "
            f"{by.get('exact_document', 0):,} | {e.get('docs_rejected', 0):,} | {e.get('docs_overlapping', 0):,} | "
            f"{e.get('texts_found', 0):,} |"
        )
    return lines + ["", stats.get("rule", "")]
