"""Configuration of the two filter stages, derived from the signal registry.

``AnnotateConfig`` holds only what changes signal values: each signal's settings (whether it
runs, its model or window), declared in the signal's module. ``FilterConfig`` holds one section
per rule set, also declared in the signal modules with their published default thresholds and
sources (Gopher: `gopher.py`; C4: `c4.py`; FineWeb: `fineweb.py`; language: `langid.py`; ...).
A threshold set to ``null`` disables that rule; ``enabled: false`` disables a whole rule set.
Changing a ``FilterConfig`` value re-runs only the `filter` stage: annotate's fingerprint does not
depend on it. A rule that names a column no signal computes is a configuration error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from .signals import SIGNALS, build_rules, rule_sets


class AnnotateBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_rows: int = Field(1_024, description="Documents annotated together (vectorized) at a time")


class FilterBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_signals: bool = Field(
        True, description="Keep the signal columns in the output (for the bias audit after)"
    )
    report: bool = Field(
        True, description="Write the bias and domain-mix audit (report/ in the version directory)"
    )
    shard_rows: int = Field(50_000, description="Rows per output shard")

    @model_validator(mode="after")
    def _rules_read_known_columns(self) -> Any:
        build_rules(self)  # raises ConfigError naming the rule and the missing column
        return self

    def section(self, name: str) -> Any:
        """The config section of rule set ``name`` (e.g. ``"c4"``)."""
        return getattr(self, name)


AnnotateConfig: type[AnnotateBase] = create_model(  # type: ignore[call-overload]
    "AnnotateConfig",
    __base__=AnnotateBase,
    __doc__="Which signals annotate computes, and their settings (see pipeline.filter.signals).",
    **{name: spec for s in SIGNALS for name, spec in s.settings.items()},
)

FilterConfig: type[FilterBase] = create_model(  # type: ignore[call-overload]
    "FilterConfig",
    __base__=FilterBase,
    __doc__="Every rule set's thresholds (see pipeline.filter.signals), and what filter keeps.",
    **{rs.name: (rs.config, Field(default_factory=rs.config)) for rs in rule_sets()},
)
