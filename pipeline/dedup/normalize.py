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
_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True


def fold(texts: pa.Array, cfg: NormalizeConfig) -> pa.Array:
    """Case, Unicode form, digits and punctuation folded; Unicode spaces become ASCII spaces."""
    texts = texts.cast(pa.large_string()) if texts.type != pa.large_string() else texts
    if cfg.nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    if cfg.lowercase:
        texts = pc.utf8_lower(texts)
    if cfg.digits:
        texts = pc.replace_substring_regex(texts, r"\p{Nd}", "0")
    spaces = r"[\p{P}\p{S}\p{Z}]" if cfg.punctuation else r"\p{Z}"
    return pc.replace_substring_regex(texts, spaces, " ")


@dataclass
class Collapsed:
    """Folded documents as one UTF-8 byte buffer: single spaces, no leading or trailing space."""

    buf: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(docs) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc_bytes(self, i: int) -> bytes:
        return self.buf[self.offsets[i] : self.offsets[i + 1]].tobytes()


def collapse(folded: pa.Array) -> Collapsed:
    """Collapse every whitespace run to one space and trim each document, in numpy."""
    folded = folded.fill_null("")
    n_docs = len(folded)
    offs = np.frombuffer(folded.buffers()[1], dtype=np.int64)[folded.offset : folded.offset + n_docs + 1]
    raw = np.frombuffer(folded.buffers()[2], dtype=np.uint8)[offs[0] : offs[-1]]
    offs = offs - offs[0]
    if raw.size == 0:
        return Collapsed(raw.copy(), offs.astype(np.int64))
    lengths = np.diff(offs)
    doc = np.repeat(np.arange(n_docs), lengths)
    space = _IS_SPACE[raw]
    solid = ~space
    # A space survives when it ends its run, a solid byte follows in the same document, and a
    # solid byte precedes the run in the same document (so no leading or trailing space).
    solid_before = np.cumsum(solid) - solid  # solid bytes strictly before each position
    doc_start_solid = solid_before[offs[:-1].clip(max=raw.size - 1)]
    has_solid_before = (solid_before - doc_start_solid[doc]) > 0
    next_solid = np.zeros(raw.size, dtype=bool)
    next_solid[:-1] = solid[1:] & (doc[1:] == doc[:-1])
    keep = solid | (space & next_solid & has_solid_before)
    out = np.where(space, np.uint8(SPACE), raw)[keep]
    kept_per_doc = np.bincount(doc[keep], minlength=n_docs)
    new_offs = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(kept_per_doc, out=new_offs[1:])
    return Collapsed(out, new_offs)
