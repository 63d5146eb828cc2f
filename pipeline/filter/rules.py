"""Judging a batch of annotated documents against the filter rules.

The rules themselves are declared with their signals (see `pipeline.filter.signal` and
`pipeline.filter.signals.build_rules`); here a batch is judged: each document is charged to the
first rule it fails, in order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .signal import Rule
from .signals import build_rules

__all__ = ["Rule", "build_rules", "judge"]


def judge(table: pa.Table, rules: list[Rule]) -> tuple[np.ndarray, list[tuple[np.ndarray, Rule]]]:
    """(kept mask, [(rows rejected by rule, rule)...]); each row is charged to its first failing rule.

    Every rule's column must be in ``table``: the filter stage drops (and reports) rules whose
    signal annotate did not compute before it judges anything.
    """
    kept = np.ones(table.num_rows, dtype=bool)
    charged = []
    for rule in rules:
        bad = kept & rule.fails(table.column(rule.column))
        if bad.any():
            charged.append((np.flatnonzero(bad), rule))
            kept &= ~bad
    return kept, charged
