"""MinHash signatures for a batch of documents, vectorized with numpy (or computed by rensa).

Shingles are n-grams of words (or characters) of the folded text. A word is hashed straight
from the batch buffer: its bytes read as little-endian 8-byte integers (one unaligned gather
per chunk, so hashing a million words is a handful of array operations) chained through
splitmix64's mixer. A word shingle combines its n word hashes positionally; a character
shingle hashes the byte range of n characters of the collapsed text with one prefix sum of a
polynomial rolling hash over the whole buffer. Shingle hashes are mixed (splitmix64) and their
top 32 bits permuted by ``h_k(x) = a_k * x + b_k (mod 2**32)`` with seeded odd a_k; the
signature keeps each permutation's minimum per document. A document with no tokens has no
signature (all ones) and is left out of near-duplicate search.

The last step, shingle hashes to signatures, is most of the arithmetic (num_perm values per
shingle). The ``rensa`` backend hands it to rensa's native kernel, which takes the same flat
shingle hashes and is an order of magnitude faster; its permutations are its own, so its
signatures differ from numpy's and a backend's identity (name, version) is part of the stage's
fingerprint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from itertools import chain

import numpy as np
import xxhash

from ..errors import ConfigError
from .normalize import Collapsed, Words

EMPTY = np.uint32(0xFFFFFFFF)
_U64 = np.uint64
_BASE = _U64(0x100000001B3)  # the FNV prime: odd, so invertible modulo 2**64
_BASE_INV = _U64(pow(0x100000001B3, -1, 2**64))
_BLOCK_VALUES = 1 << 22  # permuted values per signature block (16 MB): few, long numpy calls
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_LONG_WORD = 64  # longer words (rare: URLs, blobs) are hashed one at a time by xxh3


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the whole word (in place)."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


_POWERS: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]
_BLOCK = 4_096


def _power_table(base: np.uint64, n: int) -> np.ndarray:
    """base**i modulo 2**64 for i < n, as (base**_BLOCK)**j * base**k: two short serial products
    instead of one as long as the buffer (uint64 products wrap, which is the modulus)."""
    ones = np.ones(1, dtype=np.uint64)
    inner = np.concatenate((ones, np.cumprod(np.full(_BLOCK - 1, base, dtype=np.uint64))))
    step = inner[-1:] * base  # an array, not a scalar: numpy warns when scalar products wrap
    outer = np.concatenate((ones, np.cumprod(np.repeat(step, -(-n // _BLOCK) - 1))))
    return (outer[:, None] * inner).ravel()[:n]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i modulo 2**64 for i < n (cached per process, grown by doubling)."""
    if _POWERS[0].size < n:
        size = max(n, 2 * _POWERS[0].size)
        _POWERS[:] = [_power_table(_BASE, size), _power_table(_BASE_INV, size)]
    return _POWERS[0][:n], _POWERS[1][:n]


def range_hash(col: Collapsed, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each byte range [start, stop) of the buffer, independent of its position."""
    n = col.buf.size
    pw, ipw = _powers(n + 1)
    prefix = np.empty(n + 1, dtype=np.uint64)
    prefix[0] = 0
    np.multiply(col.buf, pw[:n], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    return mix64((np.take(prefix, stops) - np.take(prefix, starts)) * np.take(ipw, starts))


@dataclass
class Shingles:
    hashes: np.ndarray  # uint64, grouped by document, documents in order
    doc: np.ndarray  # int64 document index of each shingle (non-decreasing)
    n_docs: int

    def of(self, i: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.doc, [i, i + 1])
        return self.hashes[lo:hi]


_KEEP_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # the low k bytes


def _chunks(window: np.ndarray, at: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The (up to) 8 bytes at each position as a little-endian integer, bytes past `length` zero."""
    c = window[at]
    c &= np.take(_KEEP_BYTES, np.minimum(length, 8))
    return c


def word_hashes(words: Words) -> np.ndarray:
    """A 64-bit hash of each word's bytes, the same wherever the word stands.

    The first 8-byte chunk, xored with a multiple of the length, is mixed (mix64 is a
    bijection, so words of one length up to 8 bytes never collide); each further chunk is xored
    in and mixed again. Words over _LONG_WORD bytes are rare and go to xxh3 one by one."""
    buf, starts = words.buf, words.starts
    pad = np.zeros(buf.size + 8, dtype=np.uint8)
    pad[: buf.size] = buf
    window = np.ndarray((buf.size,), dtype="<u8", buffer=pad, strides=(1,))  # bytes i..i+7
    length = words.stops - starts
    h = mix64(_chunks(window, starts, length) ^ (length.astype(np.uint64) * _GOLDEN))
    at, k = np.flatnonzero((length > 8) & (length <= _LONG_WORD)), 8
    while at.size:
        rest = length[at] - k
        h[at] = mix64(h[at] ^ _chunks(window, starts[at] + k, rest))
        at, k = at[rest > 8], k + 8
    view = buf.data  # a memoryview
    for i in np.flatnonzero(length > _LONG_WORD).tolist():
        h[i] = xxhash.xxh3_64_intdigest(view[starts[i] : words.stops[i]])
    return h


def document_keys(word_hash: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xxh3-128 of each document's sequence of word hashes (equal exactly when the collapsed
    texts are, but for 64-bit word-hash collisions), as two uint64 halves."""
    view = np.ascontiguousarray(word_hash).view(np.uint8).data  # a memoryview
    at = (bounds * 8).tolist()
    digests = [xxhash.xxh3_128_intdigest(view[at[i] : at[i + 1]]) for i in range(len(at) - 1)]
    return (
        np.array([d >> 64 for d in digests], dtype=np.uint64),
        np.array([d & 0xFFFFFFFFFFFFFFFF for d in digests], dtype=np.uint64),
    )


@functools.cache  # reading package metadata costs ~1.5 ms, and a run asks twice
def _version(package: str) -> str:
    return metadata.version(package)


def resolve_backend(name: str) -> str:
    """The identity of the signature backend a run uses: "numpy", or rensa with its version and
    algorithm version; "auto" is rensa when it is installed."""
    if name == "numpy":
        return "numpy"
    try:
        import rensa
    except ImportError:
        if name == "rensa":
            raise ConfigError("minhash_backend 'rensa' needs the rensa package: pip install rensa") from None
        return "numpy"
    return f"rensa {_version('rensa')} algorithm {rensa.RMinHash.ALGORITHM_VERSION}"


class MinHasher:
    def __init__(self, num_perm: int, ngram: int, mode: str = "word", seed: int = 1, backend: str = "numpy"):
        """`backend` is an identity from :func:`resolve_backend` (the one a run was planned with)."""
        self.num_perm, self.ngram, self.mode, self.seed = num_perm, ngram, mode, seed
        self.backend = backend
        if backend != "numpy" and resolve_backend("rensa") != backend:
            raise ConfigError(f"this run was planned with {backend}, found {resolve_backend('rensa')}")
        rng = np.random.default_rng(seed)
        self.a = (rng.integers(0, 2**32, num_perm, dtype=np.uint64) | 1).astype(np.uint32)
        self.b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
        # Positional weights for combining the n token hashes of a word shingle.
        self.pos = mix64(rng.integers(0, 2**63, ngram, dtype=np.uint64) * _U64(2) + _U64(1)) | _U64(1)

    # -- tokens and shingles ----------------------------------------------------------------------
    def shingles(self, words: Words, word_hash: np.ndarray | None = None) -> Shingles:
        """Shingle hashes of each document; `word_hash` (from :func:`word_hashes`) saves
        hashing the words again."""
        n_docs = len(words)
        if words.starts.size == 0:
            return Shingles(np.zeros(0, np.uint64), np.zeros(0, np.int64), n_docs)
        if self.mode == "word":
            token = word_hashes(words) if word_hash is None else word_hash
            return self._combine(token, np.repeat(np.arange(n_docs), np.diff(words.bounds)), n_docs)
        col = words.collapse()
        buf, offs = col.buf, col.offsets
        # Characters are UTF-8 lead bytes; a shingle spans n characters of one document, and a
        # document shorter than that is one shingle.
        lead = np.flatnonzero((buf & 0xC0) != 0x80)
        tdoc = np.searchsorted(offs, lead, side="right") - 1
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
        m = max(token.size - n + 1, 0)
        h = np.zeros(m, dtype=np.uint64)
        for j in range(min(n, token.size)):
            h += token[j : j + m] * self.pos[j]
        ok = tdoc[:m] == tdoc[n - 1 :]
        hashes, doc = mix64(h[ok]), tdoc[:m][ok]
        count = np.bincount(tdoc, minlength=n_docs)
        short = np.flatnonzero((count > 0) & (count < n))
        if short.size:
            first_tok = (np.cumsum(count) - count)[short]
            h = np.zeros(short.size, dtype=np.uint64)
            for j in range(n - 1):
                has = j < count[short]
                h[has] += token[first_tok[has] + j] * self.pos[j]
            # Short documents have no n-gram, so each goes in at its place in document order.
            at = np.searchsorted(doc, short)
            hashes, doc = np.insert(hashes, at, mix64(h)), np.insert(doc, at, short)
        return Shingles(hashes, doc.astype(np.int64), n_docs)

    # -- signatures -------------------------------------------------------------------------------
    def signatures(self, sh: Shingles) -> np.ndarray:
        """(n_docs, num_perm) uint32; rows of documents without shingles are all EMPTY."""
        if self.backend != "numpy":
            return self._rensa_signatures(sh)
        # Permutation-major: each permutation's values of a block of shingles are contiguous,
        # so the multiply, add and per-document minimum run as long vector loops.
        sig = np.full((self.num_perm, sh.n_docs), EMPTY, dtype=np.uint32)
        x = (sh.hashes >> _U64(32)).astype(np.uint32)
        a, b = self.a[:, None], self.b[:, None]
        width = max(1, _BLOCK_VALUES // self.num_perm)
        block = np.empty((self.num_perm, min(width, x.size)), dtype=np.uint32)
        for c0 in range(0, x.size, width):
            xc = x[c0 : c0 + width]
            out = block[:, : xc.size]
            np.multiply(a, xc, out=out)
            np.add(out, b, out=out)
            d = sh.doc[c0 : c0 + xc.size]
            seg = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            cols = d[seg]
            sig[:, cols] = np.minimum(sig[:, cols], np.minimum.reduceat(out, seg, axis=1))
        return np.ascontiguousarray(sig.T)

    def _rensa_signatures(self, sh: Shingles) -> np.ndarray:
        import rensa

        rows = np.searchsorted(sh.doc, np.arange(sh.n_docs + 1)).astype(np.uint64)
        digests = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
            sh.hashes, rows, self.num_perm, self.seed
        )
        values = chain.from_iterable(digests.to_rows())
        sig = np.fromiter(values, np.uint32, sh.n_docs * self.num_perm).reshape(sh.n_docs, self.num_perm)
        sig[rows[1:] == rows[:-1]] = EMPTY  # rensa's rows without tokens are all ones too; made sure
        return sig

    def __call__(self, words: Words) -> np.ndarray:
        return self.signatures(self.shingles(words))


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


def distinct_sorted(x: np.ndarray) -> np.ndarray:
    """np.unique for one small array, without its per-call cost (a tenth of a millisecond)."""
    x = np.sort(x)
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if x.size else x


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two shingle-hash sets."""
    return sorted_jaccard(distinct_sorted(a), distinct_sorted(b))


def sorted_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted arrays of distinct hashes."""
    if a.size == 0 or b.size == 0:
        return float(a.size == b.size)
    inter = np.count_nonzero(a[np.minimum(np.searchsorted(a, b), a.size - 1)] == b)
    return inter / (a.size + b.size - inter)
