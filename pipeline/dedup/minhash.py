"""MinHash signatures for a batch of documents, vectorized with numpy.

Shingles are n-grams of words (or characters) of the collapsed, folded text. Each token is a
byte range of the batch buffer; its hash comes from one prefix sum of a polynomial rolling hash
over the whole buffer, so hashing a million words is a handful of array operations. A word
shingle combines its n word hashes positionally; a character shingle is the byte range of n
characters. Shingle hashes are mixed (splitmix64) and their top 32 bits permuted by
``h_k(x) = a_k * x + b_k (mod 2**32)`` with seeded odd a_k; the signature keeps each
permutation's minimum per document. A document with no tokens has no signature (all ones) and
is left out of near-duplicate search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normalize import SPACE, Collapsed

EMPTY = np.uint32(0xFFFFFFFF)
_U64 = np.uint64
_BASE = _U64(0x100000001B3)  # the FNV prime: odd, so invertible modulo 2**64
_BASE_INV = _U64(pow(0x100000001B3, -1, 2**64))
_CHUNK = 2_048  # shingles per permutation block: the block stays in cache


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the whole word (in place)."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


_POWERS: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i modulo 2**64 for i < n (cached per process, grown by doubling)."""
    if _POWERS[0].size < n:
        size = max(n, 2 * _POWERS[0].size)
        for k, base in enumerate((_BASE, _BASE_INV)):
            _POWERS[k] = np.concatenate(([_U64(1)], np.cumprod(np.full(size - 1, base, dtype=np.uint64))))
    return _POWERS[0][:n], _POWERS[1][:n]


def range_hash(col: Collapsed, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte range [start, stop) of the buffer, independent of its position."""
    n = col.buf.size
    pw, ipw = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(col.buf.astype(np.uint64) * pw[:n], out=prefix[1:])
    return mix64((prefix[stops] - prefix[starts]) * ipw[starts])


@dataclass
class Shingles:
    hashes: np.ndarray  # uint64, grouped by document, documents in order
    doc: np.ndarray  # int64 document index of each shingle (non-decreasing)
    n_docs: int

    def of(self, i: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.doc, [i, i + 1])
        return self.hashes[lo:hi]


class MinHasher:
    def __init__(self, num_perm: int, ngram: int, mode: str = "word", seed: int = 1):
        self.num_perm, self.ngram, self.mode = num_perm, ngram, mode
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 2**32, num_perm, dtype=np.uint64) | 1).astype(np.uint32)
        self.b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
        # Positional weights for combining the n token hashes of a word shingle.
        self.pos = mix64(rng.integers(0, 2**63, ngram, dtype=np.uint64) * _U64(2) + _U64(1)) | _U64(1)

    # -- tokens and shingles ----------------------------------------------------------------------
    def shingles(self, col: Collapsed) -> Shingles:
        buf, offs = col.buf, col.offsets
        n_docs = len(col)
        if buf.size == 0:
            return Shingles(np.zeros(0, np.uint64), np.zeros(0, np.int64), n_docs)
        doc_of_byte = np.repeat(np.arange(n_docs), np.diff(offs))
        first = np.zeros(buf.size, dtype=bool)
        first[offs[:-1][offs[:-1] < buf.size]] = True
        if self.mode == "word":
            solid = buf != SPACE
            prev_space = np.ones(buf.size, dtype=bool)
            prev_space[1:] = ~solid[:-1]
            starts = np.flatnonzero(solid & (prev_space | first))
            tdoc = doc_of_byte[starts]
            # Collapsed text: a word ends at the next space or at its document's end.
            spaces = np.append(np.flatnonzero(~solid), buf.size)
            stops = np.minimum(spaces[np.searchsorted(spaces, starts)], offs[tdoc + 1])
            return self._combine(range_hash(col, starts, stops), tdoc, n_docs)
        # Characters are UTF-8 lead bytes; a shingle spans n characters of one document, and a
        # document shorter than that is one shingle.
        lead = np.flatnonzero((buf & 0xC0) != 0x80)
        tdoc = doc_of_byte[lead]
        n = self.ngram
        count = np.bincount(tdoc, minlength=n_docs)
        end = np.cumsum(count)[tdoc]  # one past the last character of each character's document
        idx = np.arange(lead.size)
        sel = np.flatnonzero((idx + n <= end) | ((count[tdoc] < n) & (idx == end - count[tdoc])))
        lead_ext = np.append(lead, buf.size)
        inside = idx[sel] + n < end[sel]
        stops = np.where(inside, lead_ext[np.minimum(idx[sel] + n, lead.size)], offs[tdoc[sel] + 1])
        return Shingles(range_hash(col, lead[sel], stops), tdoc[sel].astype(np.int64), n_docs)

    def _combine(self, token: np.ndarray, tdoc: np.ndarray, n_docs: int) -> Shingles:
        """Word n-grams from token hashes; a document shorter than n words is one shingle."""
        n = self.ngram
        m = token.size - n + 1
        parts_h, parts_d = [], []
        if m > 0:
            h = np.zeros(m, dtype=np.uint64)
            for j in range(n):
                h += token[j : j + m] * self.pos[j]
            ok = tdoc[:m] == tdoc[n - 1 :]
            parts_h.append(mix64(h[ok]))
            parts_d.append(tdoc[:m][ok])
        count = np.bincount(tdoc, minlength=n_docs)
        short = np.flatnonzero((count > 0) & (count < n))
        if short.size:
            first_tok = np.cumsum(count) - count
            h = np.zeros(short.size, dtype=np.uint64)
            for j in range(n - 1):
                has = j < count[short]
                h[has] += token[first_tok[short][has] + j] * self.pos[j]
            parts_h.append(mix64(h))
            parts_d.append(short)
        if not parts_h:
            return Shingles(np.zeros(0, np.uint64), np.zeros(0, np.int64), n_docs)
        hashes, doc = np.concatenate(parts_h), np.concatenate(parts_d)
        if len(parts_h) > 1:
            order = np.argsort(doc, kind="stable")
            hashes, doc = hashes[order], doc[order]
        return Shingles(hashes, doc.astype(np.int64), n_docs)

    # -- signatures -------------------------------------------------------------------------------
    def signatures(self, sh: Shingles) -> np.ndarray:
        """(n_docs, num_perm) uint32; rows of documents without shingles are all EMPTY."""
        sig = np.full((sh.n_docs, self.num_perm), EMPTY, dtype=np.uint32)
        x = (sh.hashes >> _U64(32)).astype(np.uint32)
        block = np.empty((_CHUNK, self.num_perm), dtype=np.uint32)
        for c0 in range(0, x.size, _CHUNK):
            xc = x[c0 : c0 + _CHUNK]
            out = block[: xc.size]
            np.multiply(xc[:, None], self.a, out=out)
            np.add(out, self.b, out=out)
            d = sh.doc[c0 : c0 + xc.size]
            seg = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            rows = d[seg]
            sig[rows] = np.minimum(sig[rows], np.minimum.reduceat(out, seg, axis=0))
        return sig

    def __call__(self, col: Collapsed) -> np.ndarray:
        return self.signatures(self.shingles(col))


def has_signature(sig: np.ndarray) -> np.ndarray:
    return ~(sig == EMPTY).all(axis=1)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64: one hash of each band's `rows` signature values."""
    weights = mix64(np.arange(1, rows + 1, dtype=np.uint64) * _U64(0x9E3779B97F4A7C15)) | _U64(1)
    cut = sig[:, : bands * rows].reshape(len(sig), bands, rows).astype(np.uint64)
    return mix64((cut * weights).sum(axis=2, dtype=np.uint64))


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values, row by row."""
    return (a == b).mean(axis=1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle-hash sets."""
    a, b = np.unique(a), np.unique(b)
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)
