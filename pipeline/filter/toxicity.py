"""Toxicity: a documented word list and a classifier that ships offline (alt-profanity-check).

``toxic_word_count`` counts tokens on ``lexicons/toxic_words.txt``; ``toxic_words_frac`` divides
by the number of tokens. ``toxicity_score`` is alt-profanity-check's probability that the text
is offensive (a linear SVM over TF-IDF n-grams, trained on labelled offensive/clean messages;
its weights are inside the wheel, loaded once per process).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from .batch import TextBatch, per_doc, ratio, term_hits
from .columns import f32, i32
from .lexicon import lexicon_digests, toxic_words
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal

COLUMNS = [
    i32("toxic_word_count", "tokens on the toxic word list (lexicons/toxic_words.txt)"),
    f32("toxic_words_frac", "toxic_word_count / tokens"),
    f32("toxicity_score", "alt-profanity-check probability that the text is offensive (0..1)"),
]


def classifier_scores(texts: list[str]) -> np.ndarray:
    from profanity_check import predict_prob

    return np.asarray(predict_prob(texts), dtype=np.float64) if texts else np.zeros(0)


def signals(b: TextBatch) -> dict[str, np.ndarray]:
    pos, _ = term_hits(b, toxic_words())
    count = per_doc(b.words.doc[pos], None, b.n)
    return {
        "toxic_word_count": count,
        "toxic_words_frac": ratio(count, b.words.count),
        "toxicity_score": classifier_scores(b.pylist),
    }


# -- declaration ---------------------------------------------------------------------------------------
class ToxicityRules(RuleSetConfig):
    max_toxicity_score: float | None = Field(0.9, description="Maximum alt-profanity-check probability")
    max_toxic_words_frac: float | None = Field(
        0.02, description="Maximum fraction of tokens on the toxic word list"
    )


def rules(c: ToxicityRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("toxicity")
    r.add("max_toxicity_score", "toxicity_score", "max", c.max_toxicity_score)
    r.add("max_toxic_words_frac", "toxic_words_frac", "max", c.max_toxic_words_frac)
    return r.rules


SIGNAL = Signal(
    name="toxicity",
    version="2",  # 2: words split as spaCy's English tokenizer does
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b),
    settings={
        "toxicity": (
            bool,
            Field(True, description="Word-list and classifier toxicity (toxic_*, toxicity_score)"),
        )
    },
    rule_sets=(RuleSet("toxicity", ToxicityRules, rules),),
    identity=lambda cfg: lexicon_digests("toxic_words.txt"),
)
