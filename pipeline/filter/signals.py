"""The signal registry: every signal annotate computes, in column order.

Each entry is a signal module's ``SIGNAL`` (see `pipeline.filter.signal` for what one declares).
The order is the order of annotate's columns and of filter's rules: a document that fails several
rules is charged to the first. Adding a signal is its module plus one line here; annotate's
config, filter's config and annotate's code version are derived from this list.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from . import bias, c4, domain, fineweb, gopher, langid, pii, quality, toxicity
from .columns import i32
from .signal import Rule, RuleSet, Signal

# Every text's token count: the denominator of most ratios, always computed.
TOKENS = Signal(
    name="tokens",
    version="1",
    columns=[i32("token_count", "tokens (words, numbers, symbols) as split by pipeline.filter.text")],
    compute=lambda b, cfg, state: {"token_count": b.words.count},
)

SIGNALS: tuple[Signal, ...] = (
    TOKENS,
    gopher.SIGNAL,
    c4.SIGNAL,
    fineweb.SIGNAL,
    langid.SIGNAL,
    toxicity.SIGNAL,
    pii.SIGNAL,
    bias.SIGNAL,
    domain.SIGNAL,
    quality.SIGNAL,
)


def rule_sets() -> list[RuleSet]:
    """Every rule set in evaluation order: those judged on the original text first."""
    sets = [rs for s in SIGNALS for rs in s.rule_sets]
    return [rs for rs in sets if rs.judged_on == "original"] + [
        rs for rs in sets if rs.judged_on == "cleaned"
    ]


def declared_columns() -> dict[str, str]:
    """Column name -> the signal that writes it."""
    return {c.name: s.name for s in SIGNALS for c in s.columns}


def build_rules(cfg: Any, facts: dict[str, Any] | None = None) -> list[Rule]:
    """Every enabled rule of a filter config, in evaluation order.

    Raises ConfigError when a rule names a column no signal declares (a misspelt column, or a
    threshold for an n-gram size the signal does not compute), so it can never pass unnoticed.
    """
    columns = declared_columns()
    out: list[Rule] = []
    for rs in rule_sets():
        section = getattr(cfg, rs.name)
        if not section.enabled:
            continue
        for rule in rs.rules(section, facts or {}):
            if rule.column not in columns:
                raise ConfigError(
                    f"filter.{rule.name} reads column {rule.column!r}, which no signal computes "
                    f"(signals: {', '.join(s.name for s in SIGNALS)})"
                )
            out.append(rule)
    return out


def version() -> str:
    """Annotate's code version: every signal's name and version (a bump re-annotates)."""
    return ",".join(f"{s.name}={s.version}" for s in SIGNALS)


def _check() -> None:
    names: set[str] = set()
    columns: set[str] = set()
    sections: set[str] = set()
    settings: set[str] = set()
    for s in SIGNALS:
        for what, seen, items in (
            ("signal", names, [s.name]),
            ("column", columns, [c.name for c in s.columns]),
            ("filter section", sections, [rs.name for rs in s.rule_sets]),
            ("annotate setting", settings, list(s.settings)),
        ):
            for item in items:
                if item in seen:
                    raise TypeError(f"signal {s.name!r}: {what} {item!r} is declared twice")
                seen.add(item)


_check()
