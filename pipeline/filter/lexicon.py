"""The editable word lists in ``lexicons/``: toxic words, negative words, identity terms.

Text files hold one lowercase term per line (``#`` starts a comment); ``identity_terms.json``
maps category -> group -> terms. Terms of one or two words are matched against lowercased tokens.
They are package data, read through importlib.resources (so an installed wheel finds them).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from ..hashing import sha256_bytes

LEXICONS = files(__package__) / "lexicons"


def read_terms(name: str) -> tuple[str, ...]:
    lines = (LEXICONS / name).read_text(encoding="utf-8").splitlines()
    terms = {ln.split("#", 1)[0].strip().lower() for ln in lines}
    return tuple(sorted(t for t in terms if t))


@cache
def toxic_words() -> tuple[str, ...]:
    return read_terms("toxic_words.txt")


@cache
def negative_words() -> tuple[str, ...]:
    return read_terms("negative_words.txt")


@cache
def identity_groups() -> dict[str, dict[str, tuple[str, ...]]]:
    """category -> group -> terms, e.g. gender -> female -> (she, her, woman, ...)."""
    raw = json.loads((LEXICONS / "identity_terms.json").read_text(encoding="utf-8"))
    return {
        cat: {grp: tuple(sorted({t.lower() for t in terms})) for grp, terms in sorted(groups.items())}
        for cat, groups in sorted(raw["categories"].items())
    }


def lexicon_digests(*names: str) -> dict[str, str]:
    """sha256 of the named lexicon files: their contents decide signal values."""
    return {f"lexicon:{n}": sha256_bytes((LEXICONS / n).read_bytes()) for n in names}
