"""Personal information: e-mail addresses, phone numbers, IP addresses and card numbers.

Annotate counts each kind per document (RE2 over the whole batch); `filter` replaces them in
the kept text with placeholders such as ``<EMAIL>``. Card-like numbers count only when their
digits pass the Luhn checksum, which keeps order numbers and ISBNs out.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .batch import TextBatch
from .columns import i32
from .signal import RuleSet, RuleSetConfig, Signal

# One pattern per kind, written so that both RE2 (counting) and Python's re (replacing) read it.
PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "ip": r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b",
    "credit_card": r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
    # +1 (555) 123-4567, 555-123-4567, +44 20 7946 0958: groups joined by separators.
    "phone": r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)|\b[0-9]{2,4})[ .-][0-9]{3,4}[ .-][0-9]{3,4}\b",
}
KINDS = tuple(PATTERNS)
_COMPILED = {k: re.compile(p) for k, p in PATTERNS.items()}

COLUMNS = [i32(f"pii_{k}_count", f"{k.replace('_', ' ')}s found (replaced by `filter`)") for k in KINDS]


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> list[re.Match]:
    return [m for m in _COMPILED["credit_card"].finditer(text) if luhn_ok(m.group())]


def signals(b: TextBatch) -> dict[str, np.ndarray]:
    """Counts per kind. RE2 finds the documents with any candidate; those are counted exactly
    as :func:`redact` will replace them (checksum, kinds in order), so counts match the transform."""
    any_hit = np.zeros(b.n, dtype=bool)
    for pattern in PATTERNS.values():
        any_hit |= pc.match_substring_regex(b.texts, pattern).to_numpy(zero_copy_only=False)
    out = {f"pii_{k}_count": np.zeros(b.n, dtype=np.int64) for k in KINDS}
    for i in np.flatnonzero(any_hit):
        for kind, n in redact(b.pylist[i], list(KINDS), {})[1].items():
            out[f"pii_{kind}_count"][i] = n
    return out


def redact(text: str, kinds: list[str], placeholders: dict[str, str]) -> tuple[str, dict[str, int]]:
    """The text with every PII match replaced by its kind's placeholder, and counts per kind.

    Cards go first (their digit runs would otherwise read as phone numbers), then e-mails
    (which may hold digits), then IPs, then phones.
    """
    counts: dict[str, int] = {}
    for kind in ("credit_card", "email", "ip", "phone"):
        if kind not in kinds:
            continue
        placeholder = placeholders.get(kind, f"<{kind.upper()}>")
        if kind == "credit_card":
            matches = _cards(text)
            for m in reversed(matches):
                text = text[: m.start()] + placeholder + text[m.end() :]
            n = len(matches)
        else:
            text, n = _COMPILED[kind].subn(placeholder, text)
        if n:
            counts[kind] = n
    return text, counts


# -- declaration ---------------------------------------------------------------------------------------
class PIIConfig(RuleSetConfig):
    """Not a rule set: what `filter` replaces in the text it keeps (``enabled: false``: nothing)."""

    kinds: list[str] = Field(default_factory=lambda: ["email", "phone", "ip", "credit_card"])
    placeholders: dict[str, str] = Field(
        default_factory=lambda: {
            "email": "<EMAIL>",
            "phone": "<PHONE>",
            "ip": "<IP_ADDRESS>",
            "credit_card": "<CREDIT_CARD>",
        }
    )


def _docs_with_pii(table: pa.Table) -> dict[str, int]:
    return {k: int(pc.sum(pc.greater(table.column(f"pii_{k}_count"), 0)).as_py() or 0) for k in KINDS}


SIGNAL = Signal(
    name="pii",
    version="1",
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b),
    settings={"pii": (bool, Field(True, description="PII counts per kind (pii_*_count)"))},
    rule_sets=(RuleSet("pii", PIIConfig, lambda c, facts: []),),
    count=_docs_with_pii,
    stats_key="docs_with_pii",
)
