"""Per-document identity-term counts: the raw material of the bias audit (see ``report.py``).

For every group of ``lexicons/identity_terms.json`` (e.g. ``gender/female``, ``religion/muslim``)
a document stores how often the group is mentioned and how many of those mentions have a toxic
or negative word (``lexicons/toxic_words.txt``, ``negative_words.txt``) within ``window`` tokens.
Both are Arrow map columns keyed ``category/group``, so SQL can read them
(``SELECT bias_mentions['gender/female'] FROM annotate``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from .batch import TextBatch, per_doc, term_hits
from .columns import Column, i32
from .lexicon import identity_groups, lexicon_digests, negative_words, toxic_words
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal

MAP = pa.map_(pa.string(), pa.int32())
COLUMNS = [
    Column(
        "bias_mentions", MAP, "identity-term mentions per 'category/group' (lexicons/identity_terms.json)"
    ),
    Column("bias_negative_mentions", MAP, "of those, mentions within the window of a toxic or negative word"),
    i32(
        "bias_identity_negative_mentions",
        "identity mentions (pronouns excluded) next to a toxic or negative word",
    ),
]


@cache
def term_table() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """(terms, group index of each term, group keys 'category/group')."""
    groups, terms, owner = [], [], []
    seen = set()
    for cat, grp_terms in identity_groups().items():
        for grp, ts in grp_terms.items():
            groups.append(f"{cat}/{grp}")
            for t in ts:
                if t not in seen:
                    seen.add(t)
                    terms.append(t)
                    owner.append(len(groups) - 1)
    return tuple(terms), np.asarray(owner, dtype=np.int64), tuple(groups)


def _map_column(doc: np.ndarray, group: np.ndarray, n_docs: int, keys: tuple[str, ...]) -> pa.Array:
    n_groups = len(keys)
    cell, counts = np.unique(doc * n_groups + group, return_counts=True)
    offsets = np.searchsorted(cell // n_groups, np.arange(n_docs + 1)) if n_docs else np.zeros(1, np.int64)
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(np.asarray(keys, dtype=object)[cell % n_groups] if len(cell) else [], pa.string()),
        pa.array(counts, pa.int32()),
    )


def signals(b: TextBatch, window: int) -> dict[str, object]:
    terms, owner, keys = term_table()
    pos, idx = term_hits(b, terms)
    group = owner[idx]
    doc = b.words.doc[pos]
    neg_pos, _ = term_hits(b, tuple(sorted(set(toxic_words()) | set(negative_words()))))
    neg_pos = np.sort(neg_pos)
    near = np.zeros(len(pos), dtype=bool)
    if len(neg_pos):
        words_doc = b.words.doc
        right = np.searchsorted(neg_pos, pos)
        for side in (right - 1, right):
            ok = (side >= 0) & (side < len(neg_pos))
            q = neg_pos[np.clip(side, 0, len(neg_pos) - 1)]
            near |= ok & (np.abs(q - pos) <= window) & (words_doc[q] == doc)
    identity = (
        np.array([not k.startswith("pronoun/") for k in keys])[group] if len(group) else np.zeros(0, bool)
    )
    return {
        "bias_mentions": _map_column(doc, group, b.n, keys),
        "bias_negative_mentions": _map_column(doc[near], group[near], b.n, keys),
        "bias_identity_negative_mentions": per_doc(doc[near & identity], None, b.n),
    }


# -- declaration ---------------------------------------------------------------------------------------
class BiasRules(RuleSetConfig):
    max_identity_negative_mentions: int | None = Field(
        None, description="Drop documents with more identity-term mentions next to toxic/negative words (off)"
    )


def rules(c: BiasRules, facts: dict[str, Any]) -> list[Rule]:
    return (
        Rules("bias")
        .add(
            "max_identity_negative_mentions",
            "bias_identity_negative_mentions",
            "max",
            c.max_identity_negative_mentions,
        )
        .rules
    )


SIGNAL = Signal(
    name="bias",
    version="2",  # 2: words split as spaCy's English tokenizer does
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b, cfg.bias_window),
    settings={
        "bias": (
            bool,
            Field(True, description="Identity-term counts and their toxic/negative co-occurrence (bias_*)"),
        ),
        "bias_window": (
            int,
            Field(10, description="Tokens either side of an identity term searched for negative words"),
        ),
    },
    rule_sets=(RuleSet("bias", BiasRules, rules),),
    identity=lambda cfg: lexicon_digests("identity_terms.json", "toxic_words.txt", "negative_words.txt"),
)
