"""Folding text for comparison, vectorized over an Arrow array of documents.

Two documents are exact duplicates when their folded texts are equal: case, punctuation and
whitespace differences do not count (each configurable, see NormalizeConfig). Folding runs in
Arrow compute kernels; whitespace collapsing runs in numpy over the UTF-8 bytes, so no Python
loop touches a character.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import NormalizeConfig

SPACE = 0x20
# Byte classes for collapsing: ASCII whitespace always separates words; ASCII punctuation and
# symbols too when punctuation is folded (done here in numpy, far cheaper than a regex).
_SEPARATORS = np.zeros(256, dtype=bool)
_SEPARATORS[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True
_SEPARATORS_PUNCT = _SEPARATORS.copy()
_SEPARATORS_PUNCT[[ord(c) for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]] = True
# Non-ASCII punctuation, symbols and spaces (RE2 has no class subtraction, hence the negations).
_NON_ASCII_PUNCT = r"[^\x00-\x7f\P{P}]|[^\x00-\x7f\P{S}]|[^\x00-\x7f\P{Z}]"
_NON_ASCII_SPACE = r"[^\x00-\x7f\P{Z}]"


def fold(texts: pa.Array, cfg: NormalizeConfig) -> pa.Array:
    """Case, Unicode form and digits folded; non-ASCII punctuation and spaces become spaces.

    ASCII punctuation is folded later, in :func:`collapse`.
    """
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    if cfg.nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    if cfg.lowercase:
        texts = pc.utf8_lower(texts)
    if cfg.digits:
        texts = pc.replace_substring_regex(texts, r"\p{Nd}", "0")
    return pc.replace_substring_regex(texts, _NON_ASCII_PUNCT if cfg.punctuation else _NON_ASCII_SPACE, " ")


@dataclass
class Collapsed:
    """Folded documents as one UTF-8 byte buffer: single spaces, no leading or trailing space."""

    buf: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(docs) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc_bytes(self, i: int) -> bytes:
        return self.buf[self.offsets[i] : self.offsets[i + 1]].tobytes()


def collapse(folded: pa.Array, punctuation: bool = True) -> Collapsed:
    """Every run of separators becomes one space, and each document is trimmed, in numpy."""
    folded = folded.fill_null("")
    n_docs = len(folded)
    offs = np.frombuffer(folded.buffers()[1], dtype=np.int64)[folded.offset : folded.offset + n_docs + 1]
    raw = np.frombuffer(folded.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]]
    offs = offs - offs[0]
    n = raw.size
    sep = (_SEPARATORS_PUNCT if punctuation else _SEPARATORS)[raw]
    solid = ~sep
    # Candidates: the last separator of a run that a solid byte of the same document follows.
    follows = np.zeros(n, dtype=bool)
    follows[:-1] = solid[1:]
    follows[offs[1:][offs[1:] > 0] - 1] = False
    cand = np.flatnonzero(sep & follows)
    solid_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(solid, out=solid_before[1:])
    # ... kept only when a solid byte precedes it in its document (no leading space).
    doc = np.searchsorted(offs, cand, side="right") - 1
    cand = cand[solid_before[cand] > solid_before[offs[doc]]]
    keep = solid.copy()
    keep[cand] = True
    out = raw[keep]
    before = solid_before[:-1][cand] + np.arange(cand.size)  # output position of each kept space
    out[before] = SPACE
    new_offs = solid_before[offs] + np.searchsorted(cand, offs)
    return Collapsed(out, new_offs.astype(np.int64))


def fold_collapse(texts: pa.Array, cfg: NormalizeConfig) -> Collapsed:
    """The comparison form of each text: folded, then collapsed."""
    return collapse(fold(texts, cfg), cfg.punctuation)
