"""Folding text for comparison, vectorized over an Arrow array of documents.

Two documents are exact duplicates when their folded texts are equal: case, punctuation and
whitespace differences do not count (each configurable, see NormalizeConfig). Case and Unicode
folding run in Arrow compute kernels; separators (ASCII by a byte table, other characters by
their Unicode class, looked up once per distinct code point) and their collapsing run in numpy
over the UTF-8 bytes, so no Python loop touches a character.
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
# Non-ASCII separators: punctuation, symbols and spaces, or spaces only. RE2's Unicode tables
# (Arrow's regex engine) decide, so the classes match Arrow's, not the Python build's.
_NON_ASCII_PUNCT = r"^[\p{P}\p{S}\p{Z}]$"
_NON_ASCII_SPACE = r"^\p{Z}$"
_CODE_POINTS = 0x110000
_KNOWN: dict[bool, np.ndarray] = {}  # punctuation -> per code point: -1 not looked up, 0 or 1


def _code_point_classes(cps: np.ndarray, punctuation: bool) -> np.ndarray:
    """1 where a (non-ASCII) code point separates words, else 0; code points not seen before in
    this process are classified in one regex call and remembered."""
    known = _KNOWN.get(punctuation)
    if known is None:
        known = np.full(_CODE_POINTS, -1, dtype=np.int8)
        known[0xD800:0xE000] = 0  # surrogates: only ill-formed UTF-8 decodes to them
        _KNOWN[punctuation] = known
    cls = known[cps]
    if (cls < 0).any():
        new = np.unique(cps[cls < 0])
        chars = pa.array([chr(c) for c in new.tolist()], pa.large_string())
        hit = pc.match_substring_regex(chars, _NON_ASCII_PUNCT if punctuation else _NON_ASCII_SPACE)
        known[new] = np.asarray(hit, dtype=np.int8)
        cls = known[cps]
    return cls


def _mark_non_ascii(raw: np.ndarray, sep: np.ndarray, punctuation: bool) -> None:
    """Set `sep` on every byte of each non-ASCII separator character of the UTF-8 buffer."""
    lead = np.flatnonzero(raw >= 0xC0)
    if not lead.size:
        return
    last = raw.size - 1  # clipped reads past a short character's end are never selected below
    b0, b1, b2, b3 = (raw[np.minimum(lead + k, last)].astype(np.int32) for k in range(4))
    b1, b2, b3 = b1 & 0x3F, b2 & 0x3F, b3 & 0x3F
    width = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
    cp = np.where(
        width == 2,
        (b0 & 0x1F) << 6 | b1,
        np.where(width == 3, (b0 & 0x0F) << 12 | b1 << 6 | b2, (b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3),
    )
    hit = _code_point_classes(np.minimum(cp, _CODE_POINTS - 1), punctuation) == 1  # clip ill-formed
    lead, width = lead[hit], width[hit]
    for k in range(4):
        sep[lead[width > k] + k] = True


def fold(texts: pa.Array, cfg: NormalizeConfig) -> pa.Array:
    """Case, Unicode form and digits folded; punctuation and spaces are left to :func:`collapse`."""
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    if cfg.nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    if cfg.lowercase:
        texts = pc.utf8_lower(texts)
    if cfg.digits:
        texts = pc.replace_substring_regex(texts, r"\p{Nd}", "0")
    return texts


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
    """Every run of separators becomes one space, and each document is trimmed, in numpy.

    Separators: whitespace always; punctuation and symbols too when `punctuation`."""
    folded = folded.fill_null("")
    n_docs = len(folded)
    offs = np.frombuffer(folded.buffers()[1], dtype=np.int64)[folded.offset : folded.offset + n_docs + 1]
    raw = np.frombuffer(folded.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]]
    offs = offs - offs[0]
    sep = np.take(_SEPARATORS_PUNCT if punctuation else _SEPARATORS, raw)  # take: faster than [raw]
    _mark_non_ascii(raw, sep, punctuation)
    solid = ~sep
    nonempty = offs[1:] > offs[:-1]
    # The spaces kept: the last separator of each run that a solid byte of its document follows
    # (nothing of its own follows a document's last byte) ...
    follows = sep[:-1] & solid[1:]
    ends = offs[1:][nonempty] - 1
    follows[ends[ends < follows.size]] = False
    spaces = np.flatnonzero(follows)
    # ... but for the first, when its document starts with a separator (no leading space).
    first = np.searchsorted(spaces, offs[:-1])
    lead = np.flatnonzero(nonempty & (first < spaces.size))
    lead = lead[sep[offs[lead]] & (spaces[first[lead]] < offs[lead + 1])]
    spaces = np.delete(spaces, first[lead])
    keep = solid
    keep[spaces] = True
    out = np.where(sep, np.uint8(SPACE), raw)[keep]
    # A document starts after the solid bytes and the spaces kept before it.
    new_offs = offs - np.searchsorted(np.flatnonzero(sep), offs) + np.searchsorted(spaces, offs)
    return Collapsed(out, new_offs.astype(np.int64))


def fold_collapse(texts: pa.Array, cfg: NormalizeConfig) -> Collapsed:
    """The comparison form of each text: folded, then collapsed."""
    return collapse(fold(texts, cfg), cfg.punctuation)
