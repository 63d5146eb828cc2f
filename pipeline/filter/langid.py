"""Language identification with py3langid (its model ships inside the package; nothing downloads).

Each document gets its most likely ISO 639-1 language and that language's probability (the
normalized naive-Bayes posterior). Only the leading ``langid_max_chars`` characters are read:
the language of a page is settled long before its end, and the cost grows with length.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa

from .batch import TextBatch
from .columns import Column, f32

COLUMNS = [
    Column("lang", pa.string(), "most likely language, ISO 639-1 (py3langid)"),
    f32("lang_score", "probability of that language (0..1)"),
]


@lru_cache(maxsize=4)
def identifier(languages: tuple[str, ...] | None = None):
    """The py3langid model, loaded once per process (and per language subset)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if languages:
        ident.set_languages(list(languages))
    return ident


def classify(
    texts: list[str], max_chars: int = 1_000, languages: tuple[str, ...] | None = None
) -> tuple[list[str], np.ndarray]:
    ident = identifier(languages)
    langs, scores = [], np.empty(len(texts))
    for i, text in enumerate(texts):
        lang, score = ident.classify(text[:max_chars])
        langs.append(lang)
        scores[i] = score
    return langs, scores


def signals(b: TextBatch, max_chars: int, languages: list[str] | None) -> dict[str, object]:
    langs, scores = classify(b.pylist, max_chars, tuple(languages) if languages else None)
    return {"lang": pa.array(langs, pa.string()), "lang_score": scores}
