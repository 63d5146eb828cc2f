"""How a signal and its filter rules are declared: one :class:`Signal` per signal module.

A signal module (gopher, c4, fineweb, langid, ...) ends with ``SIGNAL = Signal(...)``: the
columns it writes, the function that computes them for a batch of texts, its settings in the
``annotate`` config, and its :class:`RuleSet`s: each a section of the ``filter`` config (the
published default thresholds, with their source) and the function that turns that section into
:class:`Rule`s over the signal's columns. `annotate` and `filter` loop over the registry
(`pipeline.filter.signals`); adding a rule to a signal is a change to its module alone.

A rule reads one column and fails a document whose value is below its ``min`` or above its
``max`` (or, for ``in``, outside a set). A null value (the signal is undefined, e.g. no lines)
passes. The first failing rule, in registry order, is the document's reject reason
``filter.<rule set>.<field>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from .columns import Column


class RuleSetConfig(BaseModel):
    """Base of a rule set's config section: ``enabled: false`` switches every rule in it off;
    a threshold set to ``null`` switches that rule off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


@dataclass(frozen=True)
class Rule:
    name: str  # e.g. "gopher_quality.min_words"; the reject reason is "filter." + name
    column: str
    op: Literal["min", "max", "in"]
    threshold: float | tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"filter.{self.name}"

    def fails(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if self.op == "in":
            assert isinstance(self.threshold, tuple)
            bad = pc.invert(pc.is_in(values, value_set=pa.array(list(self.threshold), values.type)))
            return pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
        # Compared as float64, as Arrow compares a float32 column with a number; a null (NaN)
        # fails no rule. numpy spares three kernel calls per rule on a small batch.
        x = values.to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(invalid="ignore"):
            return x < self.threshold if self.op == "min" else x > self.threshold

    def threshold_text(self) -> str:
        return ",".join(self.threshold) if isinstance(self.threshold, tuple) else repr(self.threshold)


class Rules:
    """Collects the rules of one rule set; a ``None`` threshold adds nothing (rule off)."""

    def __init__(self, group: str):
        self.group = group
        self.rules: list[Rule] = []

    def add(self, field: str, column: str, op: Literal["min", "max", "in"], value: Any) -> Rules:
        if value is not None:
            self.rules.append(Rule(f"{self.group}.{field}", column, op, value))
        return self


@dataclass(frozen=True)
class RuleSet:
    """One section of the filter config (``filter.<name>``) and the rules it makes."""

    name: str
    config: type[RuleSetConfig]
    # (section, facts) -> rules; facts are what `prepare` measured on the data (e.g. a cutoff).
    rules: Callable[[Any, dict[str, Any]], list[Rule]]
    # "original": judged on annotate's text; "cleaned": after C4's line removal (FineWeb's
    # thresholds were set on text cleaned that way).
    judged_on: Literal["original", "cleaned"] = "cleaned"
    # (section, annotated dataset) -> facts about the data the rules need (runs once per run).
    prepare: Callable[[Any, Any], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Signal:
    """A signal: its columns, how they are computed, its annotate settings and its rule sets."""

    name: str
    version: str  # bump when the same text and settings would now give different values
    columns: list[Column]
    # (batch, annotate config, prepared state) -> column name -> values
    compute: Callable[[Any, Any, Any], dict[str, Any]]
    # Settings in the annotate config: field name -> (type, pydantic Field), as create_model
    # takes them (typed Any there too: pydantic types Field(x) as x's type). The first one
    # switches the signal on or off unless `enabled` says otherwise.
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    enabled: Callable[[Any], bool] | None = None
    rule_sets: tuple[RuleSet, ...] = ()
    # (annotate config, input dataset) -> state passed to compute (e.g. fitted weights).
    prepare: Callable[[Any, Any], Any] | None = None
    # (annotate config) -> what else the values depend on (word lists, model files), hashed
    # into annotate's fingerprint.
    identity: Callable[[Any], dict[str, Any]] | None = None
    # (prepared state, directory in the version being written) -> stats for annotate's manifest
    # (stats[name]); writes what the version should keep of the state (e.g. a trained model).
    report: Callable[[Any, Path], dict[str, Any]] | None = None
    # (annotated table) -> counts summed over the run into annotate's stats[stats_key].
    count: Callable[[pa.Table], dict[str, int]] | None = None
    stats_key: str | None = None

    def is_enabled(self, cfg: Any) -> bool:
        if self.enabled is not None:
            return self.enabled(cfg)
        if self.settings:
            return bool(getattr(cfg, next(iter(self.settings))))
        return True
